# EU residency and versioning of the buckets, planned against a mock AWS provider.

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
  lake_bucket_name           = "weward-lake-prod"
  athena_results_bucket_name = "weward-athena-results-prod"
  access_log_bucket_name     = "weward-s3-access-logs-prod"
  kms_key_arn                = "arn:aws:kms:eu-west-3:123456789012:key/0d3b1c6e-5f2a-4e8b-9c71-2a6f4d8e9b10"
}

run "every_bucket_is_versioned_and_expires_noncurrent_versions_within_30_days" {
  command = plan

  assert {
    condition     = alltrue([for v in [aws_s3_bucket_versioning.lake, aws_s3_bucket_versioning.athena_results, aws_s3_bucket_versioning.access_logs] : v.versioning_configuration[0].status == "Enabled"])
    error_message = "every bucket is versioned"
  }
  assert {
    condition     = aws_s3_bucket_lifecycle_configuration.lake.rule[0].noncurrent_version_expiration[0].noncurrent_days == 30
    error_message = "erased personal data survives at most 30 days as noncurrent versions"
  }
}

run "a_bucket_outside_the_eu_is_refused" {
  command = plan

  override_data {
    target = data.aws_region.current
    values = { name = "us-east-1", id = "us-east-1", region = "us-east-1" }
  }
  expect_failures = [aws_s3_bucket.lake, aws_s3_bucket.athena_results, aws_s3_bucket.access_logs]
}

run "noncurrent_versions_kept_longer_than_a_month_are_refused" {
  command = plan

  variables {
    noncurrent_version_expiration_days = 90
  }
  expect_failures = [var.noncurrent_version_expiration_days]
}
