output "lake_url" {
  description = "WEWARD_LAKE_URL of this environment."
  value       = module.pipeline.lake_url
}

output "athena_output_url" {
  description = "WEWARD_ATHENA_OUTPUT of this environment."
  value       = module.pipeline.athena_output_url
}

output "glue_database" {
  description = "WEWARD_GLUE_DATABASE."
  value       = module.pipeline.glue_database
}

output "athena_workgroup" {
  description = "WEWARD_ATHENA_WORKGROUP."
  value       = module.pipeline.athena_workgroup
}

output "kms_key_arn" {
  description = "The project key."
  value       = module.pipeline.kms_key_arn
}

output "ecr_repository_url" {
  description = "Where CI pushes the run worker image (deploy/Dockerfile)."
  value       = module.pipeline.ecr_repository_url
}

output "ecs_cluster_name" {
  description = "ECS cluster of the runs."
  value       = module.pipeline.ecs_cluster_name
}

output "task_definition_arns" {
  description = "Run worker task definitions (export, redact, erase)."
  value       = module.pipeline.task_definition_arns
}

output "secret_arns" {
  description = "Secrets to fill with `aws secretsmanager put-secret-value` after the first apply."
  value       = module.pipeline.secret_arns
}

output "export_role_arn" {
  description = "Export role."
  value       = module.pipeline.export_role_arn
}

output "redaction_role_arn" {
  description = "Redaction role."
  value       = module.pipeline.redaction_role_arn
}

output "erasure_role_arn" {
  description = "Erasure role."
  value       = module.pipeline.erasure_role_arn
}

output "analyst_role_arn" {
  description = "Analyst role (null without analyst principals)."
  value       = module.pipeline.analyst_role_arn
}

output "schedule_names" {
  description = "EventBridge Scheduler schedules."
  value       = module.pipeline.schedule_names
}

output "schedule_states" {
  description = "Whether EventBridge starts each run (export, redact): DISABLED when the Dagster daemon does."
  value       = module.pipeline.schedule_states
}

output "run_commands" {
  description = "Container command of each run (export, redact; erase: started on demand)."
  value       = module.pipeline.run_commands
}

output "postgres_ingress_rules" {
  description = "Ingress rules the owners of the PostgreSQL security group must add (this stack never edits it)."
  value       = module.pipeline.postgres_ingress_rules
}

output "alert_topic_arn" {
  description = "SNS topic of the alerts (subscribe more endpoints to it)."
  value       = module.pipeline.alert_topic_arn
}

output "run_worker_log_group" {
  description = "CloudWatch log group of every run."
  value       = module.pipeline.run_worker_log_group
}
