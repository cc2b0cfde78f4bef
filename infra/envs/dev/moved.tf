# The body of this root moved into modules/pipeline_stack: state addresses follow it, so the first
# apply after the move replaces nothing.
moved {
  from = module.kms
  to   = module.pipeline.module.kms
}

moved {
  from = module.data_lake
  to   = module.pipeline.module.data_lake
}

moved {
  from = module.catalog
  to   = module.pipeline.module.catalog
}

moved {
  from = module.secrets
  to   = module.pipeline.module.secrets
}

moved {
  from = module.iam
  to   = module.pipeline.module.iam
}

moved {
  from = module.vpc_endpoints
  to   = module.pipeline.module.vpc_endpoints
}

moved {
  from = module.export_job
  to   = module.pipeline.module.export_job
}

moved {
  from = module.schedule
  to   = module.pipeline.module.schedule
}

moved {
  from = module.dagster_service
  to   = module.pipeline.module.dagster_service
}
