# The Glue database the pipeline registers its tables and partitions in, the catalog's
# encryption, and the Athena workgroup analysts query through. Athena is billed per byte
# scanned: the per-query cap is the cost guard, and enforcement stops clients overriding it.

resource "aws_glue_catalog_database" "lake" {
  name         = var.glue_database_name
  description  = "WeWard lake: one table per exported PostgreSQL table, one partition per day. Tables are registered by the pipeline."
  location_uri = var.lake_url
  tags         = var.tags
}

# Catalog encryption is a per-account, per-region setting: one environment per account.
resource "aws_glue_data_catalog_encryption_settings" "this" {
  count = var.manage_catalog_encryption ? 1 : 0

  data_catalog_encryption_settings {
    encryption_at_rest {
      catalog_encryption_mode = "SSE-KMS"
      sse_aws_kms_key_id      = var.kms_key_arn
    }
    connection_password_encryption {
      return_connection_password_encrypted = true
      aws_kms_key_id                       = var.kms_key_arn
    }
  }
}

resource "aws_athena_workgroup" "analysts" {
  name          = var.athena_workgroup_name
  description   = "Analysts' queries on the WeWard lake; configuration enforced, results encrypted, scan capped."
  state         = "ENABLED"
  force_destroy = false
  tags          = var.tags

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.bytes_scanned_cutoff_per_query
    requester_pays_enabled             = false

    engine_version {
      selected_engine_version = "Athena engine version 3"
    }

    result_configuration {
      output_location       = var.athena_output_url
      expected_bucket_owner = var.expected_bucket_owner
      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = var.kms_key_arn
      }
      acl_configuration {
        s3_acl_option = "BUCKET_OWNER_FULL_CONTROL"
      }
    }
  }
}
