variable "environment" {
  description = "Name of the environment (dev, prod): resource names are weward-<environment>-*."
  type        = string
}

variable "pipeline_env" {
  description = "modules/pipeline_env evaluated on deploy/<environment>.env: names, region, secret names, plain environment."
  type = object({
    env                   = map(string)
    aws_region            = string
    lake_bucket           = string
    lake_prefix           = string
    athena_results_bucket = string
    athena_results_prefix = string
    glue_database         = string
    athena_workgroup      = string
    secret_names          = map(string)
  })
}

variable "vpc_id" {
  description = "VPC of the application's PostgreSQL server."
  type        = string
}


variable "vpc_cidr" {
  description = "CIDR block of that VPC (allowed to reach the interface endpoints)."
  type        = string
}


variable "private_subnet_ids" {
  description = "Private subnets the run worker starts in (at least two AZs)."
  type        = list(string)
}


variable "private_route_table_ids" {
  description = "Route tables of those subnets (S3 gateway endpoint)."
  type        = list(string)
}


variable "postgres_security_group_id" {
  description = "Security group of the PostgreSQL server holding the application data and the `dagster` database."
  type        = string
}


variable "dagster_storage_host" {
  description = "Host of the PostgreSQL server holding Dagster's storage database (DAGSTER_PG_DB in deploy/<env>.env)."
  type        = string
}


variable "create_vpc_endpoints" {
  description = "Create the S3 gateway and interface endpoints; false when the VPC already has them."
  type        = bool
}


variable "existing_vpc_endpoints" {
  description = "Endpoints the VPC already has (e.g. [\"s3\", \"logs\"]): not created here; give their security group and the S3 prefix list."
  type        = list(string)
}


variable "vpc_endpoint_security_group_id" {
  description = "Security group of existing interface endpoints (only when create_vpc_endpoints = false)."
  type        = string
}


variable "s3_prefix_list_id" {
  description = "Prefix list of an existing S3 gateway endpoint (only when create_vpc_endpoints = false)."
  type        = string
}


variable "image_tag" {
  description = "Tag of the run worker image to run (pushed by CI)."
  type        = string
}


variable "export_selection" {
  description = "Dagster asset selection of the daily export; each scheduled run materializes yesterday's partition (in schedule_timezone) of it."
  type        = string
}


variable "redact_lookback_days" {
  description = "The daily redaction (weward-pipeline redact-due) redacts the due days whose retention ended within this many days; a day missed longer ago needs a backfill."
  type        = number
}


variable "run_worker_cpu" {
  description = "Fargate CPU units of one run: 2 vCPU, because the scheduled run exports every table in one run, two at a time (the postgres_source pool)."
  type        = number
}


variable "run_worker_memory" {
  description = "Fargate memory (MiB) of one run. make bench measured the whole run's process tree: 349 MB RSS for a one-table first export of 2M rows (flat with the day's size), 481 MB for a re-export (plus about 60 bytes per row of the day), 1,232 MB for the scheduled all-tables run with two 2M-row tables exporting at once (bench/results.md): 4096 leaves 3x headroom over the largest."
  type        = number
}


variable "launch_type" {
  description = "ecs_task (Fargate task per run) or ec2_instance (stopped instance started per run)."
  type        = string
}


variable "schedule_timezone" {
  description = "Time zone of the schedules: the `timezone` of the table catalog (tests check they agree)."
  type        = string
}


variable "schedules_enabled" {
  description = "false pauses the daily runs."
  type        = bool
}


variable "noncurrent_version_expiration_days" {
  description = "Days replaced or deleted lake objects survive (bounds erasure delay)."
  type        = number
}


variable "athena_results_expiration_days" {
  description = "Days Athena query results are kept."
  type        = number
}


variable "bytes_scanned_cutoff_per_query" {
  description = "Per-query scan cap of the analysts' workgroup, in bytes."
  type        = number
}


variable "manage_catalog_encryption" {
  description = "Manage the account's Glue Data Catalog encryption settings (one environment per account)."
  type        = bool
}


variable "analyst_principal_arns" {
  description = "Principals allowed to assume the analyst role; empty creates no analyst role."
  type        = list(string)
}


variable "alert_emails" {
  description = "Addresses that receive the alerts (failed or never-started runs, dead-lettered schedules); each confirms AWS's subscription email."
  type        = list(string)
}


variable "alert_slack_channel" {
  description = "Optional Slack delivery of the alerts through AWS Chatbot: { workspace_id, channel_id } (authorize the workspace in the Chatbot console first)."
  type = object({
    workspace_id = string
    channel_id   = string
  })
}


variable "dagster_service_enabled" {
  description = "Run the Dagster webserver and daemon on ECS (modules/dagster_service)."
  type        = bool
}

