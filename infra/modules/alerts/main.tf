# Nothing runs unwatched. One SNS topic (email; Slack through AWS Chatbot, optional) receives:
#   - every run worker task (export, redact, erase) of the pipeline's cluster that stopped with a
#     non-zero exit code (a failed run, an OOM kill) or never started (TaskFailedToStart: image
#     pull, secrets, capacity), from EventBridge's ECS Task State Change events;
#   - the alarm on the scheduler's dead-letter queue: a run EventBridge Scheduler could not start
#     at all, which leaves no ECS event.
# Failures inside Dagster that exit 0 (a failed blocking check, a run the daemon launched) are
# reported by the code location's sensors when the Dagster service runs.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition
  alarm_arn  = "arn:${local.partition}:cloudwatch:${local.region}:${local.account_id}:alarm:${var.name_prefix}-scheduler-dead-letters"

  # EventBridge content filtering: within `detail` every key must match; `$or` takes either
  # failure. A list in the event (containers) matches when any element does.
  task_failed_pattern = {
    source        = ["aws.ecs"]
    "detail-type" = ["ECS Task State Change"]
    detail = {
      clusterArn        = [var.cluster_arn]
      lastStatus        = ["STOPPED"]
      taskDefinitionArn = [for family in var.task_definition_families : { prefix = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${family}:" }]
      "$or" = [
        { containers = { exitCode = [{ "anything-but" = 0 }] } },
        { stopCode = ["TaskFailedToStart"] },
      ]
    }
  }

  topic_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "EventBridgeRulePublishesTaskFailures"
        Effect    = "Allow"
        Principal = { Service = "events.amazonaws.com" }
        Action    = "sns:Publish"
        Resource  = aws_sns_topic.alerts.arn
        Condition = { ArnEquals = { "aws:SourceArn" = aws_cloudwatch_event_rule.task_failed.arn } }
      },
      {
        Sid       = "CloudWatchAlarmPublishesDeadLetters"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = "sns:Publish"
        Resource  = aws_sns_topic.alerts.arn
        Condition = { ArnEquals = { "aws:SourceArn" = local.alarm_arn } }
      },
    ]
  }
}

resource "aws_sns_topic" "alerts" {
  name              = "${var.name_prefix}-alerts"
  display_name      = "WeWard pipeline (${var.name_prefix})"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic_policy" "alerts" {
  arn    = aws_sns_topic.alerts.arn
  policy = jsonencode(local.topic_policy)
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.alert_emails)

  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.value
}

resource "aws_cloudwatch_event_rule" "task_failed" {
  name          = "${var.name_prefix}-run-failed"
  description   = "A run worker task of ${var.name_prefix} stopped with a non-zero exit code or never started."
  event_pattern = jsonencode(local.task_failed_pattern)
  tags          = var.tags
}

resource "aws_cloudwatch_event_target" "task_failed" {
  rule      = aws_cloudwatch_event_rule.task_failed.name
  target_id = "alerts-topic"
  arn       = aws_sns_topic.alerts.arn

  input_transformer {
    input_paths = {
      task     = "$.detail.taskArn"
      family   = "$.detail.taskDefinitionArn"
      stopCode = "$.detail.stopCode"
      reason   = "$.detail.stoppedReason"
      exitCode = "$.detail.containers[0].exitCode"
    }
    input_template = "\"${var.name_prefix}: run <family> stopped (<stopCode>, exit code <exitCode>): <reason>. Task <task>; its log stream is in /${var.name_prefix}/run-worker.\""
  }
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  alarm_name          = "${var.name_prefix}-scheduler-dead-letters"
  alarm_description   = "EventBridge Scheduler could not start a run of ${var.name_prefix} (after its retries): read the message in SQS ${var.dead_letter_queue_name}."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = var.dead_letter_queue_name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  tags                = var.tags
}

# Optional: the same alerts in Slack. The role has no permission of its own; the guardrail caps
# what anyone could do from the channel to reading CloudWatch.
resource "aws_iam_role" "chatbot" {
  count = var.slack_channel == null ? 0 : 1

  name = "${var.name_prefix}-chatbot"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "chatbot.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = var.tags
}

resource "aws_chatbot_slack_channel_configuration" "alerts" {
  count = var.slack_channel == null ? 0 : 1

  configuration_name    = "${var.name_prefix}-alerts"
  slack_team_id         = var.slack_channel.workspace_id
  slack_channel_id      = var.slack_channel.channel_id
  iam_role_arn          = aws_iam_role.chatbot[0].arn
  guardrail_policy_arns = ["arn:${local.partition}:iam::aws:policy/CloudWatchReadOnlyAccess"]
  sns_topic_arns        = [aws_sns_topic.alerts.arn]
  tags                  = var.tags
}
