variable "glue_database_name" {
  description = "Glue database of the lake: WEWARD_GLUE_DATABASE."
  type        = string
}

variable "lake_url" {
  description = "WEWARD_LAKE_URL, recorded as the database location."
  type        = string
}

variable "athena_workgroup_name" {
  description = "Athena workgroup: WEWARD_ATHENA_WORKGROUP."
  type        = string
}

variable "athena_output_url" {
  description = "Where the workgroup writes query results: WEWARD_ATHENA_OUTPUT (with a trailing slash)."
  type        = string
}

variable "expected_bucket_owner" {
  description = "Account id that must own the results bucket."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed key for the catalog and the query results."
  type        = string
}

variable "bytes_scanned_cutoff_per_query" {
  description = "Athena cancels a query that scans more than this many bytes (minimum 10 MB). 1 TiB costs about 5 USD."
  type        = number
  default     = 107374182400 # 100 GiB

  validation {
    condition     = var.bytes_scanned_cutoff_per_query >= 10485760
    error_message = "Athena's minimum per-query cutoff is 10 MB (10485760 bytes)."
  }
}

variable "manage_catalog_encryption" {
  description = "Manage the account-wide Glue Data Catalog encryption settings from this environment (it re-keys every catalog of the account and region: opt in)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
