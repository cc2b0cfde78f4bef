output "topic_arn" {
  description = "SNS topic every alert of the pipeline goes to."
  value       = aws_sns_topic.alerts.arn
}

output "task_failure_rule_name" {
  description = "EventBridge rule matching the runs that stopped with a failure."
  value       = aws_cloudwatch_event_rule.task_failed.name
}
