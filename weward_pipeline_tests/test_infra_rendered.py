"""The deployment's wiring, asserted on Terraform's own rendering of each environment.

`render(env)` (terraform_render.py) plans infra/envs/<env> against a mock AWS provider whose ARNs
have the shape AWS gives them; these tests read what would be deployed: who may start what, with
which command, environment and volumes. Each defect of issue 11 has a test here that fails on the
infrastructure as it was.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import re
import subprocess
import warnings
from importlib.metadata import entry_points
from pathlib import Path

import click
import pytest
import yaml

from weward_pipeline import cli
from weward_pipeline.config import Settings
from weward_pipeline_tests.terraform_render import ENVS, ROOT, VARIANTS, Role, as_list, render


def allow_statements(role: Role, action: str) -> list[dict]:
    """The Allow statements of a role that name `action` exactly (no wildcard is ever granted)."""
    return [s for s in role.statements() if s["Effect"] == "Allow" and action in as_list(s["Action"])]


def condition(statement: dict) -> dict[tuple[str, str], list]:
    return {
        (op, key): as_list(values)
        for op, keys in statement.get("Condition", {}).items()
        for key, values in keys.items()
    }


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("dagster_service", [False, True])
def test_each_schedule_may_run_tag_and_pass_exactly_what_its_task_needs(env, dagster_service):
    """Defect 1: RunTask with managed/propagated tags is also ecs:TagResource on the new task
    (condition ecs:CreateAction = RunTask); the scheduler role lacked it and every run failed."""
    rendering = render(env, dagster_service_enabled=dagster_service)
    cluster = rendering.outputs["ecs_cluster_name"]
    cluster_arn = f"arn:aws:ecs:{rendering.region}:{rendering.account_id}:cluster/{cluster}"
    assert rendering.schedules, "no schedule rendered"
    for name, schedule in rendering.schedules.items():
        task = schedule.task_definition
        assert task is not None and schedule.target_arn == cluster_arn, name
        role = schedule.role
        tags_requested = schedule.ecs["enable_ecs_managed_tags"] or schedule.ecs["propagate_tags"]

        (run,) = allow_statements(role, "ecs:RunTask")
        assert set(as_list(run["Resource"])) == {
            s.task_definition.arn for s in rendering.schedules.values() if s.role is role
        }, name
        assert condition(run) == {("ArnEquals", "ecs:cluster"): [cluster_arn]}, name

        tag = allow_statements(role, "ecs:TagResource")
        if tags_requested:
            assert len(tag) == 1, f"{name}: starts tasks with tags but its role {role.name} may not tag them"
            assert as_list(tag[0]["Resource"]) == [
                f"arn:aws:ecs:{rendering.region}:{rendering.account_id}:task/{cluster}/*"
            ]
            assert condition(tag[0]) == {("StringEquals", "ecs:CreateAction"): ["RunTask"]}, name

        (pass_role,) = allow_statements(role, "iam:PassRole")
        passed = {task.execution_role.arn, task.task_role.arn}
        assert passed <= set(as_list(pass_role["Resource"])), f"{name}: cannot pass {passed}"
        every_scheduled_task = [s.task_definition for s in rendering.schedules.values() if s.role is role]
        assert set(as_list(pass_role["Resource"])) == {
            arn for t in every_scheduled_task for arn in (t.execution_role.arn, t.task_role.arn)
        }
        assert condition(pass_role) == {("StringEquals", "iam:PassedToService"): ["ecs-tasks.amazonaws.com"]}


@pytest.mark.parametrize("env", ENVS)
def test_a_failed_invocation_lands_in_an_encrypted_dead_letter_queue_the_scheduler_may_write(env):
    """Defect 1: without a dead-letter queue a refused RunTask left no trace anywhere."""
    rendering = render(env)
    (queue,) = rendering.resources("aws_sqs_queue")
    (key_arn,) = rendering.key_policies
    assert queue.values["kms_master_key_id"] == key_arn
    for name, schedule in rendering.schedules.items():
        assert schedule.dead_letter_arn == queue.values["arn"], name
        role = schedule.role
        assert [as_list(s["Resource"]) for s in allow_statements(role, "sqs:SendMessage")] == [[queue.values["arn"]]]
        assert any(key_arn in as_list(s["Resource"]) for s in allow_statements(role, "kms:GenerateDataKey"))


@pytest.mark.parametrize("env", ENVS)
def test_every_role_lists_only_under_its_prefixes_and_the_export_may_probe_the_lake(env):
    """Defect 2: export.check_lake_reachable called HeadBucket (s3:ListBucket with no s3:prefix),
    which the export role's prefix-scoped grant denied. The probe is now a one-key listing under
    the lake prefix (s3:ListBucket with s3:prefix "<lake prefix>/"), so no role needs ListBucket
    without a prefix, which would list every key of the bucket, erasure requests included."""
    rendering = render(env)
    bucket, lake_prefix = rendering.outputs["lake_url"].removeprefix("s3://").split("/", 1)
    for role in rendering.roles.values():
        for statement in allow_statements(role, "s3:ListBucket"):
            assert set(condition(statement)) == {("StringLike", "s3:prefix")}, (
                f"{role.name}: {statement.get('Sid')} lets it list without a prefix: {statement.get('Condition')}"
            )
    role = rendering.roles[f"weward-{env}-export"]
    probe = [
        s
        for s in granted(role, "s3:ListBucket", f"arn:aws:s3:::{bucket}")
        if any(resource_matches(p, f"{lake_prefix}/") for p in condition(s)[("StringLike", "s3:prefix")])
    ]
    assert probe, f"{role.name} may not list s3://{bucket}/{lake_prefix}/ (check_lake_reachable's probe)"


def resource_matches(pattern: str, arn: str) -> bool:
    """IAM's Resource matching: * and ? wildcards, nothing else (no variables are used here)."""
    return fnmatch.fnmatchcase(arn, pattern)


def granted(role: Role, action: str, arn: str) -> list[dict]:
    return [s for s in allow_statements(role, action) if any(resource_matches(r, arn) for r in as_list(s["Resource"]))]


@pytest.mark.parametrize("env", ENVS)
def test_erasure_runs_under_its_own_task_definition_role_and_dsn(env):
    """Defect 4: gdpr_erasure ran under the export task (no object-version rights, no access to the
    request prefix, and deletes through the SELECT-only export DSN)."""
    rendering = render(env)
    prefix = f"weward-{env}"
    lake_url = rendering.outputs["lake_url"]
    bucket, lake_prefix = lake_url.removeprefix("s3://").split("/", 1)
    task = rendering.task_definitions[f"{prefix}-erase"]
    role = task.task_role
    assert role.name == f"{prefix}-erasure"

    secrets = rendering.secrets
    dsn_secret = secrets[f"weward/pipeline/pg-erase-url{'' if env == 'prod' else '-' + env}"]
    assert task.container.secrets["WEWARD_PG_ERASE_URL"] == dsn_secret
    assert task.container.secrets["WEWARD_PG_URL"] == dsn_secret  # the code location's lake resource needs it
    export_dsn, redact_dsn = (
        rendering.task_definitions[f"{prefix}-{n}"].container.secrets[v]
        for n, v in (("export", "WEWARD_PG_URL"), ("redact", "WEWARD_PG_REDACT_URL"))
    )
    assert {export_dsn, redact_dsn}.isdisjoint(task.container.secrets.values())
    assert "WEWARD_PII_KEY" in task.container.secrets  # user columns may be pseudonymized in the lake

    bucket_arn = f"arn:aws:s3:::{bucket}"
    obj = f"{bucket_arn}/{lake_prefix}/events/day=2024-03-30/export=0f3a/part-0.parquet"
    for action in ("s3:GetObjectVersion", "s3:DeleteObjectVersion", "s3:DeleteObject", "s3:PutObject", "s3:GetObject"):
        assert granted(role, action, obj), f"{role.name} may not {action} {obj}"
    assert granted(role, "s3:PutObject", f"{bucket_arn}/{lake_prefix}/_audit/erasure/2f1c.json")
    assert granted(role, "s3:GetObject", f"{bucket_arn}/_requests/erasure/TICKET-1234.txt")
    (versions,) = allow_statements(role, "s3:ListBucketVersions")
    assert as_list(versions["Resource"]) == [bucket_arn]
    assert condition(versions) == {("StringLike", "s3:prefix"): [lake_prefix, f"{lake_prefix}/*"]}
    # Nothing outside the lake prefix and the request prefix.
    assert not granted(role, "s3:DeleteObjectVersion", f"{bucket_arn}/_requests/erasure/TICKET-1234.txt")

    service = rendering.roles[f"{prefix}-dagster-service"]
    assert granted(service, "ecs:RunTask", task.arn) and granted(service, "iam:PassRole", role.arn)
    daemon = rendering.task_definitions[f"{prefix}-dagster-daemon"].container
    assert daemon.environment["WEWARD_ERASURE_TASK_DEFINITION"] == task.arn


DOCKERFILE = ROOT / "deploy" / "Dockerfile"
REHEARSAL_POSTGRES_SECURITY_GROUP = "sg-0123456789abcdef0"  # postgres_security_group_id in rehearsal.tftest.hcl
ECS_EXEC_PATHS = {"/managed-agents", "/var/lib/amazon/ssm", "/var/log/amazon/ssm"}


def dockerfile_final_stage(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the last stage: continuation lines joined, comments dropped."""
    instructions, current = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        current += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            if current:
                keyword, _, arguments = current.partition(" ")
                instructions.append((keyword.upper(), arguments.strip()))
            current = ""
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def image_volumes() -> set[str]:
    return {
        path for keyword, arguments in dockerfile_final_stage() if keyword == "VOLUME" for path in json.loads(arguments)
    }


@pytest.mark.parametrize("env", ENVS)
def test_every_task_may_write_exactly_the_volumes_the_image_declares_for_its_user(env):
    """Defect 3: on Fargate a task volume is root-owned 0755 unless the image declares a VOLUME at
    its mount path; the worker (uid 10001, read-only root) could not mkdtemp in /tmp nor let
    Dagster stage compute logs. Every writable mount point must be such a VOLUME."""
    stage = dockerfile_final_stage()
    (user,) = [arguments for keyword, arguments in stage if keyword == "USER"]
    volumes = image_volumes()
    env_lines = " ".join(arguments for keyword, arguments in stage if keyword == "ENV")
    dagster_home = re.search(r"DAGSTER_HOME=(\S+)", env_lines)[1]
    assert {"/tmp", f"{dagster_home}/storage"} <= volumes, f"the image declares VOLUME {sorted(volumes)}"
    assert re.search(r"HOME=/tmp\b", env_lines), "HOME must be writable (tools write dotfiles there)"
    run_lines = [arguments for keyword, arguments in stage if keyword == "RUN"]
    for path in volumes - {"/tmp"}:  # /tmp keeps the base image's 1777
        assert any(
            f"chown {user} {path}" in line or f"chown {user.split(':')[0]}:{user.split(':')[1]} {path}" in line
            for line in run_lines
        ), f"the image must create {path} owned by {user} before declaring it"
    volume_at = [i for i, (keyword, _) in enumerate(stage) if keyword == "VOLUME"]
    assert all(keyword not in ("RUN", "COPY", "ADD") for keyword, _ in stage[max(volume_at) + 1 :]), (
        "a change after VOLUME is discarded: declare volumes last"
    )

    rendering = render(env)
    for family, task in rendering.task_definitions.items():
        container = task.container
        assert container.readonly_root_filesystem and container.user == user, family
        # ECS Exec's agent runs as root: root-owned volumes suit it, on the Dagster services only.
        app_paths = container.writable_paths - (ECS_EXEC_PATHS if "-dagster-" in family else set())
        assert app_paths == volumes, f"{family} writes {sorted(app_paths)}; the image declares {sorted(volumes)}"
        assert set(container.mount_points.values()) <= set(task.volumes), family


@pytest.mark.parametrize("env", ENVS)
def test_the_dagster_service_reaches_the_apis_its_launcher_calls_and_its_ui_through_ssm(env):
    """Defect 5: no ecs/ec2/ssmmessages endpoints (EcsRunLauncher's DescribeTasks, its network
    interfaces, ECS Exec port forwarding all timed out), a borrowed security group, no place for
    the SSM agent to write on the read-only root, no logs:GetLogEvents, step logs lost."""
    rendering = render(env)
    prefix = f"weward-{env}"
    assert {"ecs", "ec2", "ssmmessages", "logs", "s3"} <= set(rendering.vpc_endpoints)
    assert all(e["private_dns_enabled"] for s, e in rendering.vpc_endpoints.items() if s != "s3")

    service_sg = rendering.security_groups[f"{prefix}-dagster-service"]
    endpoints_sg = rendering.security_groups[f"{prefix}-vpc-endpoints"]
    assert not service_sg.ingress
    assert {
        (r["from_port"], r.get("referenced_security_group_id") or r.get("prefix_list_id")) for r in service_sg.egress
    } == {
        (5432, REHEARSAL_POSTGRES_SECURITY_GROUP),
        (443, endpoints_sg.id),
        (443, rendering.vpc_endpoints["s3"]["prefix_list_id"]),
    }
    run_worker_sg = rendering.security_groups[f"{prefix}-run-worker"]
    services = {r.values["name"]: r.values for r in rendering.resources("aws_ecs_service")}
    assert set(services["dagster-webserver"]["network_configuration"][0]["security_groups"]) == {service_sg.id}
    assert set(services["dagster-daemon"]["network_configuration"][0]["security_groups"]) == {
        service_sg.id,
        run_worker_sg.id,
    }
    assert all(s["enable_execute_command"] for s in services.values())

    webserver = rendering.task_definitions[f"{prefix}-dagster-webserver"]
    assert ECS_EXEC_PATHS <= webserver.container.writable_paths, "the SSM agent cannot start on a read-only root"
    assert set(webserver.container.mount_points.values()) <= set(webserver.volumes)

    role = rendering.roles[f"{prefix}-dagster-service"]
    log_group = f"arn:aws:logs:{rendering.region}:{rendering.account_id}:log-group:/{prefix}/run-worker"
    assert granted(role, "logs:GetLogEvents", f"{log_group}:log-stream:export/run-worker/0f3a")
    for action in (
        "ssmmessages:CreateControlChannel",
        "ssmmessages:OpenDataChannel",
        "ecs:DescribeTaskDefinition",
        "ec2:DescribeNetworkInterfaces",
    ):
        assert granted(role, action, "*"), action


@pytest.mark.parametrize("env", ENVS)
def test_every_task_may_keep_its_step_logs_in_s3_where_its_environment_points(env):
    """Defect 7: step logs vanished with each task; compute logs go to the lake bucket under
    _dagster/compute-logs/ (deploy/dagster.yaml reads DAGSTER_COMPUTE_LOG_BUCKET/_PREFIX)."""
    rendering = render(env)
    for family, task in rendering.task_definitions.items():
        environment = task.container.environment
        bucket, prefix = environment["DAGSTER_COMPUTE_LOG_BUCKET"], environment["DAGSTER_COMPUTE_LOG_PREFIX"]
        assert prefix == "_dagster/compute-logs" and not prefix.endswith("/")
        log = f"arn:aws:s3:::{bucket}/{prefix}/storage/0f3a/compute_logs/export.err"
        for action in ("s3:PutObject", "s3:GetObject"):
            assert granted(task.task_role, action, log), f"{family}: {task.task_role.name} may not {action} {log}"
        lake_prefix = rendering.outputs["lake_url"].split("/", 3)[3]
        assert not prefix.startswith(lake_prefix), "logs outside the lake prefix: analysts read the lake"


def test_the_base_image_is_pinned_by_digest_and_the_build_context_holds_only_what_the_image_copies():
    """Defect 7: `FROM python:3.11-slim-bookworm` took whatever the tag pointed to that day."""
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.M))
    for image in re.findall(r"^FROM (\S+)", text, flags=re.M):
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], image)
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), f"FROM {image} is not pinned by digest"
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore, "the build context must start from nothing (no .git, no .local, no .terraform)"
    admitted = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = {
        source
        for arguments in re.findall(r"^COPY (?!--from)(.+)$", text, flags=re.M)
        for source in arguments.split()[:-1]
        if not source.startswith("--") and "$" not in source
    }
    assert copied <= admitted, f"COPY of {sorted(copied - admitted)} is excluded by .dockerignore"


# The switches the default rendering leaves off, all on in one rendering (one plan per environment).
OTHER_SWITCHES = VARIANTS["every_other_switch"]


@pytest.mark.parametrize("env", ENVS)
def test_one_cpu_architecture_everywhere_the_image_runs(env):
    """Defect 7: the EC2 variant defaulted to arm64 (m7g) while the Fargate tasks said X86_64."""
    rendering = render(env, **OTHER_SWITCHES)
    architectures = {task.cpu_architecture for task in rendering.task_definitions.values()}
    assert architectures == {"X86_64"}, architectures
    (instance,) = rendering.resources("aws_instance")
    family = instance.values["instance_type"].split(".")[0]
    graviton = re.fullmatch(r"[a-z]+\d+[a-z]*g[a-z]*", family) is not None
    assert not graviton, f"instance type {instance.values['instance_type']} is arm64; the image is x86_64"


@pytest.mark.parametrize("env", ENVS)
def test_the_stack_leaves_account_wide_and_other_teams_settings_alone(env):
    """Defect 7: Glue Data Catalog encryption is account-wide (it would re-key other teams'
    catalogs) and the PostgreSQL security group is the application team's: neither is managed by
    default; the rules the DBA team must add are an output."""
    rendering = render(env)
    assert not rendering.resources("aws_glue_data_catalog_encryption_settings")
    edited = [
        r
        for r in rendering.resources("aws_vpc_security_group_ingress_rule")
        if r.values["security_group_id"] == REHEARSAL_POSTGRES_SECURITY_GROUP
    ]
    assert not edited
    rules = rendering.outputs["postgres_ingress_rules"]
    prefix = f"weward-{env}"
    assert {(r["from_security_group_id"], r["port"]) for r in rules} == {
        (rendering.security_groups[f"{prefix}-run-worker"].id, 5432),
        (rendering.security_groups[f"{prefix}-dagster-service"].id, 5432),
    }
    assert render(env, **OTHER_SWITCHES).resources("aws_glue_data_catalog_encryption_settings")


def console_script_command(name: str) -> click.Command:
    """The click command behind a console script of the image (dagster, dagster-webserver...)."""
    (entry_point,) = entry_points(group="console_scripts", name=name)
    return importlib.import_module(entry_point.module).cli


def parse_click(command: click.Command, name: str, args: list[str]) -> click.Context:
    """Parses args down to the leaf sub-command (options, required ones, choices), running nothing."""
    context = command.make_context(name, list(args), resilient_parsing=False)
    while isinstance(context.command, click.Group):
        with warnings.catch_warnings():  # click 8.2 deprecates protected_args; 9.0 folds it into args
            warnings.simplefilter("ignore", DeprecationWarning)
            rest = [*getattr(context, "protected_args", []), *context.args]
        assert rest, f"{name}: a sub-command is missing"
        sub_name, sub_command, sub_args = context.command.resolve_command(context, rest)
        assert sub_command is not None, f"{name}: no sub-command {sub_name}"
        context = sub_command.make_context(sub_name, sub_args, parent=context, resilient_parsing=False)
    return context


def shell_argv(script: str, environment: dict[str, str], scratch: Path) -> list[str]:
    """The argv a `sh -c` script finally execs, run by sh itself up to that exec (command
    substitutions, files it writes: /tmp is `scratch` here)."""
    assert script.count("exec ") == 1, f"the script must end by exec'ing one command: {script!r}"
    script = script.replace("/tmp/", f"{scratch}/").replace("exec ", "exec printf '%s\\0' ")
    out = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin", **environment}
    )
    return out.stdout.split("\0")[:-1]


# What an operator passes to the erasure task (infra/README.md), as the task's command reads it.
ERASURE_RUN_CONFIG = (
    "ops:\n  erase_users:\n    config:\n      request_url: s3://weward-lake-prod/_requests/erasure/T-1.txt\n"
)


def image_files() -> dict[str, str]:
    """Files the image copies from the repository, by their path in the image."""
    found = {}
    for keyword, arguments in dockerfile_final_stage():
        parts = [p for p in arguments.split() if not p.startswith("--")]
        if keyword == "COPY" and "--from" not in arguments and "$" not in arguments:
            found[parts[-1]] = str(ROOT / parts[0])
    return found


def argv_of(container, scratch: Path) -> list[str]:
    """The argv the container runs, with the image's files replaced by their repository source."""
    command = container.command
    if command is None:  # the image's CMD
        (cmd,) = [arguments for keyword, arguments in dockerfile_final_stage() if keyword == "CMD"]
        command = json.loads(cmd)
    if command[:2] == ["sh", "-c"]:
        command = shell_argv(
            command[2], {**container.environment, "WEWARD_ERASURE_RUN_CONFIG": ERASURE_RUN_CONFIG}, scratch
        )
    files = image_files()
    return [files.get(part, part) for part in command]


@pytest.mark.parametrize("env", ENVS)
def test_every_container_command_parses_as_a_command_of_this_version(env, tmp_path):
    """What the scheduler, the services and an operator's run-task start must exist in the image
    with those options: weward-pipeline's argparse, dagster's click commands, parsed not run."""
    rendering = render(env)
    assert {f"weward-{env}-{n}" for n in ("export", "redact", "erase", "dagster-webserver", "dagster-daemon")} <= set(
        rendering.task_definitions
    )
    for family, task in rendering.task_definitions.items():
        argv = argv_of(task.container, tmp_path)
        program, args = argv[0], argv[1:]
        if program == "weward-pipeline":
            try:
                parsed = cli.build_parser().parse_args(args)
            except SystemExit:
                pytest.fail(f"{family}: weward-pipeline {' '.join(args)} does not parse")
            assert callable(parsed.handler), family
        else:
            context = parse_click(console_script_command(program), program, args)
            assert context.command.callback is not None, family
            if context.info_name == "materialize":
                assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", context.params["partition"]), family
            if context.info_name == "execute" and "job_name" in context.params:
                assert context.params["job_name"] == "gdpr_erasure", family
                (config,) = context.params["config"]
                assert yaml.safe_load(Path(config).read_text()) == yaml.safe_load(ERASURE_RUN_CONFIG)


def dagster_yaml_env_vars(node) -> set[str]:
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {node["env"]}
        return {name for value in node.values() for name in dagster_yaml_env_vars(value)}
    if isinstance(node, list):
        return {name for value in node for name in dagster_yaml_env_vars(value)}
    return set()


PLACEHOLDERS = {"WEWARD_PII_KEY": "k" * 48, "DAGSTER_PG_PASSWORD": "placeholder"}


@pytest.mark.parametrize("env", ENVS)
def test_each_task_environment_satisfies_the_configuration_contract(env):
    """Settings.from_env accepts what each run worker gets (secrets as placeholders), and every
    variable deploy/dagster.yaml reads is set in every task that loads it."""
    rendering = render(env)
    instance_vars = dagster_yaml_env_vars(yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text()))
    for family, task in rendering.task_definitions.items():
        container = task.container
        environment = {
            **container.environment,
            **{
                name: PLACEHOLDERS.get(name, f"postgresql://{name.lower()}:secret@db.invalid:5432/app")
                for name in container.secrets
            },
        }
        missing = instance_vars - set(environment)
        assert not missing, f"{family}: deploy/dagster.yaml reads {sorted(missing)}, which the task does not set"
        if "-dagster-" in family:
            continue
        settings = Settings.from_env(environment)
        assert f"s3://{settings.lake.bucket}/{settings.lake.prefix}" == rendering.outputs["lake_url"], family
        assert environment["WEWARD_TABLES_FILE"] == "/opt/weward/tables.yaml"
    redact = rendering.task_definitions[f"weward-{env}-redact"].container
    assert redact.secrets["WEWARD_PG_URL"] == redact.secrets["WEWARD_PG_REDACT_URL"]
