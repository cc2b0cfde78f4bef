variable "name_prefix" {
  description = "Prefix of every resource name, e.g. weward-prod."
  type        = string
}

variable "lake_bucket_arn" {
  description = "ARN of the lake bucket."
  type        = string
}

variable "lake_prefix" {
  description = "Key prefix of the lake inside its bucket (from WEWARD_LAKE_URL), without slashes."
  type        = string
}

variable "athena_results_bucket_arn" {
  description = "ARN of the Athena results bucket."
  type        = string
}

variable "athena_results_prefix" {
  description = "Key prefix of the results inside their bucket (from WEWARD_ATHENA_OUTPUT), without slashes."
  type        = string
}

variable "glue_database_name" {
  description = "The one Glue database the roles may use."
  type        = string
}

variable "athena_workgroup_name" {
  description = "Name of the analysts' Athena workgroup."
  type        = string
}

variable "athena_workgroup_arn" {
  description = "ARN of the analysts' Athena workgroup."
  type        = string
}

variable "compute_logs_prefix" {
  description = "Key prefix (no slashes) of Dagster's step logs in the lake bucket, outside the lake prefix."
  type        = string
  default     = "_dagster/compute-logs"
}

variable "kms_key_arn" {
  description = "The project key."
  type        = string
}

variable "secret_arns" {
  description = "Secret ARNs by the environment variable they fill (modules/secrets)."
  type        = map(string)
}

variable "export_secret_variables" {
  description = "Secrets the export role reads itself (the EC2 variant has no ECS secret injection)."
  type        = list(string)
  default     = ["WEWARD_PG_URL", "WEWARD_PII_KEY", "DAGSTER_PG_PASSWORD"]
}

variable "redaction_secret_variables" {
  description = "Secrets the redaction role reads itself."
  type        = list(string)
  default     = ["WEWARD_PG_REDACT_URL", "DAGSTER_PG_PASSWORD"]
}

variable "erasure_secret_variables" {
  description = "Secrets the erasure role reads itself: its own DSN (DELETE on the user tables), the PII key (pseudonymized user columns), Dagster's storage."
  type        = list(string)
  default     = ["WEWARD_PG_ERASE_URL", "WEWARD_PII_KEY", "DAGSTER_PG_PASSWORD"]
}

variable "analyst_principal_arns" {
  description = "IAM principals (e.g. the analysts' SSO permission-set roles) allowed to assume the analyst role. Empty: no analyst role."
  type        = list(string)
  default     = []
}

variable "allow_ec2_instances" {
  description = "Let EC2 assume the export role (the EC2 start/stop variant of modules/schedule)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
