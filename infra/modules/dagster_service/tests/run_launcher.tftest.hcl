# What the daemon's EcsRunLauncher is told about the run worker task definitions, planned against
# a mock AWS provider. From infra/modules/dagster_service: terraform init -backend=false && terraform test
# (weward_pipeline_tests/test_infra_terraform.py runs it when the AWS provider is installable).

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012", arn = "arn:aws:iam::123456789012:user/ci", user_id = "AIDACI" }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-3", id = "eu-west-3", region = "eu-west-3" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws", dns_suffix = "amazonaws.com", id = "aws" }
  }
}

variables {
  name_prefix                     = "weward-test"
  cluster_arn                     = "arn:aws:ecs:eu-west-3:123456789012:cluster/weward-test"
  subnet_ids                      = ["subnet-0aaaaaaaaaaaaaaaa"]
  security_group_id               = "sg-0123456789abcdef0"
  image                           = "123456789012.dkr.ecr.eu-west-3.amazonaws.com/weward-test/run-worker:test"
  environment                     = { DAGSTER_HOME = "/opt/dagster/dagster_home" }
  storage_password_secret_arn     = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:dagster-pg-password"
  execution_role_arn              = "arn:aws:iam::123456789012:role/execution"
  log_group_name                  = "/weward-test/run-worker"
  run_worker_task_definition      = "arn:aws:ecs:eu-west-3:123456789012:task-definition/weward-test-export:3"
  redaction_task_definition       = "arn:aws:ecs:eu-west-3:123456789012:task-definition/weward-test-redact:3"
  erasure_task_definition         = "arn:aws:ecs:eu-west-3:123456789012:task-definition/weward-test-erase:3"
  vpc_id                          = "vpc-0123456789abcdef0"
  postgres_security_group_id      = "sg-0fedcba9876543210"
  vpc_endpoint_security_group_ids = { created = "sg-0a1b2c3d4e5f60002" }
  s3_prefix_list_id               = "pl-06a8b7c9"
  log_group_arn                   = "arn:aws:logs:eu-west-3:123456789012:log-group:/weward-test/run-worker"
  kms_key_arn                     = "arn:aws:kms:eu-west-3:123456789012:key/0d3b1c6e-5f2a-4e8b-9c71-2a6f4d8e9b10"
  compute_logs                    = { bucket_arn = "arn:aws:s3:::weward-lake-test", prefix = "_dagster/compute-logs" }
  cpu_architecture                = "X86_64"
  run_worker_role_arns            = ["arn:aws:iam::123456789012:role/execution", "arn:aws:iam::123456789012:role/export", "arn:aws:iam::123456789012:role/redaction"]
}

run "the_daemon_launches_runs_from_the_export_and_the_sensor_s_redactions_from_the_redaction_task_definition" {
  command = plan

  assert {
    condition = toset([
      for e in jsondecode(aws_ecs_task_definition.service["daemon"].container_definitions)[0].environment : e
      if startswith(e.name, "DAGSTER_RUN_TASK") || endswith(e.name, "_TASK_DEFINITION")
      ]) == toset([
      { name = "DAGSTER_RUN_TASK_DEFINITION", value = var.run_worker_task_definition },
      { name = "WEWARD_REDACTION_TASK_DEFINITION", value = var.redaction_task_definition },
      { name = "WEWARD_ERASURE_TASK_DEFINITION", value = var.erasure_task_definition },
    ])
    error_message = "the daemon needs the three task definitions (weward_pipeline/defs/redaction.py reads WEWARD_REDACTION_TASK_DEFINITION)"
  }
}
