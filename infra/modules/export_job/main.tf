# The run worker: one container image (deploy/Dockerfile) run as a Fargate task, once for the
# daily export, once for the redaction and on demand for an erasure, each with its own task role
# and only its own secrets.
# Nothing runs between runs: the cluster, the task definitions and the log group cost nothing
# while idle.

data "aws_region" "current" {}

locals {
  region    = data.aws_region.current.name
  log_group = "/${var.name_prefix}/run-worker"

  # Plain environment: the pipeline's env file minus the *_SECRET keys, which only name secrets.
  plain_environment = merge(
    { for key, value in var.pipeline_env : key => value if !endswith(key, "_SECRET") },
    {
      DAGSTER_HOME    = "/opt/dagster/dagster_home"
      DAGSTER_PG_HOST = var.dagster_storage_host
      # Runs launched from here (EcsRunLauncher in deploy/dagster.yaml) use the export task
      # definition's latest revision.
      DAGSTER_RUN_TASK_DEFINITION = "${var.name_prefix}-export"
      # S3ComputeLogManager of deploy/dagster.yaml: step logs outlive the task.
      DAGSTER_COMPUTE_LOG_BUCKET = var.compute_logs_bucket
      DAGSTER_COMPUTE_LOG_PREFIX = var.compute_logs_prefix
    },
  )
  environment = [for key in sort(keys(local.plain_environment)) : { name = key, value = local.plain_environment[key] }]

  workers = {
    # secrets: container variable => the secret (modules/secrets key) that fills it.
    export = {
      task_role_arn = var.export_role_arn
      secrets       = { for name in var.export_secret_variables : name => name }
      command       = var.export_command
    }
    redact = {
      task_role_arn = var.redaction_role_arn
      secrets       = merge({ for name in var.redaction_secret_variables : name => name }, var.redaction_secret_aliases)
      command       = var.redact_command
    }
    erase = {
      task_role_arn = var.erasure_role_arn
      secrets       = merge({ for name in var.erasure_secret_variables : name => name }, var.erasure_secret_aliases)
      command       = var.erase_command
    }
  }
}

# ---------------------------------------------------------------------------------------------
# Image registry
# ---------------------------------------------------------------------------------------------

resource "aws_ecr_repository" "run_worker" {
  name                 = "${var.name_prefix}/run-worker"
  image_tag_mutability = "IMMUTABLE"
  force_delete         = false
  tags                 = var.tags

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }
}

resource "aws_ecr_lifecycle_policy" "run_worker" {
  repository = aws_ecr_repository.run_worker.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the last ${var.images_to_keep} images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = var.images_to_keep
      }
      action = { type = "expire" }
    }]
  })
}

# ---------------------------------------------------------------------------------------------
# Cluster and logs
# ---------------------------------------------------------------------------------------------

resource "aws_ecs_cluster" "this" {
  name = var.name_prefix
  tags = var.tags

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "run_worker" {
  name              = local.log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

# ---------------------------------------------------------------------------------------------
# Execution role: what ECS itself needs to start the task (pull, log, inject secrets).
# ---------------------------------------------------------------------------------------------

locals {
  ecs_tasks_trust = {
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name_prefix}-run-worker-execution"
  description        = "ECS agent of the run worker: pull the image, write logs, inject secrets."
  assume_role_policy = jsonencode(local.ecs_tasks_trust)
  tags               = var.tags
}

locals {
  execution_policy = {
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
        Resource = aws_ecr_repository.run_worker.arn
      },
      {
        Sid      = "WriteTheRunWorkerLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = "${aws_cloudwatch_log_group.run_worker.arn}:log-stream:*"
      },
      {
        Sid      = "InjectTheRunWorkerSecrets"
        Effect   = "Allow"
        Action   = "secretsmanager:GetSecretValue"
        Resource = distinct(flatten([for worker in local.workers : [for secret in values(worker.secrets) : var.secret_arns[secret]]]))
      },
      {
        Sid      = "DecryptSecretsAndImage"
        Effect   = "Allow"
        Action   = "kms:Decrypt"
        Resource = var.kms_key_arn
      },
    ]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "execution"
  role   = aws_iam_role.execution.id
  policy = jsonencode(local.execution_policy)
}

# ---------------------------------------------------------------------------------------------
# Network: PostgreSQL and the VPC endpoints, nothing else. No ingress.
# ---------------------------------------------------------------------------------------------

resource "aws_security_group" "run_worker" {
  #checkov:skip=CKV2_AWS_5:Attached at run time: the schedule (or the EcsRunLauncher) passes it in each RunTask call.
  name        = "${var.name_prefix}-run-worker"
  description = "Run worker: egress to PostgreSQL and the VPC endpoints only, no ingress."
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_egress_rule" "postgres" {
  security_group_id            = aws_security_group.run_worker.id
  description                  = "PostgreSQL: the application database and Dagster's storage."
  ip_protocol                  = "tcp"
  from_port                    = var.postgres_port
  to_port                      = var.postgres_port
  referenced_security_group_id = var.postgres_security_group_id
}

resource "aws_vpc_security_group_egress_rule" "vpc_endpoints" {
  security_group_id            = aws_security_group.run_worker.id
  description                  = "HTTPS to the interface VPC endpoints (ECR, logs, Secrets Manager, Glue, Athena, KMS, STS)."
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = var.vpc_endpoint_security_group_id
}

resource "aws_vpc_security_group_egress_rule" "s3_gateway" {
  security_group_id = aws_security_group.run_worker.id
  description       = "HTTPS to S3 through the gateway endpoint (lake, image layers)."
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = var.s3_prefix_list_id
}

resource "aws_vpc_security_group_ingress_rule" "postgres_from_run_worker" {
  count = var.manage_postgres_ingress ? 1 : 0

  security_group_id            = var.postgres_security_group_id
  description                  = "PostgreSQL from the ${var.name_prefix} run worker."
  ip_protocol                  = "tcp"
  from_port                    = var.postgres_port
  to_port                      = var.postgres_port
  referenced_security_group_id = aws_security_group.run_worker.id
}

# ---------------------------------------------------------------------------------------------
# Task definitions
# ---------------------------------------------------------------------------------------------

resource "aws_ecs_task_definition" "worker" {
  for_each = local.workers

  family                   = "${var.name_prefix}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = each.value.task_role_arn
  tags                     = var.tags

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  ephemeral_storage {
    size_in_gib = var.ephemeral_storage_gib
  }

  # Read-only root file system: the worker writes only to these two task-scoped volumes.
  volume {
    name = "tmp"
  }

  volume {
    name = "dagster-home"
  }

  container_definitions = jsonencode([{
    name                   = "run-worker"
    image                  = "${aws_ecr_repository.run_worker.repository_url}:${var.image_tag}"
    essential              = true
    command                = each.value.command
    readonlyRootFilesystem = true
    user                   = "10001:10001"
    linuxParameters        = { initProcessEnabled = true }
    environment            = local.environment
    secrets                = [for name, secret in each.value.secrets : { name = name, valueFrom = var.secret_arns[secret] }]
    mountPoints = [
      { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
      { sourceVolume = "dagster-home", containerPath = "/opt/dagster/dagster_home/storage", readOnly = false },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.run_worker.name
        awslogs-region        = local.region
        awslogs-stream-prefix = each.key
      }
    }
  }])
}
