# deploy/<env>.env read the way Terraform reads it (no provider). The pipeline's own parser is
# compared with this one in weward_pipeline_tests/test_infra_terraform.py.

run "prod_names_come_from_deploy_prod_env" {
  command = plan

  variables {
    env_file = "../../../deploy/prod.env"
  }
  assert {
    condition     = output.lake_bucket == "weward-lake-prod" && output.lake_prefix == "lake" && output.aws_region == "eu-west-3"
    error_message = "WEWARD_LAKE_URL and AWS_REGION of deploy/prod.env"
  }
  assert {
    condition     = output.secret_names.WEWARD_PG_URL == "weward/pipeline/pg-export-url" && !contains(keys(output.env), "WEWARD_PG_URL")
    error_message = "the file names secrets; it never holds them"
  }
}
