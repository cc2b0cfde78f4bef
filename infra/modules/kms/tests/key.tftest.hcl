# The project key, planned against a mock AWS provider.

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
  name_prefix = "weward-test"
}

run "the_key_rotates_and_only_the_account_and_its_log_groups_use_it" {
  command = plan

  assert {
    condition     = aws_kms_key.this.enable_key_rotation && aws_kms_alias.this.name == "alias/weward-test"
    error_message = "the key rotates, under its alias"
  }
  assert {
    condition = jsonencode([for s in jsondecode(aws_kms_key.this.policy).Statement : s.Principal]) == jsonencode([
      { AWS = "arn:aws:iam::123456789012:root" }, { Service = "logs.eu-west-3.amazonaws.com" },
      { Service = ["cloudwatch.amazonaws.com", "events.amazonaws.com"] },
    ])
    error_message = "the key policy names the account root, CloudWatch Logs of this region, and the alert topic's publishers only"
  }
}
