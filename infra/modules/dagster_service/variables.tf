variable "name_prefix" {
  description = "Prefix of every resource name, e.g. weward-prod."
  type        = string
}

variable "cluster_arn" {
  description = "ECS cluster (modules/export_job)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the services and of the runs they launch."
  type        = list(string)
}

variable "security_group_id" {
  description = "The run worker's security group: the daemon carries it so that the runs it launches get it."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the services."
  type        = string
}

variable "postgres_security_group_id" {
  description = "Security group of the PostgreSQL server holding Dagster's storage."
  type        = string
}

variable "postgres_port" {
  description = "PostgreSQL port."
  type        = number
  default     = 5432
}

variable "vpc_endpoint_security_group_ids" {
  description = "Security groups of the interface VPC endpoints, by a static label (created, existing)."
  type        = map(string)
}

variable "s3_prefix_list_id" {
  description = "Prefix list of the S3 gateway endpoint."
  type        = string
}

variable "log_group_arn" {
  description = "ARN of the run worker log group (EcsRunLauncher reads a failed run's stream)."
  type        = string
}

variable "kms_key_arn" {
  description = "The project key (compute logs in the lake bucket)."
  type        = string
}

variable "compute_logs" {
  description = "Where Dagster stores step logs: { bucket_arn, prefix } (prefix without slashes)."
  type = object({
    bucket_arn = string
    prefix     = string
  })
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64: the image's, the same as the run worker's."
  type        = string
}

variable "image" {
  description = "Full reference of the run worker image; it also contains dagster-webserver and dagster-daemon."
  type        = string
}

variable "environment" {
  description = "Plain environment (modules/export_job plain_environment)."
  type        = map(string)
}

variable "storage_password_secret_arn" {
  description = "Secret holding the password of Dagster's PostgreSQL storage."
  type        = string
}

variable "execution_role_arn" {
  description = "Execution role (image pull, logs, secret injection): the run worker's."
  type        = string
}

variable "log_group_name" {
  description = "Log group of the services (the run worker's)."
  type        = string
}

variable "run_worker_task_definition" {
  description = "Task definition ARN each launched run uses (the export run worker)."
  type        = string
}

variable "redaction_task_definition" {
  description = "Task definition ARN of the redaction runs the redaction_automation sensor requests (redaction role and DSN)."
  type        = string
}

variable "erasure_task_definition" {
  description = "Task definition ARN of the gdpr_erasure runs (erasure role and DSN)."
  type        = string
}

variable "run_worker_role_arns" {
  description = "Roles of that task definition (execution and task roles), passed to ECS at launch."
  type        = list(string)
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
