output "lake_url" {
  description = "WEWARD_LAKE_URL of this environment."
  value       = "s3://${module.data_lake.lake_bucket_name}/${local.pipeline.lake_prefix}"
}

output "athena_output_url" {
  description = "WEWARD_ATHENA_OUTPUT of this environment."
  value       = "s3://${module.data_lake.athena_results_bucket_name}/${local.pipeline.athena_results_prefix}"
}

output "glue_database" {
  description = "WEWARD_GLUE_DATABASE."
  value       = module.catalog.glue_database_name
}

output "athena_workgroup" {
  description = "WEWARD_ATHENA_WORKGROUP."
  value       = module.catalog.athena_workgroup_name
}

output "kms_key_arn" {
  description = "The project key."
  value       = module.kms.key_arn
}

output "ecr_repository_url" {
  description = "Where CI pushes the run worker image (deploy/Dockerfile)."
  value       = module.export_job.repository_url
}

output "ecs_cluster_name" {
  description = "ECS cluster of the runs."
  value       = module.export_job.cluster_name
}

output "task_definition_arns" {
  description = "Run worker task definitions (export, redact, erase)."
  value       = module.export_job.task_definition_arns
}

output "secret_arns" {
  description = "Secrets to fill with `aws secretsmanager put-secret-value` after the first apply."
  value       = module.secrets.secret_arns
}

output "export_role_arn" {
  description = "Export role."
  value       = module.iam.export_role_arn
}

output "redaction_role_arn" {
  description = "Redaction role."
  value       = module.iam.redaction_role_arn
}

output "erasure_role_arn" {
  description = "Erasure role."
  value       = module.iam.erasure_role_arn
}

output "analyst_role_arn" {
  description = "Analyst role (null without analyst principals)."
  value       = module.iam.analyst_role_arn
}

output "schedule_names" {
  description = "EventBridge Scheduler schedules."
  value       = module.schedule.schedule_names
}

output "schedule_states" {
  description = "Whether EventBridge starts each run (export, redact): DISABLED when the Dagster daemon does."
  value       = module.schedule.schedule_states
}

output "run_commands" {
  description = "Container command of each run (export, redact; erase: started on demand)."
  value       = { export = local.export_command, redact = local.redact_command, erase = local.erase_command }
}

output "postgres_ingress_rules" {
  description = "Ingress rules the owners of the PostgreSQL security group must add (this stack never edits it)."
  value = concat(
    [{ security_group_id = var.postgres_security_group_id, port = 5432, from_security_group_id = module.export_job.security_group_id, description = "${local.name_prefix} run worker" }],
    [for sg in module.dagster_service[*].security_group_id : { security_group_id = var.postgres_security_group_id, port = 5432, from_security_group_id = sg, description = "${local.name_prefix} Dagster service" }],
  )
}

output "alert_topic_arn" {
  description = "SNS topic of the alerts (subscribe more endpoints to it)."
  value       = module.alerts.topic_arn
}

output "run_worker_log_group" {
  description = "CloudWatch log group of every run."
  value       = module.export_job.log_group_name
}
