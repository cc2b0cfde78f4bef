output "export_role_arn" {
  description = "ARN of the export role (task role of the export run worker)."
  value       = aws_iam_role.export.arn
}

output "export_role_name" {
  description = "Name of the export role."
  value       = aws_iam_role.export.name
}

output "redaction_role_arn" {
  description = "ARN of the redaction role (task role of the redaction run worker)."
  value       = aws_iam_role.redaction.arn
}

output "erasure_role_arn" {
  description = "ARN of the erasure role (task role of the erasure run worker)."
  value       = aws_iam_role.erasure.arn
}

output "analyst_role_arn" {
  description = "ARN of the analyst role, null when no analyst principal is configured."
  value       = one(aws_iam_role.analyst[*].arn)
}
