# The secret containers, planned against a mock AWS provider.

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
  name_prefix  = "weward-test"
  secret_names = { WEWARD_PG_URL = "weward/pipeline/pg-export-url", WEWARD_PII_KEY = "weward/pipeline/pii-key" }
  kms_key_arn  = "arn:aws:kms:eu-west-3:123456789012:key/0d3b1c6e-5f2a-4e8b-9c71-2a6f4d8e9b10"
}

run "one_secret_per_variable_encrypted_with_the_project_key" {
  command = plan

  assert {
    condition     = tomap({ for k, s in aws_secretsmanager_secret.this : k => s.name }) == var.secret_names
    error_message = "each secret is named as deploy/<env>.env says"
  }
  assert {
    condition     = alltrue([for s in aws_secretsmanager_secret.this : s.kms_key_id == var.kms_key_arn && s.recovery_window_in_days == 30])
    error_message = "secrets are encrypted with the project key and recoverable for 30 days"
  }
}
