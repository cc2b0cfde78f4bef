# The Athena workgroup's guards and the catalog encryption switch, planned against a mock AWS provider.

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
  glue_database_name    = "weward_lake"
  lake_url              = "s3://weward-lake-prod/lake"
  athena_workgroup_name = "weward-analysts"
  athena_output_url     = "s3://weward-athena-results-prod/results/"
  expected_bucket_owner = "123456789012"
  kms_key_arn           = "arn:aws:kms:eu-west-3:123456789012:key/0d3b1c6e-5f2a-4e8b-9c71-2a6f4d8e9b10"
}

run "the_workgroup_enforces_its_encrypted_output_and_its_scan_cap" {
  command = plan

  assert {
    condition     = aws_athena_workgroup.analysts.configuration[0].enforce_workgroup_configuration && aws_athena_workgroup.analysts.configuration[0].bytes_scanned_cutoff_per_query == 107374182400
    error_message = "clients must not override the workgroup's output or its 100 GiB scan cap"
  }
  assert {
    condition     = aws_athena_workgroup.analysts.configuration[0].result_configuration[0].encryption_configuration[0].kms_key_arn == var.kms_key_arn
    error_message = "query results hold personal data: encrypted with the project key"
  }
}

run "a_scan_cap_below_athena_s_minimum_is_refused" {
  command = plan

  variables {
    bytes_scanned_cutoff_per_query = 1000
  }
  expect_failures = [var.bytes_scanned_cutoff_per_query]
}
