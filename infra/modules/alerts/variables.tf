variable "name_prefix" {
  description = "Prefix of every resource name, e.g. weward-prod."
  type        = string
}

variable "kms_key_arn" {
  description = "The project key: the topic is encrypted with it (its key policy lets CloudWatch and EventBridge use it)."
  type        = string
}

variable "cluster_arn" {
  description = "ECS cluster of the runs."
  type        = string
}

variable "task_definition_families" {
  description = "Families of the run worker task definitions (export, redact, erase) whose failures page someone."
  type        = list(string)
}

variable "dead_letter_queue_name" {
  description = "The scheduler's dead-letter queue (modules/schedule)."
  type        = string
}

variable "alert_emails" {
  description = "Addresses subscribed to the alert topic (each confirms the subscription from the email AWS sends)."
  type        = list(string)
  default     = []
}

variable "slack_channel" {
  description = "Optional AWS Chatbot delivery to Slack: the workspace must be authorized in the Chatbot console first."
  type = object({
    workspace_id = string
    channel_id   = string
  })
  default = null
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
