variable "name_prefix" {
  description = "Prefix of every resource name, e.g. weward-prod."
  type        = string
}

variable "secret_names" {
  description = "Secrets Manager names, by the environment variable they fill (modules/pipeline_env secret_names)."
  type        = map(string)
}

variable "kms_key_arn" {
  description = "Customer-managed key encrypting the secrets."
  type        = string
}

variable "recovery_window_in_days" {
  description = "Days a deleted secret can still be restored."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
