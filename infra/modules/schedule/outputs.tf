output "schedule_names" {
  description = "Names of the schedules."
  value = concat(
    [for schedule in aws_scheduler_schedule.run : schedule.name],
    aws_scheduler_schedule.ec2_start[*].name,
    aws_scheduler_schedule.ec2_stop[*].name,
  )
}

output "schedule_states" {
  description = "ENABLED or DISABLED, by run (export, redact), of the ecs_task schedules; empty for ec2_instance."
  value       = { for name, schedule in aws_scheduler_schedule.run : name => schedule.state }
}

output "schedule_timezone" {
  description = "Time zone of the schedules."
  value       = var.schedule_timezone
}

output "scheduler_role_arn" {
  description = "Role EventBridge Scheduler runs with."
  value       = aws_iam_role.scheduler.arn
}

output "run_instance_id" {
  description = "Instance of the EC2 variant, null for ecs_task."
  value       = one(aws_instance.run_worker[*].id)
}

output "dead_letter_queue_arn" {
  description = "Queue of the invocations that failed after their retries."
  value       = aws_sqs_queue.dead_letter.arn
}

output "dead_letter_queue_name" {
  description = "Name of that queue (the alarm's dimension)."
  value       = aws_sqs_queue.dead_letter.name
}
