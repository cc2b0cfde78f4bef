# Development: modules/pipeline_stack for environment "dev". Names come from deploy/dev.env, the
# file the run worker is configured with: a bucket or database renamed there is renamed here, and
# tests check the wiring. Everything else is in the module, shared with the other environment.

locals {
  environment = "dev"
  tags = merge(var.tags, {
    project     = "weward-pipeline"
    environment = local.environment
    managed-by  = "terraform"
  })
}

module "pipeline_env" {
  source   = "../../modules/pipeline_env"
  env_file = "${path.module}/../../../deploy/${local.environment}.env"
}

module "pipeline" {
  source = "../../modules/pipeline_stack"

  environment                        = local.environment
  pipeline_env                       = module.pipeline_env
  vpc_id                             = var.vpc_id
  vpc_cidr                           = var.vpc_cidr
  private_subnet_ids                 = var.private_subnet_ids
  private_route_table_ids            = var.private_route_table_ids
  postgres_security_group_id         = var.postgres_security_group_id
  dagster_storage_host               = var.dagster_storage_host
  create_vpc_endpoints               = var.create_vpc_endpoints
  existing_vpc_endpoints             = var.existing_vpc_endpoints
  vpc_endpoint_security_group_id     = var.vpc_endpoint_security_group_id
  s3_prefix_list_id                  = var.s3_prefix_list_id
  image_tag                          = var.image_tag
  export_selection                   = var.export_selection
  redact_lookback_days               = var.redact_lookback_days
  run_worker_cpu                     = var.run_worker_cpu
  run_worker_memory                  = var.run_worker_memory
  launch_type                        = var.launch_type
  schedule_timezone                  = var.schedule_timezone
  schedules_enabled                  = var.schedules_enabled
  noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
  athena_results_expiration_days     = var.athena_results_expiration_days
  bytes_scanned_cutoff_per_query     = var.bytes_scanned_cutoff_per_query
  manage_catalog_encryption          = var.manage_catalog_encryption
  analyst_principal_arns             = var.analyst_principal_arns
  alert_emails                       = var.alert_emails
  alert_slack_channel                = var.alert_slack_channel
  dagster_service_enabled            = var.dagster_service_enabled
}
