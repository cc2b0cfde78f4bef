variable "name_prefix" {
  description = "Prefix of every resource name, e.g. weward-prod."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the PostgreSQL server and the run worker."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC, allowed to reach the interface endpoints on 443."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the interface endpoints (one per AZ the run worker uses)."
  type        = list(string)
}

variable "route_table_ids" {
  description = "Route tables of those subnets, for the S3 gateway endpoint."
  type        = list(string)
}

variable "interface_services" {
  description = "AWS services reached through interface endpoints."
  type        = list(string)
  default     = ["ecr.api", "ecr.dkr", "logs", "secretsmanager", "glue", "athena", "kms", "sts", "ecs", "ec2", "ssmmessages"]
}

variable "create_s3_gateway" {
  description = "Create the S3 gateway endpoint (false when the VPC has one)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
