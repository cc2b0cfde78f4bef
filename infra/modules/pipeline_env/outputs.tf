output "env" {
  description = "Every KEY=VALUE pair of the file, for the run worker's plain environment."
  value       = local.env
}

output "aws_region" {
  description = "AWS_REGION."
  value       = local.env["AWS_REGION"]
}

output "lake_bucket" {
  description = "Bucket of WEWARD_LAKE_URL."
  value       = local.lake_url_parts[0]
}

output "lake_prefix" {
  description = "Key prefix of WEWARD_LAKE_URL, without slashes at either end."
  value       = local.lake_url_parts[1]
}

output "athena_results_bucket" {
  description = "Bucket of WEWARD_ATHENA_OUTPUT."
  value       = local.athena_out_parts[0]
}

output "athena_results_prefix" {
  description = "Key prefix of WEWARD_ATHENA_OUTPUT."
  value       = local.athena_out_parts[1]
}

output "glue_database" {
  description = "WEWARD_GLUE_DATABASE."
  value       = local.env["WEWARD_GLUE_DATABASE"]
}

output "athena_workgroup" {
  description = "WEWARD_ATHENA_WORKGROUP."
  value       = local.env["WEWARD_ATHENA_WORKGROUP"]
}

output "secret_names" {
  description = "Secrets Manager names of the values the run worker receives as secrets, by the variable they fill."
  value = {
    WEWARD_PG_URL        = local.env["WEWARD_PG_URL_SECRET"]
    WEWARD_PG_REDACT_URL = local.env["WEWARD_PG_REDACT_URL_SECRET"]
    WEWARD_PG_ERASE_URL  = local.env["WEWARD_PG_ERASE_URL_SECRET"]
    WEWARD_PII_KEY       = local.env["WEWARD_PII_KEY_SECRET"]
    DAGSTER_PG_PASSWORD  = local.env["DAGSTER_PG_PASSWORD_SECRET"]
  }
}
