"""weward_pipeline: daily PostgreSQL exports to Parquet on S3, registered in AWS Glue, run by Dagster."""
