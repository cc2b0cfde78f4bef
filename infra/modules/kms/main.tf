# One customer-managed key for everything the pipeline stores: lake objects, the Glue catalog,
# Athena results, CloudWatch logs, Secrets Manager secrets, ECR images. One key keeps the key
# policy reviewable; per-service access is still least privilege because every use is also
# bounded by the caller's IAM policy and, for AWS services, by kms:ViaService.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition

  # The account root gets every KMS action, listed: a key policy that lost PutKeyPolicy for the
  # account would make the key unmanageable. IAM policies then delegate from the account.
  key_admin_actions = [
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListAliases",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListKeyRotations",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:RetireGrant",
    "kms:RevokeGrant",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
  ]
}

# In a key policy "*" as resource means "this key": the key's own ARN cannot be named before
# the key exists.
locals {
  key_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountRootManagesTheKey"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = local.key_admin_actions
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsEncryptsTheProjectLogGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action = [
          "kms:Decrypt",
          "kms:DescribeKey",
          "kms:Encrypt",
          "kms:GenerateDataKey",
          "kms:ReEncryptFrom",
          "kms:ReEncryptTo",
        ]
        Resource = "*"
        Condition = {
          ArnLike = { "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/${var.name_prefix}/*" }
        }
      },
      # The alert topic (modules/alerts) is encrypted with this key: the services that publish to
      # it, EventBridge (failed runs) and CloudWatch (the dead-letter alarm), encrypt with it.
      {
        Sid       = "AlarmsAndRulesPublishToTheEncryptedAlertTopic"
        Effect    = "Allow"
        Principal = { Service = ["cloudwatch.amazonaws.com", "events.amazonaws.com"] }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource  = "*"
        Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
      },
    ]
  }
}

resource "aws_kms_key" "this" {
  description             = "${var.name_prefix}: lake, Glue catalog, Athena results, logs, secrets"
  enable_key_rotation     = true
  rotation_period_in_days = var.rotation_period_in_days
  deletion_window_in_days = var.deletion_window_in_days
  policy                  = jsonencode(local.key_policy)
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name_prefix}"
  target_key_id = aws_kms_key.this.key_id
}
