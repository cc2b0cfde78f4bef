variable "env_file" {
  description = "Path of the pipeline's KEY=VALUE environment file, e.g. deploy/prod.env."
  type        = string
}
