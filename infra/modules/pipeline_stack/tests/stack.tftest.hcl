# The whole stack for one environment, its names from deploy/prod.env, planned against a mock
# AWS provider; the environment roots' suites (envs/prod/tests) check the rest.

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

  mock_data "aws_ssm_parameter" {
    defaults = { value = "ami-0123456789abcdef0", insecure_value = "ami-0123456789abcdef0" }
  }
}

variables {
  environment                        = "prod"
  vpc_id                             = "vpc-0123456789abcdef0"
  vpc_cidr                           = "10.20.0.0/16"
  private_subnet_ids                 = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]
  private_route_table_ids            = ["rtb-0aaaaaaaaaaaaaaaa"]
  postgres_security_group_id         = "sg-0123456789abcdef0"
  dagster_storage_host               = "db.example"
  create_vpc_endpoints               = true
  existing_vpc_endpoints             = []
  vpc_endpoint_security_group_id     = null
  s3_prefix_list_id                  = null
  image_tag                          = "test"
  export_selection                   = "key:lake/*"
  redact_lookback_days               = 30
  run_worker_cpu                     = 2048
  run_worker_memory                  = 4096
  launch_type                        = "ecs_task"
  schedule_timezone                  = "Europe/Paris"
  schedules_enabled                  = true
  noncurrent_version_expiration_days = 30
  athena_results_expiration_days     = 30
  bytes_scanned_cutoff_per_query     = 107374182400
  manage_catalog_encryption          = false
  analyst_principal_arns             = []
  alert_emails                       = ["data-oncall@example.com"]
  alert_slack_channel                = null
  dagster_service_enabled            = false
}

run "env" {
  command = plan
  module {
    source = "../pipeline_env"
  }
  variables {
    env_file = "../../../deploy/prod.env"
  }
}

run "the_stack_is_named_after_its_environment_and_its_env_file" {
  command = plan

  variables {
    pipeline_env = run.env
  }
  assert {
    condition     = output.glue_database == "weward_lake" && output.ecs_cluster_name == "weward-prod"
    error_message = "database from deploy/prod.env, cluster from the environment name"
  }
  assert {
    condition     = output.run_commands.redact == ["weward-pipeline", "redact-due", "--lookback-days", "30"]
    error_message = "the scheduled redaction runs redact-due"
  }
}
