# Who may assume the roles, planned against a mock AWS provider (the policies themselves are
# checked on the rendered environment: weward_pipeline_tests/test_infra_*.py).

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
  name_prefix               = "weward-test"
  lake_bucket_arn           = "arn:aws:s3:::weward-lake-test"
  lake_prefix               = "lake"
  athena_results_bucket_arn = "arn:aws:s3:::weward-athena-results-test"
  athena_results_prefix     = "results"
  glue_database_name        = "weward_lake"
  athena_workgroup_name     = "weward-analysts"
  athena_workgroup_arn      = "arn:aws:athena:eu-west-3:123456789012:workgroup/weward-analysts"
  kms_key_arn               = "arn:aws:kms:eu-west-3:123456789012:key/0d3b1c6e-5f2a-4e8b-9c71-2a6f4d8e9b10"
  secret_arns = {
    WEWARD_PG_URL        = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:pg-export-url-AAAAAA"
    WEWARD_PG_REDACT_URL = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:pg-redact-url-BBBBBB"
    WEWARD_PII_KEY       = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:pii-key-CCCCCC"
    DAGSTER_PG_PASSWORD  = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:dagster-pg-password-DDDDDD"
    WEWARD_PG_ERASE_URL  = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:pg-erase-url-EEEEEE"
  }
}

run "without_analyst_principals_there_is_no_analyst_role" {
  command = plan

  assert {
    condition     = length(aws_iam_role.analyst) == 0
    error_message = "no principal, no role"
  }
  assert {
    condition     = jsondecode(aws_iam_role.export.assume_role_policy).Statement[0].Principal.Service == ["ecs-tasks.amazonaws.com"]
    error_message = "only ECS tasks assume the export role unless the EC2 variant is on"
  }
}

run "the_ec2_variant_lets_the_instance_assume_the_export_role" {
  command = plan

  variables {
    allow_ec2_instances    = true
    analyst_principal_arns = ["arn:aws:iam::123456789012:role/analyst"]
  }
  assert {
    condition     = jsondecode(aws_iam_role.export.assume_role_policy).Statement[0].Principal.Service == ["ecs-tasks.amazonaws.com", "ec2.amazonaws.com"]
    error_message = "the run instance's profile holds the export role"
  }
  assert {
    condition     = jsonencode(jsondecode(aws_iam_role.analyst[0].assume_role_policy).Statement[0].Principal.AWS) == jsonencode(var.analyst_principal_arns)
    error_message = "the analysts' principals assume the analyst role"
  }
}
