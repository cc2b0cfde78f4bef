# The secret containers, encrypted with the project key. Values are put by an operator
# (`aws secretsmanager put-secret-value`), never by Terraform, so they never reach the state file.

resource "aws_secretsmanager_secret" "this" {
  #checkov:skip=CKV2_AWS_57:Rotation is not automated: the PII key must never rotate (pseudonyms would stop joining across days) and the PostgreSQL passwords are rotated by the DBA procedure that also updates the application.
  for_each = var.secret_names

  name                    = each.value
  description             = "${each.key} of the WeWard export pipeline (${var.name_prefix})."
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_in_days
  tags                    = var.tags
}
