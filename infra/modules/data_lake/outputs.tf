output "lake_bucket_name" {
  description = "Name of the lake bucket."
  value       = aws_s3_bucket.lake.id
}

output "lake_bucket_arn" {
  description = "ARN of the lake bucket."
  value       = aws_s3_bucket.lake.arn
}

output "athena_results_bucket_name" {
  description = "Name of the Athena results bucket."
  value       = aws_s3_bucket.athena_results.id
}

output "athena_results_bucket_arn" {
  description = "ARN of the Athena results bucket."
  value       = aws_s3_bucket.athena_results.arn
}

output "access_log_bucket_name" {
  description = "Name of the access-log bucket."
  value       = aws_s3_bucket.access_logs.id
}
