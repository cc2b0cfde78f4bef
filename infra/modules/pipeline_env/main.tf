# Reads the pipeline's KEY=VALUE environment file (deploy/<env>.env) so that Terraform and the
# running pipeline take bucket, database and workgroup names from one place. No provider: this
# module can be evaluated offline with `terraform console` (the infra tests do).

locals {
  lines = [
    for line in split("\n", file(var.env_file)) : trimspace(line)
    if trimspace(line) != "" && !startswith(trimspace(line), "#")
  ]
  env = {
    for line in local.lines :
    trimspace(split("=", line)[0]) => trimspace(join("=", slice(split("=", line), 1, length(split("=", line)))))
  }

  lake_url_parts   = regex("^s3://([^/]+)/(.+?)/?$", local.env["WEWARD_LAKE_URL"])
  athena_out_parts = regex("^s3://([^/]+)/(.+?)/?$", local.env["WEWARD_ATHENA_OUTPUT"])
}
