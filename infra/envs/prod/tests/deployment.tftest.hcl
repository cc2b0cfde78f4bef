# Plans this environment against a mock AWS provider (nothing leaves the machine) and checks which
# scheduler starts what, and with which command. From infra/envs/prod:
#   terraform init -backend=false && terraform test
# weward_pipeline_tests/test_infra_terraform.py runs it (on envs/dev too) when the AWS provider
# is installable: a provider mirror in $TF_PROVIDER_MIRROR, or /opt/tf-plugins.

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

variables {
  aws_account_id             = "123456789012"
  vpc_id                     = "vpc-0123456789abcdef0"
  vpc_cidr                   = "10.20.0.0/16"
  private_subnet_ids         = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]
  private_route_table_ids    = ["rtb-0aaaaaaaaaaaaaaaa", "rtb-0bbbbbbbbbbbbbbbb"]
  postgres_security_group_id = "sg-0123456789abcdef0"
  dagster_storage_host       = "app.cluster-abcdefghijkl.eu-west-3.rds.amazonaws.com"
  image_tag                  = "test"
}

run "without_the_dagster_service_eventbridge_exports_and_redacts_the_due_days" {
  command = plan

  assert {
    condition     = output.schedule_states == { export = "ENABLED", redact = "ENABLED" }
    error_message = "without the Dagster daemon, EventBridge must start the export and the redaction"
  }
  assert {
    condition     = output.run_commands.redact == ["weward-pipeline", "redact-due", "--lookback-days", "30"]
    error_message = "the redaction runs redact-due (every due day in the lookback), not yesterday's partition"
  }
  assert {
    condition     = strcontains(output.run_commands.export[2], "--partition \"$(TZ=Europe/Paris date -d yesterday +%F)\"")
    error_message = "the export materializes yesterday in the catalog's time zone"
  }
}

run "with_the_dagster_service_its_daemon_exports_and_redacts" {
  command = plan

  variables {
    dagster_service_enabled = true
    redact_lookback_days    = 45
  }
  assert {
    condition     = output.schedule_states == { export = "DISABLED", redact = "DISABLED" }
    error_message = "the daemon's schedule exports and its sensor redacts: EventBridge must do neither"
  }
  assert {
    condition     = output.run_commands.redact == ["weward-pipeline", "redact-due", "--lookback-days", "45"]
    error_message = "redact_lookback_days reaches the command (still used by hand with the service)"
  }
}

run "paused_schedules_stay_paused" {
  command = plan

  variables {
    schedules_enabled = false
  }
  assert {
    condition     = output.schedule_states == { export = "DISABLED", redact = "DISABLED" }
    error_message = "schedules_enabled = false pauses both runs"
  }
}

run "a_fractional_lookback_is_refused" {
  command = plan

  variables {
    redact_lookback_days = 1.5
  }
  expect_failures = [var.redact_lookback_days]
}

run "an_account_id_that_is_not_twelve_digits_is_refused" {
  command = plan

  variables {
    aws_account_id = "weward-prod"
  }
  expect_failures = [var.aws_account_id]
}
