# The lake, the Athena results bucket and the bucket receiving both buckets' access logs.
# Every bucket: public access blocked, owner-enforced objects, versioning, default encryption,
# TLS-only policy, lifecycle rules. Resources are written out per bucket, not generated, so that
# reviewers (and checkov's graph checks) see each bucket's settings next to the bucket.
#
# Versioning keeps overwritten and deleted objects as noncurrent versions; the noncurrent
# expiration below is therefore the upper bound on how long personal data survives an erasure
# (a rewrite of the partition that held it). Keep it in the record of processing.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  lake_arn   = "arn:${local.partition}:s3:::${var.lake_bucket_name}"
  result_arn = "arn:${local.partition}:s3:::${var.athena_results_bucket_name}"
  logs_arn   = "arn:${local.partition}:s3:::${var.access_log_bucket_name}"
}

# ---------------------------------------------------------------------------------------------
# Lake
# ---------------------------------------------------------------------------------------------

resource "aws_s3_bucket" "lake" {
  #checkov:skip=CKV_AWS_144:No cross-region replication: the data must stay in its EU region, and a replica would be one more copy to erase.
  #checkov:skip=CKV2_AWS_62:No event notifications: the pipeline registers partitions itself; nothing consumes object events.
  bucket        = var.lake_bucket_name
  force_destroy = false
  tags          = var.tags

  lifecycle {
    precondition {
      condition     = contains(var.allowed_regions, data.aws_region.current.name)
      error_message = "The lake holds personal data of EU users and must be created in one of var.allowed_regions."
    }
  }
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket                  = aws_s3_bucket.lake.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "lake" {
  bucket = aws_s3_bucket.lake.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 2
    }
  }

  rule {
    id     = "remove-expired-delete-markers"
    status = "Enabled"
    filter {}
    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.lake]
}

resource "aws_s3_bucket_logging" "lake" {
  bucket        = aws_s3_bucket.lake.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "${var.lake_bucket_name}/"
}

# Deny statements only: who may do what is each role's own policy (modules/iam).
#
# Puts that ask for no encryption get the bucket's default encryption: this key, bucket key on.
# That is how the pipeline writes (pyarrow's S3 client and boto3 send no encryption header, nor
# does any UploadPart), so only a put that explicitly asks for something else is refused: another
# algorithm, another key, or SSE-KMS without naming a key (S3 then uses the AWS managed aws/s3 key,
# not the bucket's). Each condition on a header requires that header to be present (Null false):
# never `...IfExists` in a Deny, which matches when the header is absent and so refused every put
# without encryption headers.
locals {
  put_encryption_denies = {
    for bucket, arn in { lake = local.lake_arn, athena_results = local.result_arn } : bucket => [
      {
        Sid       = "DenyPutsAskingForAnotherEncryption"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:PutObject"
        Resource  = "${arn}/*"
        Condition = {
          StringNotEquals = { "s3:x-amz-server-side-encryption" = "aws:kms" }
          Null            = { "s3:x-amz-server-side-encryption" = "false" }
        }
      },
      {
        Sid       = "DenyPutsAskingForAnotherKmsKey"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:PutObject"
        Resource  = "${arn}/*"
        Condition = {
          StringNotEquals = { "s3:x-amz-server-side-encryption-aws-kms-key-id" = var.kms_key_arn }
          Null            = { "s3:x-amz-server-side-encryption-aws-kms-key-id" = "false" }
        }
      },
      {
        Sid       = "DenyKmsPutsNamingNoKey"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:PutObject"
        Resource  = "${arn}/*"
        Condition = {
          Null = {
            "s3:x-amz-server-side-encryption"                = "false"
            "s3:x-amz-server-side-encryption-aws-kms-key-id" = "true"
          }
        }
      },
    ]
  }

  lake_policy = {
    Version = "2012-10-17"
    Statement = concat([
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [local.lake_arn, "${local.lake_arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ], local.put_encryption_denies.lake)
  }
}

resource "aws_s3_bucket_policy" "lake" {
  bucket     = aws_s3_bucket.lake.id
  policy     = jsonencode(local.lake_policy)
  depends_on = [aws_s3_bucket_public_access_block.lake]
}

# ---------------------------------------------------------------------------------------------
# Athena query results: written by Athena on behalf of analysts, so they hold personal data too.
# ---------------------------------------------------------------------------------------------

resource "aws_s3_bucket" "athena_results" {
  #checkov:skip=CKV_AWS_144:No cross-region replication: query results are disposable and must stay in the EU region.
  #checkov:skip=CKV2_AWS_62:No event notifications: nothing consumes query-result object events.
  bucket        = var.athena_results_bucket_name
  force_destroy = false
  tags          = var.tags

  lifecycle {
    precondition {
      condition     = contains(var.allowed_regions, data.aws_region.current.name)
      error_message = "Athena results hold personal data of EU users and must stay in one of var.allowed_regions."
    }
  }
}

resource "aws_s3_bucket_public_access_block" "athena_results" {
  bucket                  = aws_s3_bucket.athena_results.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "athena_results" {
  bucket = aws_s3_bucket.athena_results.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "athena_results" {
  bucket = aws_s3_bucket.athena_results.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "athena_results" {
  bucket = aws_s3_bucket.athena_results.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "athena_results" {
  bucket = aws_s3_bucket.athena_results.id

  rule {
    id     = "expire-query-results"
    status = "Enabled"
    filter {}
    expiration {
      days = var.athena_results_expiration_days
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.athena_results]
}

resource "aws_s3_bucket_logging" "athena_results" {
  bucket        = aws_s3_bucket.athena_results.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "${var.athena_results_bucket_name}/"
}

# The same denials as the lake (Athena writes results with the workgroup's SSE-KMS key, named).
locals {
  athena_results_policy = {
    Version = "2012-10-17"
    Statement = concat([
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [local.result_arn, "${local.result_arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ], local.put_encryption_denies.athena_results)
  }
}

resource "aws_s3_bucket_policy" "athena_results" {
  bucket     = aws_s3_bucket.athena_results.id
  policy     = jsonencode(local.athena_results_policy)
  depends_on = [aws_s3_bucket_public_access_block.athena_results]
}

# ---------------------------------------------------------------------------------------------
# Server access logs of the two buckets above. S3 log delivery cannot write to an SSE-KMS bucket,
# so this one bucket uses SSE-S3; it holds request metadata (principal, key, IP), not lake data.
# ---------------------------------------------------------------------------------------------

resource "aws_s3_bucket" "access_logs" {
  #checkov:skip=CKV_AWS_144:No cross-region replication: logs stay in the EU region with the data they describe.
  #checkov:skip=CKV_AWS_145:S3 server access log delivery does not support SSE-KMS destination buckets; SSE-S3 is used.
  #checkov:skip=CKV2_AWS_62:No event notifications: logs are read by Athena on demand.
  bucket        = var.access_log_bucket_name
  force_destroy = false
  tags          = var.tags

  lifecycle {
    precondition {
      condition     = contains(var.allowed_regions, data.aws_region.current.name)
      error_message = "Access logs must stay in one of var.allowed_regions."
    }
  }
}

resource "aws_s3_bucket_public_access_block" "access_logs" {
  bucket                  = aws_s3_bucket.access_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = var.access_log_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.access_logs]
}

locals {
  access_logs_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "S3LogDeliveryFromTheProjectBuckets"
        Effect    = "Allow"
        Principal = { Service = "logging.s3.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${local.logs_arn}/*"
        Condition = {
          StringEquals = { "aws:SourceAccount" = local.account_id }
          ArnLike      = { "aws:SourceArn" = [local.lake_arn, local.result_arn] }
        }
      },
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [local.logs_arn, "${local.logs_arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  }
}

resource "aws_s3_bucket_policy" "access_logs" {
  bucket     = aws_s3_bucket.access_logs.id
  policy     = jsonencode(local.access_logs_policy)
  depends_on = [aws_s3_bucket_public_access_block.access_logs]
}
