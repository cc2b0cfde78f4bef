variable "name_prefix" {
  description = "Prefix of every resource name, e.g. weward-prod."
  type        = string
}

variable "pipeline_env" {
  description = "The pipeline's environment (modules/pipeline_env env): passed to the container, *_SECRET keys excluded."
  type        = map(string)
}

variable "secret_arns" {
  description = "Secret ARNs by the environment variable they fill (modules/secrets)."
  type        = map(string)
}

variable "export_secret_variables" {
  description = "Secrets injected into the export task."
  type        = list(string)
  default     = ["WEWARD_PG_URL", "WEWARD_PII_KEY", "DAGSTER_PG_PASSWORD"]
}

variable "redaction_secret_variables" {
  description = "Secrets injected into the redaction task."
  type        = list(string)
  default     = ["WEWARD_PG_REDACT_URL", "DAGSTER_PG_PASSWORD"]
}

variable "redaction_secret_aliases" {
  description = "More variables of the redaction task, each filled from one of its secrets. The code location's lake resource needs WEWARD_PG_URL; the redaction task gets its own DSN there, never the export's."
  type        = map(string)
  default     = { WEWARD_PG_URL = "WEWARD_PG_REDACT_URL" }

  validation {
    condition     = alltrue([for secret in values(var.redaction_secret_aliases) : contains(["WEWARD_PG_REDACT_URL", "DAGSTER_PG_PASSWORD"], secret)])
    error_message = "redaction_secret_aliases may only reuse the redaction task's own secrets."
  }
}

variable "erasure_secret_variables" {
  description = "Secrets injected into the erasure task: its own DSN (DELETE on the user tables), the PII key (pseudonymized user columns), the storage password."
  type        = list(string)
  default     = ["WEWARD_PG_ERASE_URL", "WEWARD_PII_KEY", "DAGSTER_PG_PASSWORD"]
}

variable "erasure_secret_aliases" {
  description = "More variables of the erasure task, each filled from one of its secrets: the code location's lake resource needs WEWARD_PG_URL, here the erasure DSN."
  type        = map(string)
  default     = { WEWARD_PG_URL = "WEWARD_PG_ERASE_URL" }

  validation {
    condition     = alltrue([for secret in values(var.erasure_secret_aliases) : contains(["WEWARD_PG_ERASE_URL", "WEWARD_PII_KEY", "DAGSTER_PG_PASSWORD"], secret)])
    error_message = "erasure_secret_aliases may only reuse the erasure task's own secrets."
  }
}

variable "export_role_arn" {
  description = "Task role of the export (modules/iam)."
  type        = string
}

variable "redaction_role_arn" {
  description = "Task role of the redaction (modules/iam)."
  type        = string
}

variable "erasure_role_arn" {
  description = "Task role of the erasure (modules/iam)."
  type        = string
}

variable "erase_command" {
  description = "Container command of an erasure started without the Dagster daemon (aws ecs run-task, see infra/README.md)."
  type        = list(string)
}

variable "export_command" {
  description = "Container command of the daily export."
  type        = list(string)
}

variable "redact_command" {
  description = "Container command of the redaction."
  type        = list(string)
}

variable "image_tag" {
  description = "Tag of the run worker image in the ECR repository (immutable tags: one per build)."
  type        = string
}

variable "dagster_storage_host" {
  description = "Host of the PostgreSQL server holding Dagster's run and event storage (database DAGSTER_PG_DB)."
  type        = string
}

variable "compute_logs_bucket" {
  description = "Bucket of Dagster's step logs (the lake bucket)."
  type        = string
}

variable "compute_logs_prefix" {
  description = "Key prefix of Dagster's step logs, without slashes."
  type        = string
}

variable "kms_key_arn" {
  description = "The project key (ECR, logs, secrets)."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the PostgreSQL server."
  type        = string
}

variable "postgres_security_group_id" {
  description = "Security group of the PostgreSQL server(s) the worker connects to."
  type        = string
}

variable "postgres_port" {
  description = "PostgreSQL port."
  type        = number
  default     = 5432
}

variable "manage_postgres_ingress" {
  description = "Add the ingress rule from the run worker to the PostgreSQL security group. Off: that group belongs to the application team; the stack outputs the rules to add (postgres_ingress_rules)."
  type        = bool
  default     = false
}

variable "vpc_endpoint_security_group_id" {
  description = "Security group of the interface VPC endpoints."
  type        = string
}

variable "s3_prefix_list_id" {
  description = "Prefix list of the S3 gateway endpoint."
  type        = string
}

variable "cpu" {
  description = "Fargate CPU units of one run: 2 vCPU, because the scheduled run exports every table in one run, two at a time (the postgres_source pool)."
  type        = number
  default     = 2048
}

variable "memory" {
  description = "Fargate memory (MiB) of one run. make bench measured the whole run's process tree: 349 MB RSS for a one-table first export of 2M rows (flat with the day's size), 481 MB for a re-export (plus about 60 bytes per row of the day), 1,232 MB for the scheduled all-tables run with two 2M-row tables exporting at once (bench/results.md): 4096 leaves 3x headroom over the largest."
  type        = number
  default     = 4096
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64; must match the image build."
  type        = string
  default     = "X86_64"
}

variable "ephemeral_storage_gib" {
  description = "Task storage (21 to 200 GiB) for Parquet files staged before upload."
  type        = number
  default     = 50
}

variable "log_retention_days" {
  description = "Days run logs are kept."
  type        = number
  default     = 365
}

variable "images_to_keep" {
  description = "Images kept in the ECR repository."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
