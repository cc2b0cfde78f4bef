variable "lake_bucket_name" {
  description = "Lake bucket: the bucket of WEWARD_LAKE_URL."
  type        = string
}

variable "athena_results_bucket_name" {
  description = "Athena results bucket: the bucket of WEWARD_ATHENA_OUTPUT."
  type        = string
}

variable "access_log_bucket_name" {
  description = "Bucket receiving the server access logs of the two buckets above."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed key for default encryption (modules/kms)."
  type        = string
}

variable "noncurrent_version_expiration_days" {
  description = "Days a replaced or deleted object version is kept. Bounds how long erased personal data survives in the lake."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && var.noncurrent_version_expiration_days <= 30
    error_message = "Keep noncurrent versions between 1 and 30 days: erasure requests must be honoured within a month."
  }
}

variable "athena_results_expiration_days" {
  description = "Days Athena query results are kept."
  type        = number
  default     = 30
}

variable "access_log_retention_days" {
  description = "Days S3 access logs are kept."
  type        = number
  default     = 365
}

variable "allowed_regions" {
  description = "Regions the buckets may be created in (EU data residency)."
  type        = list(string)
  default     = ["eu-west-3", "eu-west-1", "eu-central-1", "eu-north-1", "eu-south-1", "eu-south-2", "eu-central-2"]
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
