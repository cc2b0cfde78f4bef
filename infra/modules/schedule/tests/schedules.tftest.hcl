# Which schedules exist and what they may start, planned against a mock AWS provider.

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

  mock_data "aws_ssm_parameter" {
    defaults = { value = "ami-0123456789abcdef0", insecure_value = "ami-0123456789abcdef0" }
  }
}

override_resource {
  target          = aws_instance.run_worker
  override_during = plan
  values          = { arn = "arn:aws:ec2:eu-west-3:123456789012:instance/i-0123456789abcdef0", id = "i-0123456789abcdef0" }
}

variables {
  name_prefix       = "weward-test"
  schedule_timezone = "Europe/Paris"
  kms_key_arn       = "arn:aws:kms:eu-west-3:123456789012:key/0d3b1c6e-5f2a-4e8b-9c71-2a6f4d8e9b10"
  cluster_arn       = "arn:aws:ecs:eu-west-3:123456789012:cluster/weward-test"
  task_definition_arns = {
    export = "arn:aws:ecs:eu-west-3:123456789012:task-definition/weward-test-export:3"
    redact = "arn:aws:ecs:eu-west-3:123456789012:task-definition/weward-test-redact:3"
  }
  task_role_arns = {
    export = "arn:aws:iam::123456789012:role/weward-test-export"
    redact = "arn:aws:iam::123456789012:role/weward-test-redaction"
  }
  execution_role_arn = "arn:aws:iam::123456789012:role/weward-test-run-worker-execution"
  subnet_ids         = ["subnet-0aaaaaaaaaaaaaaaa"]
  security_group_id  = "sg-0123456789abcdef0"
}

run "paused_schedules_start_nothing" {
  command = plan

  variables {
    enabled = false
  }
  assert {
    condition     = alltrue([for s in aws_scheduler_schedule.run : s.state == "DISABLED"])
    error_message = "enabled = false pauses every run"
  }
}

run "the_ec2_variant_starts_and_stops_one_instance_and_runs_no_task" {
  command = plan

  variables {
    launch_type            = "ec2_instance"
    ec2_instance_role_name = "weward-test-export"
    ec2_image              = "123456789012.dkr.ecr.eu-west-3.amazonaws.com/weward-test/run-worker:t"
    ec2_command            = ["weward-pipeline", "--help"]
  }
  assert {
    condition     = length(aws_scheduler_schedule.run) == 0 && length(aws_scheduler_schedule.ec2_start) == 1 && length(aws_scheduler_schedule.ec2_stop) == 1
    error_message = "the EC2 variant has a start and a stop schedule and no task schedule"
  }
  assert {
    condition     = jsondecode(aws_scheduler_schedule.ec2_start[0].target[0].input) == { InstanceIds = ["i-0123456789abcdef0"] }
    error_message = "the start schedule starts the run instance"
  }
}

override_resource {
  target          = aws_sqs_queue.dead_letter
  override_during = plan
  values          = { arn = "arn:aws:sqs:eu-west-3:123456789012:weward-test-scheduler-dead-letters" }
}

run "the_scheduler_may_tag_the_tasks_it_starts_and_dead_letters_what_fails" {
  command = plan

  assert {
    condition = one([for s in jsondecode(aws_iam_role_policy.scheduler.policy).Statement : s if s.Action == "ecs:TagResource"]) == {
      Sid       = "TagTheTasksItStarts"
      Effect    = "Allow"
      Action    = "ecs:TagResource"
      Resource  = "arn:aws:ecs:eu-west-3:123456789012:task/weward-test/*"
      Condition = { StringEquals = { "ecs:CreateAction" = "RunTask" } }
    }
    error_message = "RunTask with managed tags needs ecs:TagResource on the new task"
  }
  assert {
    condition     = alltrue([for s in aws_scheduler_schedule.run : s.target[0].dead_letter_config[0].arn == "arn:aws:sqs:eu-west-3:123456789012:weward-test-scheduler-dead-letters"])
    error_message = "every schedule dead-letters its failed invocations"
  }
}
