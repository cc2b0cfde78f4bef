# The three roles that touch the lake. Every statement names its resources: the lake bucket
# under its prefix, the one Glue database and its tables, the one key, the one workgroup,
# the secrets each role needs. Glue table ARNs end in "/*" because the tables are created by
# the pipeline from the table catalog; the database part still pins them to the lake.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition

  lake_objects       = "${var.lake_bucket_arn}/${var.lake_prefix}/*"
  results_objects    = "${var.athena_results_bucket_arn}/${var.athena_results_prefix}/*"
  glue_catalog       = "arn:${local.partition}:glue:${local.region}:${local.account_id}:catalog"
  glue_database      = "arn:${local.partition}:glue:${local.region}:${local.account_id}:database/${var.glue_database_name}"
  glue_tables        = "arn:${local.partition}:glue:${local.region}:${local.account_id}:table/${var.glue_database_name}/*"
  athena_datacatalog = "arn:${local.partition}:athena:${local.region}:${local.account_id}:datacatalog/AwsDataCatalog"

  glue_read_actions = [
    "glue:BatchGetPartition",
    "glue:GetDatabase",
    "glue:GetPartition",
    "glue:GetPartitions",
    "glue:GetTable",
    "glue:GetTables",
  ]
  glue_register_actions = [
    "glue:BatchCreatePartition",
    "glue:BatchDeletePartition",
    "glue:BatchUpdatePartition",
    "glue:CreatePartition",
    "glue:CreateTable",
    "glue:DeletePartition",
    "glue:UpdatePartition",
    "glue:UpdateTable",
  ]

  run_worker_principals = concat(["ecs-tasks.amazonaws.com"], var.allow_ec2_instances ? ["ec2.amazonaws.com"] : [])

  # Every run writes its step logs through Dagster's S3ComputeLogManager (deploy/dagster.yaml):
  # the same three statements in each run worker role; the key's use is in each role's own.
  compute_log_statements = [
    {
      Sid       = "ListTheComputeLogs"
      Effect    = "Allow"
      Action    = "s3:ListBucket"
      Resource  = var.lake_bucket_arn
      Condition = { StringLike = { "s3:prefix" = ["${var.compute_logs_prefix}/*"] } }
    },
    {
      Sid      = "WriteTheComputeLogs"
      Effect   = "Allow"
      Action   = ["s3:GetObject", "s3:PutObject"]
      Resource = "${var.lake_bucket_arn}/${var.compute_logs_prefix}/*"
    },
  ]
}

locals {
  run_worker_trust = {
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = local.run_worker_principals }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  }
}

# ---------------------------------------------------------------------------------------------
# Export: reads PostgreSQL (export DSN), writes Parquet under the lake prefix, registers tables
# and partitions in the one database, pseudonymizes with the PII key.
# ---------------------------------------------------------------------------------------------

resource "aws_iam_role" "export" {
  name                 = "${var.name_prefix}-export"
  description          = "Daily export: PostgreSQL to Parquet under ${var.lake_prefix}/, Glue registration in ${var.glue_database_name}."
  assume_role_policy   = jsonencode(local.run_worker_trust)
  max_session_duration = 43200
  tags                 = var.tags
}

locals {
  export_policy = {
    Version = "2012-10-17"
    Statement = concat(local.compute_log_statements, [
      {
        Sid       = "ListTheLakePrefix"
        Effect    = "Allow"
        Action    = "s3:ListBucket"
        Resource  = var.lake_bucket_arn
        Condition = { StringLike = { "s3:prefix" = [var.lake_prefix, "${var.lake_prefix}/*"] } }
      },
      # No ListBucket without s3:prefix (HeadBucket, or a listing of the whole bucket, _requests/
      # included): export.check_lake_reachable probes with a one-key listing under the lake prefix.
      {
        Sid      = "LocateTheLakeBucket"
        Effect   = "Allow"
        Action   = "s3:GetBucketLocation"
        Resource = var.lake_bucket_arn
      },
      {
        Sid    = "ReadWriteTheLakePrefix"
        Effect = "Allow"
        Action = [
          "s3:AbortMultipartUpload",
          "s3:DeleteObject",
          "s3:GetObject",
          "s3:ListMultipartUploadParts",
          "s3:PutObject",
        ]
        Resource = local.lake_objects
      },
      {
        Sid      = "RegisterTablesAndPartitionsInTheLakeDatabase"
        Effect   = "Allow"
        Action   = concat(local.glue_read_actions, local.glue_register_actions)
        Resource = [local.glue_catalog, local.glue_database, local.glue_tables]
      },
      {
        Sid      = "UseTheProjectKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"]
        Resource = var.kms_key_arn
      },
      {
        Sid      = "ReadTheExportSecrets"
        Effect   = "Allow"
        Action   = ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
        Resource = [for name in var.export_secret_variables : var.secret_arns[name]]
      },
    ])
  }
}

resource "aws_iam_role_policy" "export" {
  name   = "export"
  role   = aws_iam_role.export.id
  policy = jsonencode(local.export_policy)
}

# ---------------------------------------------------------------------------------------------
# Redaction: reads back what was exported (to verify it) and deletes from PostgreSQL through the
# redaction DSN. Read-only on the lake but for one write-only prefix: each batch records the keys
# it deletes under _audit/redaction/ before it commits (weward_pipeline/redaction_audit.py), the
# proof a later re-export needs to carry those rows over. No delete, no overwrite of data, keys or
# manifests: a redaction bug must not be able to damage the export.
# ---------------------------------------------------------------------------------------------

resource "aws_iam_role" "redaction" {
  name                 = "${var.name_prefix}-redaction"
  description          = "Redaction: verifies exports under ${var.lake_prefix}/ (read-only) before deleting rows from PostgreSQL."
  assume_role_policy   = jsonencode(local.run_worker_trust)
  max_session_duration = 43200
  tags                 = var.tags
}

locals {
  redaction_policy = {
    Version = "2012-10-17"
    Statement = concat(local.compute_log_statements, [
      {
        Sid       = "ListTheLakePrefix"
        Effect    = "Allow"
        Action    = "s3:ListBucket"
        Resource  = var.lake_bucket_arn
        Condition = { StringLike = { "s3:prefix" = [var.lake_prefix, "${var.lake_prefix}/*"] } }
      },
      {
        Sid      = "LocateTheLakeBucket"
        Effect   = "Allow"
        Action   = "s3:GetBucketLocation"
        Resource = var.lake_bucket_arn
      },
      {
        Sid      = "ReadTheLakePrefix"
        Effect   = "Allow"
        Action   = "s3:GetObject"
        Resource = local.lake_objects
      },
      {
        Sid      = "WriteTheRedactionAudit"
        Effect   = "Allow"
        Action   = "s3:PutObject"
        Resource = "${var.lake_bucket_arn}/${var.lake_prefix}/_audit/redaction/*"
      },
      {
        Sid      = "ReadTheLakeDatabase"
        Effect   = "Allow"
        Action   = local.glue_read_actions
        Resource = [local.glue_catalog, local.glue_database, local.glue_tables]
      },
      {
        Sid      = "DecryptWithTheProjectKeyAndEncryptComputeLogs"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"]
        Resource = var.kms_key_arn
      },
      {
        Sid      = "ReadTheRedactionSecrets"
        Effect   = "Allow"
        Action   = ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
        Resource = [for name in var.redaction_secret_variables : var.secret_arns[name]]
      },
    ])
  }
}

resource "aws_iam_role_policy" "redaction" {
  name   = "redaction"
  role   = aws_iam_role.redaction.id
  policy = jsonencode(local.redaction_policy)
}

# ---------------------------------------------------------------------------------------------
# Erasure (gdpr_erasure / weward-pipeline erase): rewrites the days that hold the requested users,
# deletes every version of what it superseded, writes the audit record under the lake prefix
# (_audit/erasure/), reads the request from the bucket's _requests/erasure/, and deletes the users
# from PostgreSQL through its own DSN (a role that may DELETE; never the SELECT-only export DSN).
# ---------------------------------------------------------------------------------------------

resource "aws_iam_role" "erasure" {
  name                 = "${var.name_prefix}-erasure"
  description          = "Erasure: rewrites and purges lake days under ${var.lake_prefix}/, reads ${local.erasure_requests_prefix}."
  assume_role_policy   = jsonencode(local.run_worker_trust)
  max_session_duration = 43200
  tags                 = var.tags
}

locals {
  erasure_requests_prefix = "_requests/erasure/"
  erasure_policy = {
    Version = "2012-10-17"
    Statement = concat(local.compute_log_statements, [
      {
        Sid       = "ListTheLakePrefixAndItsVersions"
        Effect    = "Allow"
        Action    = ["s3:ListBucket", "s3:ListBucketVersions"]
        Resource  = var.lake_bucket_arn
        Condition = { StringLike = { "s3:prefix" = [var.lake_prefix, "${var.lake_prefix}/*"] } }
      },
      {
        Sid      = "LocateTheLakeBucket"
        Effect   = "Allow"
        Action   = "s3:GetBucketLocation"
        Resource = var.lake_bucket_arn
      },
      {
        Sid    = "RewriteAndPurgeTheLakePrefix"
        Effect = "Allow"
        Action = [
          "s3:AbortMultipartUpload",
          "s3:DeleteObject",
          "s3:DeleteObjectVersion",
          "s3:GetObject",
          "s3:GetObjectVersion",
          "s3:ListMultipartUploadParts",
          "s3:PutObject",
        ]
        Resource = local.lake_objects
      },
      {
        Sid      = "ReadTheErasureRequests"
        Effect   = "Allow"
        Action   = "s3:GetObject"
        Resource = "${var.lake_bucket_arn}/${local.erasure_requests_prefix}*"
      },
      {
        Sid      = "RepointTheRewrittenDays"
        Effect   = "Allow"
        Action   = concat(local.glue_read_actions, local.glue_register_actions)
        Resource = [local.glue_catalog, local.glue_database, local.glue_tables]
      },
      {
        Sid      = "UseTheProjectKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"]
        Resource = var.kms_key_arn
      },
      {
        Sid      = "ReadTheErasureSecrets"
        Effect   = "Allow"
        Action   = ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
        Resource = [for name in var.erasure_secret_variables : var.secret_arns[name]]
      },
    ])
  }
}

resource "aws_iam_role_policy" "erasure" {
  name   = "erasure"
  role   = aws_iam_role.erasure.id
  policy = jsonencode(local.erasure_policy)
}

# ---------------------------------------------------------------------------------------------
# Analysts: Athena through the one workgroup, read-only on the lake, their own query results.
# ---------------------------------------------------------------------------------------------

locals {
  analyst_trust = {
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { AWS = var.analyst_principal_arns }
      Action    = ["sts:AssumeRole", "sts:TagSession"]
    }]
  }
}

resource "aws_iam_role" "analyst" {
  count = length(var.analyst_principal_arns) > 0 ? 1 : 0

  name                 = "${var.name_prefix}-analyst"
  description          = "Analysts: Athena on workgroup ${var.athena_workgroup_name}, read-only on the lake."
  assume_role_policy   = jsonencode(local.analyst_trust)
  max_session_duration = 14400
  tags                 = var.tags
}

locals {
  analyst_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid    = "QueryThroughTheWorkgroup"
        Effect = "Allow"
        Action = [
          "athena:BatchGetQueryExecution",
          "athena:GetQueryExecution",
          "athena:GetQueryResults",
          "athena:GetQueryResultsStream",
          "athena:GetWorkGroup",
          "athena:ListQueryExecutions",
          "athena:StartQueryExecution",
          "athena:StopQueryExecution",
        ]
        Resource = var.athena_workgroup_arn
      },
      {
        Sid      = "SeeTheGlueDataCatalog"
        Effect   = "Allow"
        Action   = ["athena:GetDataCatalog", "athena:GetDatabase", "athena:GetTableMetadata", "athena:ListDatabases", "athena:ListTableMetadata"]
        Resource = local.athena_datacatalog
      },
      {
        Sid      = "ReadTheLakeDatabase"
        Effect   = "Allow"
        Action   = local.glue_read_actions
        Resource = [local.glue_catalog, local.glue_database, local.glue_tables]
      },
      {
        Sid       = "ListTheLakePrefix"
        Effect    = "Allow"
        Action    = "s3:ListBucket"
        Resource  = var.lake_bucket_arn
        Condition = { StringLike = { "s3:prefix" = [var.lake_prefix, "${var.lake_prefix}/*"] } }
      },
      {
        Sid      = "ReadTheLakePrefix"
        Effect   = "Allow"
        Action   = "s3:GetObject"
        Resource = local.lake_objects
      },
      {
        Sid      = "LocateTheBuckets"
        Effect   = "Allow"
        Action   = "s3:GetBucketLocation"
        Resource = [var.lake_bucket_arn, var.athena_results_bucket_arn]
      },
      # Athena writes query results with the caller's credentials.
      {
        Sid       = "ListTheResultsPrefix"
        Effect    = "Allow"
        Action    = "s3:ListBucket"
        Resource  = var.athena_results_bucket_arn
        Condition = { StringLike = { "s3:prefix" = [var.athena_results_prefix, "${var.athena_results_prefix}/*"] } }
      },
      {
        Sid    = "WriteAndReadQueryResults"
        Effect = "Allow"
        Action = [
          "s3:AbortMultipartUpload",
          "s3:GetObject",
          "s3:ListMultipartUploadParts",
          "s3:PutObject",
        ]
        Resource = local.results_objects
      },
      {
        Sid      = "UseTheProjectKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"]
        Resource = var.kms_key_arn
      },
    ]
  }
}

resource "aws_iam_role_policy" "analyst" {
  count = length(aws_iam_role.analyst)

  name   = "analyst"
  role   = aws_iam_role.analyst[0].id
  policy = jsonencode(local.analyst_policy)
}
