# Which secret fills which variable of each task, planned against a mock AWS provider. From
# infra/modules/export_job: terraform init -backend=false && terraform test
# (weward_pipeline_tests/test_infra_terraform.py runs it when the AWS provider is installable).

mock_provider "aws" {
  mock_data "aws_region" {
    defaults = { name = "eu-west-3", id = "eu-west-3", region = "eu-west-3" }
  }
}

override_resource {
  target          = aws_ecr_repository.run_worker
  override_during = plan
  values          = { repository_url = "123456789012.dkr.ecr.eu-west-3.amazonaws.com/weward-test/run-worker" }
}

variables {
  name_prefix = "weward-test"
  pipeline_env = {
    AWS_REGION                  = "eu-west-3"
    WEWARD_LAKE_URL             = "s3://lake/lake"
    WEWARD_PG_URL_SECRET        = "pg-export-url"
    WEWARD_PG_REDACT_URL_SECRET = "pg-redact-url"
  }
  secret_arns = {
    WEWARD_PG_URL        = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:pg-export-url"
    WEWARD_PG_REDACT_URL = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:pg-redact-url"
    WEWARD_PG_ERASE_URL  = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:pg-erase-url"
    WEWARD_PII_KEY       = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:pii-key"
    DAGSTER_PG_PASSWORD  = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:dagster-pg-password"
  }
  export_role_arn                = "arn:aws:iam::123456789012:role/export"
  redaction_role_arn             = "arn:aws:iam::123456789012:role/redaction"
  erasure_role_arn               = "arn:aws:iam::123456789012:role/erasure"
  erase_command                  = ["sh", "-c", "exec dagster job execute -j gdpr_erasure"]
  export_command                 = ["export"]
  redact_command                 = ["weward-pipeline", "redact-due"]
  image_tag                      = "test"
  dagster_storage_host           = "db.example"
  kms_key_arn                    = "arn:aws:kms:eu-west-3:123456789012:key/11111111-2222-3333-4444-555555555555"
  vpc_id                         = "vpc-0123456789abcdef0"
  postgres_security_group_id     = "sg-0123456789abcdef0"
  vpc_endpoint_security_group_id = "sg-0fedcba9876543210"
  s3_prefix_list_id              = "pl-0123abcd"
  compute_logs_bucket            = "weward-lake-test"
  compute_logs_prefix            = "_dagster/compute-logs"
}

run "each_task_gets_only_its_own_secrets" {
  command = plan

  assert {
    condition = {
      for s in jsondecode(aws_ecs_task_definition.worker["redact"].container_definitions)[0].secrets : s.name => s.valueFrom
      } == {
      WEWARD_PG_REDACT_URL = var.secret_arns["WEWARD_PG_REDACT_URL"]
      WEWARD_PG_URL        = var.secret_arns["WEWARD_PG_REDACT_URL"]
      DAGSTER_PG_PASSWORD  = var.secret_arns["DAGSTER_PG_PASSWORD"]
    }
    error_message = "the redaction task gets its own DSN (also as WEWARD_PG_URL, which the code location needs), never the export's"
  }
  assert {
    condition = {
      for s in jsondecode(aws_ecs_task_definition.worker["export"].container_definitions)[0].secrets : s.name => s.valueFrom
      } == {
      WEWARD_PG_URL       = var.secret_arns["WEWARD_PG_URL"]
      WEWARD_PII_KEY      = var.secret_arns["WEWARD_PII_KEY"]
      DAGSTER_PG_PASSWORD = var.secret_arns["DAGSTER_PG_PASSWORD"]
    }
    error_message = "the export task gets the export DSN, the PII key and the storage password"
  }
  assert {
    condition = {
      for s in jsondecode(aws_ecs_task_definition.worker["erase"].container_definitions)[0].secrets : s.name => s.valueFrom
      } == {
      WEWARD_PG_ERASE_URL = var.secret_arns["WEWARD_PG_ERASE_URL"]
      WEWARD_PG_URL       = var.secret_arns["WEWARD_PG_ERASE_URL"]
      WEWARD_PII_KEY      = var.secret_arns["WEWARD_PII_KEY"]
      DAGSTER_PG_PASSWORD = var.secret_arns["DAGSTER_PG_PASSWORD"]
    }
    error_message = "the erasure task gets its own DSN (also as WEWARD_PG_URL), the PII key and the storage password"
  }
  assert {
    condition     = aws_ecs_task_definition.worker["erase"].task_role_arn == var.erasure_role_arn
    error_message = "the erasure runs under its own role"
  }
  assert {
    condition     = jsondecode(aws_ecs_task_definition.worker["redact"].container_definitions)[0].command == ["weward-pipeline", "redact-due"]
    error_message = "the redaction task runs its command"
  }
}

run "an_alias_to_the_export_secret_is_refused" {
  command = plan

  variables {
    redaction_secret_aliases = { WEWARD_PG_URL = "WEWARD_PG_URL" }
  }
  expect_failures = [var.redaction_secret_aliases]
}
