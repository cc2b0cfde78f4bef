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
}

data "aws_iam_policy_document" "run_worker_trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = local.run_worker_principals
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# ---------------------------------------------------------------------------------------------
# Export: reads PostgreSQL (export DSN), writes Parquet under the lake prefix, registers tables
# and partitions in the one database, pseudonymizes with the PII key.
# ---------------------------------------------------------------------------------------------

resource "aws_iam_role" "export" {
  name                 = "${var.name_prefix}-export"
  description          = "Daily export: PostgreSQL to Parquet under ${var.lake_prefix}/, Glue registration in ${var.glue_database_name}."
  assume_role_policy   = data.aws_iam_policy_document.run_worker_trust.json
  max_session_duration = 43200
  tags                 = var.tags
}

data "aws_iam_policy_document" "export" {
  statement {
    sid       = "ListTheLakePrefix"
    actions   = ["s3:ListBucket"]
    resources = [var.lake_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.lake_prefix, "${var.lake_prefix}/*"]
    }
  }

  statement {
    sid       = "LocateTheLakeBucket"
    actions   = ["s3:GetBucketLocation"]
    resources = [var.lake_bucket_arn]
  }

  statement {
    sid = "ReadWriteTheLakePrefix"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:DeleteObject",
      "s3:GetObject",
      "s3:ListMultipartUploadParts",
      "s3:PutObject",
    ]
    resources = [local.lake_objects]
  }

  statement {
    sid       = "RegisterTablesAndPartitionsInTheLakeDatabase"
    actions   = concat(local.glue_read_actions, local.glue_register_actions)
    resources = [local.glue_catalog, local.glue_database, local.glue_tables]
  }

  statement {
    sid       = "UseTheProjectKey"
    actions   = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }

  statement {
    sid       = "ReadTheExportSecrets"
    actions   = ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
    resources = [for name in var.export_secret_variables : var.secret_arns[name]]
  }
}

resource "aws_iam_role_policy" "export" {
  name   = "export"
  role   = aws_iam_role.export.id
  policy = data.aws_iam_policy_document.export.json
}

# ---------------------------------------------------------------------------------------------
# Redaction: reads back what was exported (to verify it) and deletes from PostgreSQL through the
# redaction DSN. Read-only on the lake: a redaction bug must not be able to damage the export.
# ---------------------------------------------------------------------------------------------

resource "aws_iam_role" "redaction" {
  name                 = "${var.name_prefix}-redaction"
  description          = "Redaction: verifies exports under ${var.lake_prefix}/ (read-only) before deleting rows from PostgreSQL."
  assume_role_policy   = data.aws_iam_policy_document.run_worker_trust.json
  max_session_duration = 43200
  tags                 = var.tags
}

data "aws_iam_policy_document" "redaction" {
  statement {
    sid       = "ListTheLakePrefix"
    actions   = ["s3:ListBucket"]
    resources = [var.lake_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.lake_prefix, "${var.lake_prefix}/*"]
    }
  }

  statement {
    sid       = "LocateTheLakeBucket"
    actions   = ["s3:GetBucketLocation"]
    resources = [var.lake_bucket_arn]
  }

  statement {
    sid       = "ReadTheLakePrefix"
    actions   = ["s3:GetObject"]
    resources = [local.lake_objects]
  }

  statement {
    sid       = "ReadTheLakeDatabase"
    actions   = local.glue_read_actions
    resources = [local.glue_catalog, local.glue_database, local.glue_tables]
  }

  statement {
    sid       = "DecryptWithTheProjectKey"
    actions   = ["kms:Decrypt", "kms:DescribeKey"]
    resources = [var.kms_key_arn]
  }

  statement {
    sid       = "ReadTheRedactionSecrets"
    actions   = ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
    resources = [for name in var.redaction_secret_variables : var.secret_arns[name]]
  }
}

resource "aws_iam_role_policy" "redaction" {
  name   = "redaction"
  role   = aws_iam_role.redaction.id
  policy = data.aws_iam_policy_document.redaction.json
}

# ---------------------------------------------------------------------------------------------
# Analysts: Athena through the one workgroup, read-only on the lake, their own query results.
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "analyst_trust" {
  count = length(var.analyst_principal_arns) > 0 ? 1 : 0

  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole", "sts:TagSession"]
    principals {
      type        = "AWS"
      identifiers = var.analyst_principal_arns
    }
  }
}

resource "aws_iam_role" "analyst" {
  count = length(var.analyst_principal_arns) > 0 ? 1 : 0

  name                 = "${var.name_prefix}-analyst"
  description          = "Analysts: Athena on workgroup ${var.athena_workgroup_name}, read-only on the lake."
  assume_role_policy   = data.aws_iam_policy_document.analyst_trust[0].json
  max_session_duration = 14400
  tags                 = var.tags
}

data "aws_iam_policy_document" "analyst" {
  statement {
    sid = "QueryThroughTheWorkgroup"
    actions = [
      "athena:BatchGetQueryExecution",
      "athena:GetQueryExecution",
      "athena:GetQueryResults",
      "athena:GetQueryResultsStream",
      "athena:GetWorkGroup",
      "athena:ListQueryExecutions",
      "athena:StartQueryExecution",
      "athena:StopQueryExecution",
    ]
    resources = [var.athena_workgroup_arn]
  }

  statement {
    sid       = "SeeTheGlueDataCatalog"
    actions   = ["athena:GetDataCatalog", "athena:GetDatabase", "athena:GetTableMetadata", "athena:ListDatabases", "athena:ListTableMetadata"]
    resources = [local.athena_datacatalog]
  }

  statement {
    sid       = "ReadTheLakeDatabase"
    actions   = local.glue_read_actions
    resources = [local.glue_catalog, local.glue_database, local.glue_tables]
  }

  statement {
    sid       = "ListTheLakePrefix"
    actions   = ["s3:ListBucket"]
    resources = [var.lake_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.lake_prefix, "${var.lake_prefix}/*"]
    }
  }

  statement {
    sid       = "ReadTheLakePrefix"
    actions   = ["s3:GetObject"]
    resources = [local.lake_objects]
  }

  statement {
    sid       = "LocateTheBuckets"
    actions   = ["s3:GetBucketLocation"]
    resources = [var.lake_bucket_arn, var.athena_results_bucket_arn]
  }

  # Athena writes query results with the caller's credentials.
  statement {
    sid       = "ListTheResultsPrefix"
    actions   = ["s3:ListBucket"]
    resources = [var.athena_results_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.athena_results_prefix, "${var.athena_results_prefix}/*"]
    }
  }

  statement {
    sid = "WriteAndReadQueryResults"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:GetObject",
      "s3:ListMultipartUploadParts",
      "s3:PutObject",
    ]
    resources = [local.results_objects]
  }

  statement {
    sid       = "UseTheProjectKey"
    actions   = ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "analyst" {
  count = length(aws_iam_role.analyst)

  name   = "analyst"
  role   = aws_iam_role.analyst[0].id
  policy = data.aws_iam_policy_document.analyst.json
}
