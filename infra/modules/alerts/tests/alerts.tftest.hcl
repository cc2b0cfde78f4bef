# Where failures go, planned against a mock AWS provider. The rule's pattern is matched against
# sample ECS events in weward_pipeline_tests/test_infra_alerts.py.

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012", arn = "arn:aws:iam::123456789012:user/ci", user_id = "AIDACI" }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-3", id = "eu-west-3", region = "eu-west-3" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws", dns_suffix = "amazonaws.com", id = "aws" }
  }
}

variables {
  name_prefix              = "weward-test"
  kms_key_arn              = "arn:aws:kms:eu-west-3:123456789012:key/0d3b1c6e-5f2a-4e8b-9c71-2a6f4d8e9b10"
  cluster_arn              = "arn:aws:ecs:eu-west-3:123456789012:cluster/weward-test"
  task_definition_families = ["weward-test-export", "weward-test-redact"]
  dead_letter_queue_name   = "weward-test-scheduler-dead-letters"
  alert_emails             = ["data-oncall@example.com"]
}

run "failures_and_dead_letters_reach_the_encrypted_topic_and_its_subscribers" {
  command = plan

  assert {
    condition     = aws_sns_topic.alerts.kms_master_key_id == var.kms_key_arn && aws_sns_topic_subscription.email["data-oncall@example.com"].protocol == "email"
    error_message = "an encrypted topic with an email subscription"
  }
  assert {
    condition     = jsondecode(aws_cloudwatch_event_rule.task_failed.event_pattern).detail.lastStatus == ["STOPPED"]
    error_message = "the rule matches stopped tasks"
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.dead_letters.dimensions.QueueName == var.dead_letter_queue_name && aws_cloudwatch_metric_alarm.dead_letters.threshold == 1
    error_message = "one dead letter raises the alarm"
  }
  assert {
    condition     = length(aws_chatbot_slack_channel_configuration.alerts) == 0
    error_message = "Slack is opt-in"
  }
}

run "slack_delivery_is_read_only" {
  command = plan

  variables {
    slack_channel = { workspace_id = "T0123456789", channel_id = "C0123456789" }
  }
  assert {
    condition     = tolist(aws_chatbot_slack_channel_configuration.alerts[0].guardrail_policy_arns) == tolist(["arn:aws:iam::aws:policy/CloudWatchReadOnlyAccess"])
    error_message = "nobody can act on the account from the channel beyond reading CloudWatch"
  }
}
