# Everything the pipeline needs in one AWS environment: lake, catalog, key, secrets, roles, run
# worker, schedules and the optional Dagster service. envs/dev and envs/prod call it with their
# name and deploy/<env>.env (through modules/pipeline_env); nothing here differs between them.

locals {
  environment = var.environment
  name_prefix = "weward-${local.environment}"
  pipeline    = var.pipeline_env

  # The export materializes yesterday's partition: partition keys are local dates of the table
  # catalog's time zone, the same zone the schedule fires in.
  yesterday      = "$(TZ=${var.schedule_timezone} date -d yesterday +%F)"
  export_command = ["sh", "-c", "exec dagster asset materialize -m weward_pipeline.definitions --select '${var.export_selection}' --partition \"${local.yesterday}\""]
  # Yesterday is always inside the retention: the redaction instead evaluates, per table, the
  # redaction_automation sensor's condition and redacts every day it selects within the lookback
  # (a missed morning is caught up the next), through Dagster on the production instance.
  redact_command = ["weward-pipeline", "redact-due", "--lookback-days", tostring(var.redact_lookback_days)]
  # An erasure is started on demand: by the Dagster daemon (gdpr_erasure from the UI), or without it
  # by `aws ecs run-task` passing the job's run config in WEWARD_ERASURE_RUN_CONFIG (infra/README.md).
  erase_command = ["sh", "-c", "printf '%s\\n' \"$WEWARD_ERASURE_RUN_CONFIG\" > /tmp/erasure-run.yaml && exec dagster job execute -m weward_pipeline.definitions -j gdpr_erasure -c /tmp/erasure-run.yaml"]
}

locals {
  compute_logs_prefix = "_dagster/compute-logs"
  # Interface endpoints the tasks call; the Dagster service adds ECS (EcsRunLauncher), EC2
  # (its network interfaces) and SSM messages (port forwarding to the UI).
  interface_endpoints = concat(
    ["ecr.api", "ecr.dkr", "logs", "secretsmanager", "glue", "athena", "kms", "sts"],
    var.dagster_service_enabled ? ["ecs", "ec2", "ssmmessages"] : [],
  )
  endpoints_to_create = [for service in local.interface_endpoints : service if !contains(var.existing_vpc_endpoints, service)]
  create_endpoints    = var.create_vpc_endpoints
  endpoint_security_groups = merge(
    local.create_endpoints ? { created = module.vpc_endpoints[0].security_group_id } : {},
    var.vpc_endpoint_security_group_id != null ? { existing = var.vpc_endpoint_security_group_id } : {},
  )
  s3_prefix_list_id = local.create_endpoints && !contains(var.existing_vpc_endpoints, "s3") ? module.vpc_endpoints[0].s3_prefix_list_id : var.s3_prefix_list_id
}

data "aws_caller_identity" "current" {}

module "kms" {
  source      = "../kms"
  name_prefix = local.name_prefix
}

module "data_lake" {
  source                             = "../data_lake"
  lake_bucket_name                   = local.pipeline.lake_bucket
  athena_results_bucket_name         = local.pipeline.athena_results_bucket
  access_log_bucket_name             = "weward-s3-access-logs-${local.environment}"
  kms_key_arn                        = module.kms.key_arn
  noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
  athena_results_expiration_days     = var.athena_results_expiration_days
}

module "catalog" {
  source                         = "../catalog"
  glue_database_name             = local.pipeline.glue_database
  lake_url                       = local.pipeline.env["WEWARD_LAKE_URL"]
  athena_workgroup_name          = local.pipeline.athena_workgroup
  athena_output_url              = "s3://${module.data_lake.athena_results_bucket_name}/${local.pipeline.athena_results_prefix}/"
  expected_bucket_owner          = data.aws_caller_identity.current.account_id
  kms_key_arn                    = module.kms.key_arn
  bytes_scanned_cutoff_per_query = var.bytes_scanned_cutoff_per_query
  manage_catalog_encryption      = var.manage_catalog_encryption
}

module "secrets" {
  source       = "../secrets"
  name_prefix  = local.name_prefix
  secret_names = local.pipeline.secret_names
  kms_key_arn  = module.kms.key_arn
}

module "iam" {
  source                    = "../iam"
  name_prefix               = local.name_prefix
  lake_bucket_arn           = module.data_lake.lake_bucket_arn
  lake_prefix               = local.pipeline.lake_prefix
  athena_results_bucket_arn = module.data_lake.athena_results_bucket_arn
  athena_results_prefix     = local.pipeline.athena_results_prefix
  glue_database_name        = module.catalog.glue_database_name
  athena_workgroup_name     = module.catalog.athena_workgroup_name
  athena_workgroup_arn      = module.catalog.athena_workgroup_arn
  compute_logs_prefix       = local.compute_logs_prefix
  kms_key_arn               = module.kms.key_arn
  secret_arns               = module.secrets.secret_arns
  analyst_principal_arns    = var.analyst_principal_arns
  allow_ec2_instances       = var.launch_type == "ec2_instance"
}

module "vpc_endpoints" {
  source             = "../vpc_endpoints"
  count              = var.create_vpc_endpoints ? 1 : 0
  name_prefix        = local.name_prefix
  vpc_id             = var.vpc_id
  vpc_cidr           = var.vpc_cidr
  subnet_ids         = var.private_subnet_ids
  route_table_ids    = var.private_route_table_ids
  interface_services = local.endpoints_to_create
  create_s3_gateway  = !contains(var.existing_vpc_endpoints, "s3")
}

module "export_job" {
  source                         = "../export_job"
  name_prefix                    = local.name_prefix
  pipeline_env                   = local.pipeline.env
  secret_arns                    = module.secrets.secret_arns
  export_role_arn                = module.iam.export_role_arn
  redaction_role_arn             = module.iam.redaction_role_arn
  erasure_role_arn               = module.iam.erasure_role_arn
  export_command                 = local.export_command
  redact_command                 = local.redact_command
  erase_command                  = local.erase_command
  image_tag                      = var.image_tag
  dagster_storage_host           = var.dagster_storage_host
  kms_key_arn                    = module.kms.key_arn
  vpc_id                         = var.vpc_id
  postgres_security_group_id     = var.postgres_security_group_id
  vpc_endpoint_security_group_id = local.create_endpoints ? module.vpc_endpoints[0].security_group_id : var.vpc_endpoint_security_group_id
  s3_prefix_list_id              = local.s3_prefix_list_id
  compute_logs_bucket            = module.data_lake.lake_bucket_name
  compute_logs_prefix            = local.compute_logs_prefix
  cpu                            = var.run_worker_cpu
  memory                         = var.run_worker_memory
}

module "schedule" {
  source            = "../schedule"
  name_prefix       = local.name_prefix
  launch_type       = var.launch_type
  schedule_timezone = var.schedule_timezone
  enabled           = var.schedules_enabled
  # With the Dagster daemon running, its daily_export_schedule starts the export (one run per day
  # by run key) and its redaction_automation sensor the redactions: two schedulers would export
  # every day twice and race on the redactions. Both EventBridge schedules are then DISABLED.
  enabled_runs         = var.dagster_service_enabled ? [] : ["export", "redact"]
  kms_key_arn          = module.kms.key_arn
  cluster_arn          = module.export_job.cluster_arn
  task_definition_arns = module.export_job.task_definition_arns
  task_role_arns       = module.export_job.task_role_arns
  execution_role_arn   = module.export_job.execution_role_arn
  subnet_ids           = var.private_subnet_ids
  security_group_id    = module.export_job.security_group_id

  ec2_architecture       = lower(module.export_job.cpu_architecture)
  ec2_instance_role_name = module.iam.export_role_name
  ec2_image              = "${module.export_job.repository_url}:${var.image_tag}"
  ec2_command            = local.export_command
  ec2_environment        = module.export_job.plain_environment
  ec2_secret_arns        = { for name in ["WEWARD_PG_URL", "WEWARD_PII_KEY", "DAGSTER_PG_PASSWORD"] : name => module.secrets.secret_arns[name] }
  ec2_log_group_name     = module.export_job.log_group_name
  ec2_log_group_arn      = module.export_job.log_group_arn
  ec2_repository_arn     = module.export_job.repository_arn
}

module "alerts" {
  source                   = "../alerts"
  name_prefix              = local.name_prefix
  kms_key_arn              = module.kms.key_arn
  cluster_arn              = module.export_job.cluster_arn
  task_definition_families = values(module.export_job.task_definition_families)
  dead_letter_queue_name   = module.schedule.dead_letter_queue_name
  alert_emails             = var.alert_emails
  slack_channel            = var.alert_slack_channel
}

module "dagster_service" {
  source = "../dagster_service"
  count  = var.dagster_service_enabled ? 1 : 0

  name_prefix                     = local.name_prefix
  cluster_arn                     = module.export_job.cluster_arn
  subnet_ids                      = var.private_subnet_ids
  security_group_id               = module.export_job.security_group_id
  vpc_id                          = var.vpc_id
  postgres_security_group_id      = var.postgres_security_group_id
  vpc_endpoint_security_group_ids = local.endpoint_security_groups
  s3_prefix_list_id               = local.s3_prefix_list_id
  log_group_arn                   = module.export_job.log_group_arn
  kms_key_arn                     = module.kms.key_arn
  compute_logs                    = { bucket_arn = module.data_lake.lake_bucket_arn, prefix = local.compute_logs_prefix }
  cpu_architecture                = module.export_job.cpu_architecture
  image                           = "${module.export_job.repository_url}:${var.image_tag}"
  environment                     = module.export_job.plain_environment
  storage_password_secret_arn     = module.secrets.secret_arns["DAGSTER_PG_PASSWORD"]
  execution_role_arn              = module.export_job.execution_role_arn
  log_group_name                  = module.export_job.log_group_name
  run_worker_task_definition      = module.export_job.task_definition_arns["export"]
  redaction_task_definition       = module.export_job.task_definition_arns["redact"]
  erasure_task_definition         = module.export_job.task_definition_arns["erase"]
  run_worker_role_arns            = distinct(concat([module.export_job.execution_role_arn], values(module.export_job.task_role_arns)))
}

# The EC2 variant's instance runs the export only (it has the export role, not the redaction
# role and DSN): without the Dagster service nothing would ever redact.
check "something_redacts" {
  assert {
    condition     = var.launch_type == "ecs_task" || var.dagster_service_enabled
    error_message = "launch_type = \"ec2_instance\" runs the export only: set dagster_service_enabled = true (its sensor redacts), or use ecs_task, or tables with retention_days are never redacted."
  }
}
