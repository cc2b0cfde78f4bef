# Optional: a long-running Dagster (webserver + daemon) for teams that want the UI, sensors and
# backfills in AWS. Both share Dagster's PostgreSQL storage with the scheduled run worker, and the
# daemon's EcsRunLauncher starts each run as a Fargate task from the run worker's export task
# definition, or the redaction one for the runs of the redaction_automation sensor. This is the
# one part of the deployment that costs money while idle: two small Fargate tasks around the clock.
#
# No load balancer: the webserver is reached through SSM port forwarding into the webserver task
# (ECS Exec's managed agent; IAM-authenticated, see infra/README.md), so nothing listens on any
# network. The agent writes under /managed-agents and /var/lib|log/amazon/ssm: task volumes there,
# since the root file system is read-only. The services have their own security group (egress to
# PostgreSQL, the VPC endpoints and S3 only); the daemon also carries the run worker's, which the
# EcsRunLauncher (use_current_ecs_task_config) copies into every run it starts.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id   = data.aws_caller_identity.current.account_id
  region       = data.aws_region.current.name
  partition    = data.aws_partition.current.partition
  cluster_name = element(split("/", var.cluster_arn), 1)
  task_arns    = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${local.cluster_name}/*"

  # Where ECS Exec's managed agent writes (it runs as root: root-owned task volumes suit it).
  ecs_exec_paths = ["/managed-agents", "/var/lib/amazon/ssm", "/var/log/amazon/ssm"]
  app_volumes    = { "/tmp" = "tmp", "/opt/dagster/dagster_home/storage" = "dagster-home" }
  volumes        = merge(local.app_volumes, { for path in local.ecs_exec_paths : path => "ecs-exec-${replace(trim(path, "/"), "/", "-")}" })

  environment = merge(var.environment, {
    DAGSTER_RUN_TASK_DEFINITION = var.run_worker_task_definition
    # The sensor tags its runs with this task definition (weward_pipeline/defs/redaction.py): the
    # export's role cannot DELETE, and its task has no redaction DSN.
    WEWARD_REDACTION_TASK_DEFINITION = var.redaction_task_definition
    # gdpr_erasure runs use this one (erasure role, erasure DSN), through their ecs/run_task_kwargs tag.
    WEWARD_ERASURE_TASK_DEFINITION = var.erasure_task_definition
  })

  services = {
    webserver = {
      command = ["dagster-webserver", "--host", "0.0.0.0", "--port", "3000", "--workspace", "/opt/dagster/app/workspace.yaml"]
      cpu     = 512
      memory  = 2048
    }
    daemon = {
      command = ["dagster-daemon", "run", "--workspace", "/opt/dagster/app/workspace.yaml"]
      cpu     = 512
      memory  = 2048
    }
  }
}

locals {
  ecs_tasks_trust = {
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  }
}

resource "aws_iam_role" "service" {
  name               = "${var.name_prefix}-dagster-service"
  description        = "Dagster webserver and daemon: launch and watch run worker tasks."
  assume_role_policy = jsonencode(local.ecs_tasks_trust)
  tags               = var.tags
}

locals {
  service_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "LaunchRunsFromTheRunWorkerTaskDefinitions"
        Effect    = "Allow"
        Action    = "ecs:RunTask"
        Resource  = [var.run_worker_task_definition, var.redaction_task_definition, var.erasure_task_definition]
        Condition = { ArnEquals = { "ecs:cluster" = var.cluster_arn } }
      },
      {
        Sid      = "WatchAndStopRuns"
        Effect   = "Allow"
        Action   = ["ecs:DescribeTasks", "ecs:StopTask", "ecs:TagResource"]
        Resource = local.task_arns
      },
      {
        Sid       = "PassTheRunWorkerRoles"
        Effect    = "Allow"
        Action    = "iam:PassRole"
        Resource  = var.run_worker_role_arns
        Condition = { StringEquals = { "iam:PassedToService" = "ecs-tasks.amazonaws.com" } }
      },
      # EcsRunLauncher reads a run's log stream when its task failed to start.
      {
        Sid      = "ReadTheRunLogs"
        Effect   = "Allow"
        Action   = "logs:GetLogEvents"
        Resource = "${var.log_group_arn}:log-stream:*"
      },
      # Step logs (Dagster's S3ComputeLogManager): the webserver shows and deletes them.
      {
        Sid       = "ListTheComputeLogs"
        Effect    = "Allow"
        Action    = "s3:ListBucket"
        Resource  = var.compute_logs.bucket_arn
        Condition = { StringLike = { "s3:prefix" = ["${var.compute_logs.prefix}/*"] } }
      },
      {
        Sid      = "ReadWriteTheComputeLogs"
        Effect   = "Allow"
        Action   = ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
        Resource = "${var.compute_logs.bucket_arn}/${var.compute_logs.prefix}/*"
      },
      {
        Sid      = "UseTheProjectKeyForComputeLogs"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = var.kms_key_arn
      },
      {
        Sid    = "DescribeWithoutResourceLevelPermissions"
        Effect = "Allow"
        Action = [
          "ec2:DescribeNetworkInterfaces",
          "ecs:DescribeTaskDefinition",
          "ssmmessages:CreateControlChannel",
          "ssmmessages:CreateDataChannel",
          "ssmmessages:OpenControlChannel",
          "ssmmessages:OpenDataChannel",
        ]
        Resource = "*"
      },
    ]
  }
}

resource "aws_iam_role_policy" "service" {
  name   = "dagster-service"
  role   = aws_iam_role.service.id
  policy = jsonencode(local.service_policy)
}

resource "aws_ecs_task_definition" "service" {
  for_each = local.services

  family                   = "${var.name_prefix}-dagster-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = var.execution_role_arn
  task_role_arn            = aws_iam_role.service.arn
  tags                     = var.tags

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  dynamic "volume" {
    for_each = toset(values(local.volumes))
    content {
      name = volume.value
    }
  }

  container_definitions = jsonencode([{
    name                   = each.key
    image                  = var.image
    essential              = true
    command                = each.value.command
    readonlyRootFilesystem = true
    user                   = "10001:10001"
    linuxParameters        = { initProcessEnabled = true }
    environment            = [for key in sort(keys(local.environment)) : { name = key, value = local.environment[key] }]
    secrets                = [{ name = "DAGSTER_PG_PASSWORD", valueFrom = var.storage_password_secret_arn }]
    portMappings           = each.key == "webserver" ? [{ containerPort = 3000, protocol = "tcp" }] : []
    mountPoints            = [for path, volume in local.volumes : { sourceVolume = volume, containerPath = path, readOnly = false }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = var.log_group_name
        awslogs-region        = local.region
        awslogs-stream-prefix = "dagster-${each.key}"
      }
    }
  }])
}

resource "aws_security_group" "service" {
  name        = "${var.name_prefix}-dagster-service"
  description = "Dagster webserver and daemon: egress to PostgreSQL, the VPC endpoints and S3 only, no ingress."
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_egress_rule" "service_postgres" {
  security_group_id            = aws_security_group.service.id
  description                  = "PostgreSQL: Dagster's storage."
  ip_protocol                  = "tcp"
  from_port                    = var.postgres_port
  to_port                      = var.postgres_port
  referenced_security_group_id = var.postgres_security_group_id
}

resource "aws_vpc_security_group_egress_rule" "service_vpc_endpoints" {
  for_each = var.vpc_endpoint_security_group_ids

  security_group_id            = aws_security_group.service.id
  description                  = "HTTPS to the interface VPC endpoints (${each.key}): ECS, EC2, logs, SSM messages..."
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = each.value
}

resource "aws_vpc_security_group_egress_rule" "service_s3" {
  security_group_id = aws_security_group.service.id
  description       = "HTTPS to S3 through the gateway endpoint (compute logs)."
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = var.s3_prefix_list_id
}

resource "aws_ecs_service" "service" {
  for_each = local.services

  name                   = "dagster-${each.key}"
  cluster                = var.cluster_arn
  task_definition        = aws_ecs_task_definition.service[each.key].arn
  desired_count          = 1
  launch_type            = "FARGATE"
  platform_version       = "LATEST"
  enable_execute_command = true
  propagate_tags         = "SERVICE"
  tags                   = var.tags

  # One daemon at a time: never two schedulers ticking the same schedule.
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100

  network_configuration {
    subnets = var.subnet_ids
    # The daemon's runs inherit its security groups (use_current_ecs_task_config): the run
    # worker's goes with it.
    security_groups  = each.key == "daemon" ? [aws_security_group.service.id, var.security_group_id] : [aws_security_group.service.id]
    assign_public_ip = false
  }
}
