output "cluster_arn" {
  description = "ARN of the ECS cluster."
  value       = aws_ecs_cluster.this.arn
}

output "cluster_name" {
  description = "Name of the ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "repository_url" {
  description = "ECR repository of the run worker image."
  value       = aws_ecr_repository.run_worker.repository_url
}

output "task_definition_arns" {
  description = "Task definition ARNs by worker (export, redact, erase)."
  value       = { for name, task in aws_ecs_task_definition.worker : name => task.arn }
}

output "task_definition_families" {
  description = "Task definition families by worker."
  value       = { for name, task in aws_ecs_task_definition.worker : name => task.family }
}

output "task_role_arns" {
  description = "Task role ARNs by worker."
  value       = { for name, task in aws_ecs_task_definition.worker : name => task.task_role_arn }
}

output "execution_role_arn" {
  description = "Execution role of the run worker tasks."
  value       = aws_iam_role.execution.arn
}

output "security_group_id" {
  description = "Security group of the run worker."
  value       = aws_security_group.run_worker.id
}

output "log_group_name" {
  description = "CloudWatch log group of the run worker."
  value       = aws_cloudwatch_log_group.run_worker.name
}

output "repository_arn" {
  description = "ARN of the ECR repository."
  value       = aws_ecr_repository.run_worker.arn
}

output "log_group_arn" {
  description = "ARN of the run worker log group."
  value       = aws_cloudwatch_log_group.run_worker.arn
}

output "cpu_architecture" {
  description = "CPU architecture of the run worker tasks (the image's)."
  value       = var.cpu_architecture
}

output "plain_environment" {
  description = "Plain environment of the run worker container."
  value       = local.plain_environment
}
