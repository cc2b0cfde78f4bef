variable "name_prefix" {
  description = "Prefix of every resource name, e.g. weward-prod."
  type        = string
}

variable "launch_type" {
  description = "ecs_task: a Fargate task per run (default, nothing runs in between). ec2_instance: a stopped instance started for each run."
  type        = string
  default     = "ecs_task"

  validation {
    condition     = contains(["ecs_task", "ec2_instance"], var.launch_type)
    error_message = "launch_type must be ecs_task or ec2_instance."
  }
}

variable "schedule_timezone" {
  description = "IANA time zone of the schedules; must equal the `timezone` of the table catalog, which defines the daily partitions."
  type        = string
}

variable "export_schedule_expression" {
  description = "When the daily export starts, in schedule_timezone."
  type        = string
  default     = "cron(0 2 * * ? *)"
}

variable "redact_schedule_expression" {
  description = "When the redaction starts, in schedule_timezone (after the export has had time to finish)."
  type        = string
  default     = "cron(0 6 * * ? *)"
}

variable "enabled" {
  description = "Schedules enabled; false pauses every run without destroying anything."
  type        = bool
  default     = true
}

variable "enabled_runs" {
  description = "Runs (export, redact) this scheduler starts; a run left out keeps a DISABLED schedule, e.g. the export when the Dagster daemon schedules it."
  type        = list(string)
  default     = ["export", "redact"]
}

variable "kms_key_arn" {
  description = "The project key (schedule payloads, EC2 volume)."
  type        = string
}

variable "cluster_arn" {
  description = "ECS cluster of the run worker."
  type        = string
}

variable "task_definition_arns" {
  description = "Task definition ARNs by run (export, redact)."
  type        = map(string)
}

variable "task_role_arns" {
  description = "Task role ARNs by run, passed to ECS."
  type        = map(string)
}

variable "execution_role_arn" {
  description = "Execution role of the run worker tasks, passed to ECS."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets the runs start in."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group of the run worker."
  type        = string
}

variable "ec2_instance_type" {
  description = "Instance type of the EC2 variant; its architecture must be ec2_architecture's."
  type        = string
  default     = "m7i.large"
}

variable "ec2_architecture" {
  description = "x86_64 or arm64: the image's, the same as the Fargate tasks' (one image tag serves both)."
  type        = string
  default     = "x86_64"
}

variable "ec2_volume_size_gib" {
  description = "Root volume of the EC2 variant."
  type        = number
  default     = 50
}

variable "ec2_instance_role_name" {
  description = "Role of the EC2 variant's instance profile (the export role, created with allow_ec2_instances)."
  type        = string
  default     = null
}

variable "ec2_image" {
  description = "Full image reference the EC2 variant runs."
  type        = string
  default     = ""
}

variable "ec2_command" {
  description = "Command the EC2 variant runs in the image."
  type        = list(string)
  default     = []
}

variable "ec2_environment" {
  description = "Plain environment of the EC2 variant's container."
  type        = map(string)
  default     = {}
}

variable "ec2_secret_arns" {
  description = "Secrets the EC2 variant reads at boot, by the environment variable they fill."
  type        = map(string)
  default     = {}
}

variable "ec2_log_group_name" {
  description = "Log group the EC2 variant's container logs to."
  type        = string
  default     = ""
}

variable "ec2_log_group_arn" {
  description = "ARN of that log group."
  type        = string
  default     = ""
}

variable "ec2_repository_arn" {
  description = "ECR repository the EC2 variant pulls from."
  type        = string
  default     = ""
}

variable "ec2_stop_schedule_expression" {
  description = "Safety stop of the EC2 variant, in schedule_timezone."
  type        = string
  default     = "cron(0 8 * * ? *)"
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
