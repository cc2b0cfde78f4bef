# The rehearsal: this environment planned in full against a mock AWS provider, every value known
# at plan time, so that Terraform itself renders what would be deployed: each role's trust and
# policy documents (jsonencode, evaluated by Terraform), each task definition, schedule, rule,
# security group and endpoint. weward_pipeline_tests/terraform_render.py runs it with
# `terraform test -verbose -json` and reads the plans; the tests evaluate every AWS call of the
# product against those policies.
#
# The overrides stand in for what AWS assigns on creation (ARNs, ids), in the shape AWS gives
# them: account 123456789012, region eu-west-3. Names follow deploy/prod.env; for envs/dev the
# renderer substitutes deploy/dev.env's names.

mock_provider "aws" {
  override_during = plan

  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012", arn = "arn:aws:iam::123456789012:user/ci", user_id = "AIDACI" }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-3", id = "eu-west-3", region = "eu-west-3" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws", dns_suffix = "amazonaws.com", id = "aws" }
  }
  mock_data "aws_ssm_parameter" {
    defaults = { value = "ami-0123456789abcdef0", insecure_value = "ami-0123456789abcdef0" }
  }

  # Every resource type gets mock values during plan (ids nobody reads stay random strings).
  mock_resource "aws_athena_workgroup" {}
  mock_resource "aws_chatbot_slack_channel_configuration" {}
  mock_resource "aws_cloudwatch_event_rule" {}
  mock_resource "aws_cloudwatch_event_target" {}
  mock_resource "aws_cloudwatch_metric_alarm" {}
  mock_resource "aws_sns_topic" {}
  mock_resource "aws_sns_topic_policy" {}
  mock_resource "aws_sns_topic_subscription" {}
  mock_resource "aws_cloudwatch_log_group" {}
  mock_resource "aws_ecr_lifecycle_policy" {}
  mock_resource "aws_ecr_repository" {}
  mock_resource "aws_ecs_cluster" {}
  mock_resource "aws_ecs_service" {}
  mock_resource "aws_ecs_task_definition" {}
  mock_resource "aws_glue_catalog_database" {}
  mock_resource "aws_glue_data_catalog_encryption_settings" {}
  mock_resource "aws_iam_instance_profile" {}
  mock_resource "aws_iam_role" {}
  mock_resource "aws_iam_role_policy" {}
  mock_resource "aws_instance" {}
  mock_resource "aws_kms_alias" {}
  mock_resource "aws_kms_key" {
    defaults = {
      arn    = "arn:aws:kms:eu-west-3:123456789012:key/0d3b1c6e-5f2a-4e8b-9c71-2a6f4d8e9b10"
      key_id = "0d3b1c6e-5f2a-4e8b-9c71-2a6f4d8e9b10"
      id     = "0d3b1c6e-5f2a-4e8b-9c71-2a6f4d8e9b10"
    }
  }
  mock_resource "aws_s3_bucket" {}
  mock_resource "aws_s3_bucket_lifecycle_configuration" {}
  mock_resource "aws_s3_bucket_logging" {}
  mock_resource "aws_s3_bucket_ownership_controls" {}
  mock_resource "aws_s3_bucket_policy" {}
  mock_resource "aws_s3_bucket_public_access_block" {}
  mock_resource "aws_s3_bucket_server_side_encryption_configuration" {}
  mock_resource "aws_s3_bucket_versioning" {}
  mock_resource "aws_scheduler_schedule" {}
  mock_resource "aws_scheduler_schedule_group" {}
  mock_resource "aws_secretsmanager_secret" {}
  mock_resource "aws_security_group" {}
  mock_resource "aws_sqs_queue" {}
  mock_resource "aws_vpc_endpoint" {}
  mock_resource "aws_vpc_security_group_egress_rule" {}
  mock_resource "aws_vpc_security_group_ingress_rule" {}
}

# --- what AWS would assign ------------------------------------------------------------------

override_resource {
  target          = module.pipeline.module.data_lake.aws_s3_bucket.lake
  override_during = plan
  values          = { arn = "arn:aws:s3:::weward-lake-prod", id = "weward-lake-prod", bucket = "weward-lake-prod" }
}

override_resource {
  target          = module.pipeline.module.data_lake.aws_s3_bucket.athena_results
  override_during = plan
  values          = { arn = "arn:aws:s3:::weward-athena-results-prod", id = "weward-athena-results-prod", bucket = "weward-athena-results-prod" }
}

override_resource {
  target          = module.pipeline.module.data_lake.aws_s3_bucket.access_logs
  override_during = plan
  values          = { arn = "arn:aws:s3:::weward-s3-access-logs-prod", id = "weward-s3-access-logs-prod", bucket = "weward-s3-access-logs-prod" }
}

override_resource {
  target          = module.pipeline.module.catalog.aws_athena_workgroup.analysts
  override_during = plan
  values          = { arn = "arn:aws:athena:eu-west-3:123456789012:workgroup/weward-analysts", id = "weward-analysts" }
}

override_resource {
  target          = module.pipeline.module.secrets.aws_secretsmanager_secret.this["WEWARD_PG_URL"]
  override_during = plan
  values          = { arn = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:weward/pipeline/pg-export-url-Xq3Lp9", id = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:weward/pipeline/pg-export-url-Xq3Lp9" }
}

override_resource {
  target          = module.pipeline.module.secrets.aws_secretsmanager_secret.this["WEWARD_PG_REDACT_URL"]
  override_during = plan
  values          = { arn = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:weward/pipeline/pg-redact-url-Hk2Vd7", id = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:weward/pipeline/pg-redact-url-Hk2Vd7" }
}

override_resource {
  target          = module.pipeline.module.secrets.aws_secretsmanager_secret.this["WEWARD_PG_ERASE_URL"]
  override_during = plan
  values          = { arn = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:weward/pipeline/pg-erase-url-Jm4Tz6", id = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:weward/pipeline/pg-erase-url-Jm4Tz6" }
}

override_resource {
  target          = module.pipeline.module.secrets.aws_secretsmanager_secret.this["WEWARD_PII_KEY"]
  override_during = plan
  values          = { arn = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:weward/pipeline/pii-key-Rt5Wm1", id = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:weward/pipeline/pii-key-Rt5Wm1" }
}

override_resource {
  target          = module.pipeline.module.secrets.aws_secretsmanager_secret.this["DAGSTER_PG_PASSWORD"]
  override_during = plan
  values          = { arn = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:weward/pipeline/dagster-pg-password-Bn8Cs4", id = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:weward/pipeline/dagster-pg-password-Bn8Cs4" }
}

override_resource {
  target          = module.pipeline.module.iam.aws_iam_role.export
  override_during = plan
  values          = { arn = "arn:aws:iam::123456789012:role/weward-prod-export", id = "weward-prod-export" }
}

override_resource {
  target          = module.pipeline.module.iam.aws_iam_role.redaction
  override_during = plan
  values          = { arn = "arn:aws:iam::123456789012:role/weward-prod-redaction", id = "weward-prod-redaction" }
}

override_resource {
  target          = module.pipeline.module.iam.aws_iam_role.erasure
  override_during = plan
  values          = { arn = "arn:aws:iam::123456789012:role/weward-prod-erasure", id = "weward-prod-erasure" }
}

override_resource {
  target          = module.pipeline.module.iam.aws_iam_role.analyst[0]
  override_during = plan
  values          = { arn = "arn:aws:iam::123456789012:role/weward-prod-analyst", id = "weward-prod-analyst" }
}

override_resource {
  target          = module.pipeline.module.export_job.aws_iam_role.execution
  override_during = plan
  values          = { arn = "arn:aws:iam::123456789012:role/weward-prod-run-worker-execution", id = "weward-prod-run-worker-execution" }
}

override_resource {
  target          = module.pipeline.module.schedule.aws_iam_role.scheduler
  override_during = plan
  values          = { arn = "arn:aws:iam::123456789012:role/weward-prod-scheduler", id = "weward-prod-scheduler" }
}

override_resource {
  target          = module.pipeline.module.dagster_service[0].aws_iam_role.service
  override_during = plan
  values          = { arn = "arn:aws:iam::123456789012:role/weward-prod-dagster-service", id = "weward-prod-dagster-service" }
}

override_resource {
  target          = module.pipeline.module.export_job.aws_ecs_cluster.this
  override_during = plan
  values          = { arn = "arn:aws:ecs:eu-west-3:123456789012:cluster/weward-prod", id = "arn:aws:ecs:eu-west-3:123456789012:cluster/weward-prod" }
}

override_resource {
  target          = module.pipeline.module.export_job.aws_ecs_task_definition.worker["export"]
  override_during = plan
  values          = { arn = "arn:aws:ecs:eu-west-3:123456789012:task-definition/weward-prod-export:1", arn_without_revision = "arn:aws:ecs:eu-west-3:123456789012:task-definition/weward-prod-export", revision = 1 }
}

override_resource {
  target          = module.pipeline.module.export_job.aws_ecs_task_definition.worker["redact"]
  override_during = plan
  values          = { arn = "arn:aws:ecs:eu-west-3:123456789012:task-definition/weward-prod-redact:1", arn_without_revision = "arn:aws:ecs:eu-west-3:123456789012:task-definition/weward-prod-redact", revision = 1 }
}

override_resource {
  target          = module.pipeline.module.export_job.aws_ecs_task_definition.worker["erase"]
  override_during = plan
  values          = { arn = "arn:aws:ecs:eu-west-3:123456789012:task-definition/weward-prod-erase:1", arn_without_revision = "arn:aws:ecs:eu-west-3:123456789012:task-definition/weward-prod-erase", revision = 1 }
}

override_resource {
  target          = module.pipeline.module.dagster_service[0].aws_ecs_task_definition.service["webserver"]
  override_during = plan
  values          = { arn = "arn:aws:ecs:eu-west-3:123456789012:task-definition/weward-prod-dagster-webserver:1", arn_without_revision = "arn:aws:ecs:eu-west-3:123456789012:task-definition/weward-prod-dagster-webserver", revision = 1 }
}

override_resource {
  target          = module.pipeline.module.dagster_service[0].aws_ecs_task_definition.service["daemon"]
  override_during = plan
  values          = { arn = "arn:aws:ecs:eu-west-3:123456789012:task-definition/weward-prod-dagster-daemon:1", arn_without_revision = "arn:aws:ecs:eu-west-3:123456789012:task-definition/weward-prod-dagster-daemon", revision = 1 }
}

override_resource {
  target          = module.pipeline.module.export_job.aws_cloudwatch_log_group.run_worker
  override_during = plan
  values          = { arn = "arn:aws:logs:eu-west-3:123456789012:log-group:/weward-prod/run-worker" }
}

override_resource {
  target          = module.pipeline.module.export_job.aws_ecr_repository.run_worker
  override_during = plan
  values = {
    arn            = "arn:aws:ecr:eu-west-3:123456789012:repository/weward-prod/run-worker"
    repository_url = "123456789012.dkr.ecr.eu-west-3.amazonaws.com/weward-prod/run-worker"
    registry_id    = "123456789012"
  }
}

override_resource {
  target          = module.pipeline.module.export_job.aws_security_group.run_worker
  override_during = plan
  values          = { id = "sg-0a1b2c3d4e5f60001", arn = "arn:aws:ec2:eu-west-3:123456789012:security-group/sg-0a1b2c3d4e5f60001" }
}

override_resource {
  target          = module.pipeline.module.vpc_endpoints[0].aws_security_group.endpoints
  override_during = plan
  values          = { id = "sg-0a1b2c3d4e5f60002", arn = "arn:aws:ec2:eu-west-3:123456789012:security-group/sg-0a1b2c3d4e5f60002" }
}

override_resource {
  target          = module.pipeline.module.vpc_endpoints[0].aws_vpc_endpoint.s3[0]
  override_during = plan
  values          = { id = "vpce-0a1b2c3d4e5f60001", prefix_list_id = "pl-06a8b7c9" }
}

override_resource {
  target          = module.pipeline.module.schedule.aws_sqs_queue.dead_letter
  override_during = plan
  values = {
    arn = "arn:aws:sqs:eu-west-3:123456789012:weward-prod-scheduler-dead-letters"
    id  = "https://sqs.eu-west-3.amazonaws.com/123456789012/weward-prod-scheduler-dead-letters"
    url = "https://sqs.eu-west-3.amazonaws.com/123456789012/weward-prod-scheduler-dead-letters"
  }
}

override_resource {
  target          = module.pipeline.module.alerts.aws_sns_topic.alerts
  override_during = plan
  values          = { arn = "arn:aws:sns:eu-west-3:123456789012:weward-prod-alerts", id = "arn:aws:sns:eu-west-3:123456789012:weward-prod-alerts" }
}

override_resource {
  target          = module.pipeline.module.alerts.aws_cloudwatch_event_rule.task_failed
  override_during = plan
  values          = { arn = "arn:aws:events:eu-west-3:123456789012:rule/weward-prod-run-failed", id = "weward-prod-run-failed" }
}

override_resource {
  target          = module.pipeline.module.dagster_service[0].aws_security_group.service
  override_during = plan
  values          = { id = "sg-0a1b2c3d4e5f60003", arn = "arn:aws:ec2:eu-west-3:123456789012:security-group/sg-0a1b2c3d4e5f60003" }
}

# --- the deployment: the variables without a default ------------------------------------------

variables {
  aws_account_id             = "123456789012"
  vpc_id                     = "vpc-0123456789abcdef0"
  vpc_cidr                   = "10.20.0.0/16"
  private_subnet_ids         = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]
  private_route_table_ids    = ["rtb-0aaaaaaaaaaaaaaaa", "rtb-0bbbbbbbbbbbbbbbb"]
  postgres_security_group_id = "sg-0123456789abcdef0"
  dagster_storage_host       = "weward-app-prod.cluster-abcdefghijkl.eu-west-3.rds.amazonaws.com"
  image_tag                  = "2026-11-28-abc1234"
}
# The optional parts (Dagster service, analyst role...) are switched on per rendering: the renderer
# replaces this run block with one run per rendering the tests read, each with its variables
# (terraform_render.VARIANTS over REHEARSAL_VARIABLES), all planned by one terraform process.

run "rehearsal" {
  command = plan
}
