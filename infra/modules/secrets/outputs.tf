output "secret_arns" {
  description = "Secret ARNs by the environment variable they fill."
  value       = { for variable, secret in aws_secretsmanager_secret.this : variable => secret.arn }
}
