# When the pipeline runs. Default ("ecs_task"): EventBridge Scheduler starts the run worker as a
# Fargate task at 02:00 in the table catalog's time zone; compute exists only while a run lasts.
# Variant ("ec2_instance"): the scheduler starts a stopped instance whose boot runs the same
# image once and powers the instance off; a second schedule stops it in case a run hangs.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition
  use_ecs    = var.launch_type == "ecs_task"
  use_ec2    = var.launch_type == "ec2_instance"
  # Tasks the scheduler starts, in the run worker's cluster: ecs:TagResource is authorized on these.
  cluster_tasks = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${element(split("/", var.cluster_arn), 1)}/*"

  runs = {
    export = { expression = var.export_schedule_expression, task_definition_arn = var.task_definition_arns["export"] }
    redact = { expression = var.redact_schedule_expression, task_definition_arn = var.task_definition_arns["redact"] }
  }
}

locals {
  scheduler_trust = {
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "scheduler.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "${var.name_prefix}-scheduler"
  description        = "EventBridge Scheduler: starts the ${var.name_prefix} runs."
  assume_role_policy = jsonencode(local.scheduler_trust)
  tags               = var.tags
}

locals {
  scheduler_ecs_statements = [
    {
      Sid       = "RunTheWorkerTasks"
      Effect    = "Allow"
      Action    = "ecs:RunTask"
      Resource  = [for run in local.runs : run.task_definition_arn]
      Condition = { ArnEquals = { "ecs:cluster" = var.cluster_arn } }
    },
    # The schedules start tasks with ECS managed tags and the task definition's tags: RunTask with
    # tags is also authorized as ecs:TagResource on the new task, for RunTask only.
    {
      Sid       = "TagTheTasksItStarts"
      Effect    = "Allow"
      Action    = "ecs:TagResource"
      Resource  = local.cluster_tasks
      Condition = { StringEquals = { "ecs:CreateAction" = "RunTask" } }
    },
    {
      Sid       = "PassTheWorkerRoles"
      Effect    = "Allow"
      Action    = "iam:PassRole"
      Resource  = distinct(concat([var.execution_role_arn], [for name, run in local.runs : var.task_role_arns[name]]))
      Condition = { StringEquals = { "iam:PassedToService" = "ecs-tasks.amazonaws.com" } }
    },
  ]
  scheduler_ec2_statements = [
    # Starting an instance whose volume is encrypted with the project key creates a grant for EC2.
    {
      Sid       = "LetEc2UseTheKeyForTheRunInstanceVolume"
      Effect    = "Allow"
      Action    = "kms:CreateGrant"
      Resource  = var.kms_key_arn
      Condition = { Bool = { "kms:GrantIsForAWSResource" = "true" } }
    },
    {
      Sid      = "StartAndStopTheRunInstance"
      Effect   = "Allow"
      Action   = ["ec2:StartInstances", "ec2:StopInstances"]
      Resource = one(aws_instance.run_worker[*].arn)
    },
  ]
  scheduler_policy = {
    Version = "2012-10-17"
    Statement = concat(
      [
        # The schedules' payloads and the dead-letter queue are encrypted with the project key.
        {
          Sid      = "UseTheProjectKeyForSchedulesAndDeadLetters"
          Effect   = "Allow"
          Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
          Resource = var.kms_key_arn
        },
        {
          Sid      = "SendFailedInvocationsToTheDeadLetterQueue"
          Effect   = "Allow"
          Action   = "sqs:SendMessage"
          Resource = aws_sqs_queue.dead_letter.arn
        },
      ],
      [for statement in local.scheduler_ecs_statements : statement if local.use_ecs],
      [for statement in local.scheduler_ec2_statements : statement if local.use_ec2],
    )
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "scheduler"
  role   = aws_iam_role.scheduler.id
  policy = jsonencode(local.scheduler_policy)
}

# An invocation that fails after its retries (RunTask refused, no capacity, a role that cannot pass)
# lands here, and the alarm on it reaches a person (modules/alerts): a run that never started
# leaves no ECS event to alert on.
resource "aws_sqs_queue" "dead_letter" {
  name                              = "${var.name_prefix}-scheduler-dead-letters"
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = 3600
  message_retention_seconds         = 1209600 # 14 days, the maximum: time to read why
  tags                              = var.tags
}

resource "aws_scheduler_schedule_group" "this" {
  name = var.name_prefix
  tags = var.tags
}

# ---------------------------------------------------------------------------------------------
# Fargate task per run (default)
# ---------------------------------------------------------------------------------------------

resource "aws_scheduler_schedule" "run" {
  for_each = { for name, run in local.runs : name => run if local.use_ecs }

  name                         = "${var.name_prefix}-${each.key}"
  group_name                   = aws_scheduler_schedule_group.this.name
  description                  = "Daily ${each.key} of the WeWard lake (${var.schedule_timezone})."
  schedule_expression          = each.value.expression
  schedule_expression_timezone = var.schedule_timezone
  state                        = var.enabled && contains(var.enabled_runs, each.key) ? "ENABLED" : "DISABLED"
  kms_key_arn                  = var.kms_key_arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = var.cluster_arn
    role_arn = aws_iam_role.scheduler.arn

    ecs_parameters {
      task_definition_arn     = each.value.task_definition_arn
      launch_type             = "FARGATE"
      task_count              = 1
      enable_ecs_managed_tags = true
      propagate_tags          = "TASK_DEFINITION"

      network_configuration {
        subnets          = var.subnet_ids
        security_groups  = [var.security_group_id]
        assign_public_ip = false
      }
    }

    dead_letter_config {
      arn = aws_sqs_queue.dead_letter.arn
    }

    # Runs are idempotent per partition; a retry after a capacity error is safe.
    retry_policy {
      maximum_event_age_in_seconds = 3600
      maximum_retry_attempts       = 3
    }
  }
}

# ---------------------------------------------------------------------------------------------
# EC2 start/stop variant
# ---------------------------------------------------------------------------------------------

# The ECS-optimized Amazon Linux 2023 image ships Docker and the AWS CLI: the instance installs
# nothing at boot (its subnets have no route to package mirrors).
data "aws_ssm_parameter" "ami" {
  count = local.use_ec2 ? 1 : 0
  name  = var.ec2_architecture == "arm64" ? "/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id" : "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
}

resource "aws_iam_instance_profile" "run_worker" {
  count = local.use_ec2 ? 1 : 0
  name  = "${var.name_prefix}-run-worker"
  role  = var.ec2_instance_role_name
  tags  = var.tags
}

resource "aws_instance" "run_worker" {
  count = local.use_ec2 ? 1 : 0

  ami                                  = data.aws_ssm_parameter.ami[0].value
  instance_type                        = var.ec2_instance_type
  subnet_id                            = var.subnet_ids[0]
  vpc_security_group_ids               = [var.security_group_id]
  iam_instance_profile                 = aws_iam_instance_profile.run_worker[0].name
  associate_public_ip_address          = false
  ebs_optimized                        = true
  monitoring                           = true
  instance_initiated_shutdown_behavior = "stop"
  user_data_replace_on_change          = true
  user_data = templatefile("${path.module}/run-on-boot.sh.tftpl", {
    region        = local.region
    image         = var.ec2_image
    command       = join(" ", [for part in var.ec2_command : format("'%s'", replace(part, "'", "'\\''"))])
    environment   = var.ec2_environment
    secret_arns   = var.ec2_secret_arns
    log_group     = var.ec2_log_group_name
    registry_host = split("/", var.ec2_image)[0]
  })
  tags = merge(var.tags, { Name = "${var.name_prefix}-run-worker" })

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 2
  }

  root_block_device {
    encrypted   = true
    kms_key_id  = var.kms_key_arn
    volume_type = "gp3"
    volume_size = var.ec2_volume_size_gib
  }

  lifecycle {
    ignore_changes = [ami]
  }
}

# What ECS's execution role does for a task, the instance does itself: pull the image, write logs.
locals {
  run_instance_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "EcrLogin"
        Effect   = "Allow"
        Action   = "ecr:GetAuthorizationToken"
        Resource = "*"
      },
      {
        Sid      = "PullTheRunWorkerImage"
        Effect   = "Allow"
        Action   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
        Resource = var.ec2_repository_arn
      },
      {
        Sid      = "WriteTheRunWorkerLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = "${var.ec2_log_group_arn}:log-stream:*"
      },
    ]
  }
}

resource "aws_iam_role_policy" "run_instance" {
  count = local.use_ec2 ? 1 : 0

  name   = "run-instance"
  role   = var.ec2_instance_role_name
  policy = jsonencode(local.run_instance_policy)
}

resource "aws_scheduler_schedule" "ec2_start" {
  count = local.use_ec2 ? 1 : 0

  name                         = "${var.name_prefix}-start-run-instance"
  group_name                   = aws_scheduler_schedule_group.this.name
  description                  = "Boots the run instance, whose boot runs the daily export (${var.schedule_timezone})."
  schedule_expression          = var.export_schedule_expression
  schedule_expression_timezone = var.schedule_timezone
  state                        = var.enabled ? "ENABLED" : "DISABLED"
  kms_key_arn                  = var.kms_key_arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = "arn:${local.partition}:scheduler:::aws-sdk:ec2:startInstances"
    role_arn = aws_iam_role.scheduler.arn
    input    = jsonencode({ InstanceIds = [aws_instance.run_worker[0].id] })

    dead_letter_config {
      arn = aws_sqs_queue.dead_letter.arn
    }
  }
}

resource "aws_scheduler_schedule" "ec2_stop" {
  count = local.use_ec2 ? 1 : 0

  name                         = "${var.name_prefix}-stop-run-instance"
  group_name                   = aws_scheduler_schedule_group.this.name
  description                  = "Stops the run instance if a run is still going (${var.schedule_timezone})."
  schedule_expression          = var.ec2_stop_schedule_expression
  schedule_expression_timezone = var.schedule_timezone
  state                        = var.enabled ? "ENABLED" : "DISABLED"
  kms_key_arn                  = var.kms_key_arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = "arn:${local.partition}:scheduler:::aws-sdk:ec2:stopInstances"
    role_arn = aws_iam_role.scheduler.arn
    input    = jsonencode({ InstanceIds = [aws_instance.run_worker[0].id] })

    dead_letter_config {
      arn = aws_sqs_queue.dead_letter.arn
    }
  }
}
