variable "aws_account_id" {
  description = "The AWS account this environment lives in: the provider refuses to plan or apply with credentials of any other (allowed_account_ids)."
  type        = string
  validation {
    condition     = can(regex("^[0-9]{12}$", var.aws_account_id))
    error_message = "aws_account_id is the 12-digit id of the environment's AWS account."
  }
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
  default     = true
}

variable "existing_vpc_endpoints" {
  description = "Endpoints the VPC already has (e.g. [\"s3\", \"logs\"]): not created here; give their security group and the S3 prefix list."
  type        = list(string)
  default     = []
}

variable "vpc_endpoint_security_group_id" {
  description = "Security group of existing interface endpoints (only when create_vpc_endpoints = false)."
  type        = string
  default     = null
}

variable "s3_prefix_list_id" {
  description = "Prefix list of an existing S3 gateway endpoint (only when create_vpc_endpoints = false)."
  type        = string
  default     = null
}

variable "image_tag" {
  description = "Tag of the run worker image to run (pushed by CI)."
  type        = string
}

variable "export_selection" {
  description = "Dagster asset selection of the daily export; each scheduled run materializes yesterday's partition (in schedule_timezone) of it."
  type        = string
  default     = "key:lake/*"
}

variable "redact_lookback_days" {
  description = "The daily redaction (weward-pipeline redact-due) redacts the due days whose retention ended within this many days; a day missed longer ago needs a backfill."
  type        = number
  default     = 30

  validation {
    condition     = var.redact_lookback_days >= 1 && floor(var.redact_lookback_days) == var.redact_lookback_days
    error_message = "redact_lookback_days must be a whole number of days, at least 1."
  }
}

variable "run_worker_cpu" {
  description = "Fargate CPU units of one run: 2 vCPU, because the scheduled run exports every table in one run, two at a time (the postgres_source pool)."
  type        = number
  default     = 2048
}

variable "run_worker_memory" {
  description = "Fargate memory (MiB) of one run. make bench measured the whole run's process tree: 349 MB RSS for a one-table first export of 2M rows (flat with the day's size), 481 MB for a re-export (plus about 60 bytes per row of the day), 1,232 MB for the scheduled all-tables run with two 2M-row tables exporting at once (bench/results.md): 4096 leaves 3x headroom over the largest."
  type        = number
  default     = 4096
}

variable "launch_type" {
  description = "ecs_task (Fargate task per run) or ec2_instance (stopped instance started per run)."
  type        = string
  default     = "ecs_task"
}

variable "schedule_timezone" {
  description = "Time zone of the schedules: the `timezone` of the table catalog (tests check they agree)."
  type        = string
  default     = "Europe/Paris"
}

variable "schedules_enabled" {
  description = "false pauses the daily runs."
  type        = bool
  default     = true
}

variable "noncurrent_version_expiration_days" {
  description = "Days replaced or deleted lake objects survive (bounds erasure delay)."
  type        = number
  default     = 30
}

variable "athena_results_expiration_days" {
  description = "Days Athena query results are kept."
  type        = number
  default     = 30
}

variable "bytes_scanned_cutoff_per_query" {
  description = "Per-query scan cap of the analysts' workgroup, in bytes."
  type        = number
  default     = 107374182400
}

# Off by default: the setting is account-wide (one per region), so turning it on here would re-key
# the catalogs of every other team in the account. Opt in only in an account of your own.
variable "manage_catalog_encryption" {
  description = "Manage the account-wide Glue Data Catalog encryption settings (opt in only in an account the pipeline owns)."
  type        = bool
  default     = false
}

variable "analyst_principal_arns" {
  description = "Principals allowed to assume the analyst role; empty creates no analyst role."
  type        = list(string)
  default     = []
}

variable "alert_emails" {
  description = "Addresses that receive the alerts (failed or never-started runs, dead-lettered schedules); each confirms AWS's subscription email."
  type        = list(string)
  default     = []
}

variable "alert_slack_channel" {
  description = "Optional Slack delivery of the alerts through AWS Chatbot: { workspace_id, channel_id } (authorize the workspace in the Chatbot console first)."
  type = object({
    workspace_id = string
    channel_id   = string
  })
  default = null
}

variable "dagster_service_enabled" {
  description = "Run the Dagster webserver and daemon on ECS (modules/dagster_service)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}
