variable "name_prefix" {
  description = "Prefix of every resource name, e.g. weward-prod."
  type        = string
}

variable "rotation_period_in_days" {
  description = "Automatic key rotation period (90 to 2560 days)."
  type        = number
  default     = 365
}

variable "deletion_window_in_days" {
  description = "Waiting period before a scheduled key deletion takes effect (7 to 30 days)."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
