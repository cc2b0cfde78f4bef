output "service_names" {
  description = "ECS services of the Dagster webserver and daemon."
  value       = [for service in aws_ecs_service.service : service.name]
}

output "security_group_id" {
  description = "Security group of the webserver and daemon."
  value       = aws_security_group.service.id
}

output "service_role_arn" {
  description = "Task role of the webserver and daemon."
  value       = aws_iam_role.service.arn
}
