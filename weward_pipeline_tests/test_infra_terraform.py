"""Invariants of infra/ that checkov does not check, read from the Terraform itself.

Settings are asserted where they are written (every .tf file parsed with python-hcl2); what is
computed, the policy documents above all, is asserted on Terraform's own rendering of the
environment (terraform_render.render: the prod root planned against a mock AWS provider). The
names taken from deploy/<env>.env are evaluated by `terraform console` on the provider-less
pipeline_env module. terraform and the AWS provider mirror are required: their absence fails.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from pathlib import Path

import hcl2
import pytest
import yaml

from weward_pipeline import cli
from weward_pipeline.cli.redact import DEFAULT_LOOKBACK_DAYS, cmd_redact_due
from weward_pipeline.config import SAMPLE_CATALOG, Settings
from weward_pipeline.defs.redaction import REDACTION_TASK_DEFINITION_ENV
from weward_pipeline_tests.terraform_render import (
    ENVS,
    REHEARSAL,
    VARIANTS,
    Rendering,
    TerraformUnavailable,
    check_in_background,
    checked,
    read_env_file,
    rehearsal_run,
    render,
    require_terraform,
    terraform_directories,
)

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
MODULES = INFRA / "modules"
STACK = MODULES / "pipeline_stack"  # the body both environment roots call

# What production must be, from the issue that created deploy/prod.env. If one of these changes,
# it changes here, in deploy/prod.env, and nowhere else.
PRODUCTION = {
    "AWS_REGION": "eu-west-3",
    "WEWARD_LAKE_URL": "s3://weward-lake-prod/lake",
    "WEWARD_GLUE_DATABASE": "weward_lake",
    "WEWARD_ATHENA_WORKGROUP": "weward-analysts",
    "WEWARD_ATHENA_OUTPUT": "s3://weward-athena-results-prod/results",
    "WEWARD_PG_URL_SECRET": "weward/pipeline/pg-export-url",
    "WEWARD_PG_REDACT_URL_SECRET": "weward/pipeline/pg-redact-url",
    "WEWARD_PII_KEY_SECRET": "weward/pipeline/pii-key",
    "WEWARD_PG_ERASE_URL_SECRET": "weward/pipeline/pg-erase-url",
}

# Actions AWS authorizes only on "*" (no resource-level permissions). Nothing else may be granted
# on "*" outside a key policy, where "*" means the key itself.
ACTIONS_WITHOUT_RESOURCE_LEVEL_PERMISSIONS = {
    "ecr:GetAuthorizationToken",
    "ecs:DescribeTaskDefinition",
    "ec2:DescribeNetworkInterfaces",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
}

OPTIONS = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)


@functools.cache
def parse(path: Path) -> dict:
    with path.open() as f:
        return hcl2.load(f, serialization_options=OPTIONS)


def tf_files() -> list[Path]:
    return sorted(p for p in INFRA.rglob("*.tf") if ".terraform" not in p.parts)


def blocks(directory: Path, kind: str) -> dict[tuple[str, str], dict]:
    """`resource` or `data` blocks of one module directory, by (type, name)."""
    found = {}
    for path in sorted(directory.glob("*.tf")):
        for entry in parse(path).get(kind, []):
            for type_, named in entry.items():
                for name, body in named.items():
                    found[(type_, name)] = body
    return found


def module_calls(directory: Path) -> dict[str, dict]:
    found = {}
    for path in sorted(directory.glob("*.tf")):
        for entry in parse(path).get("module", []):
            found.update(entry)
    return found


def variables(directory: Path) -> dict[str, dict]:
    found = {}
    for path in sorted(directory.glob("*.tf")):
        for entry in parse(path).get("variable", []):
            found.update(entry)
    return found


def single(body: dict, key: str) -> dict:
    """A nested block that appears once (hcl2 gives blocks as lists)."""
    value = body[key]
    assert isinstance(value, list) and len(value) == 1, f"expected one {key} block, got {value!r}"
    return value[0]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def catalog_timezone() -> str:
    """The `timezone` of the sample table catalog, which the pipeline's partitions follow."""
    if SAMPLE_CATALOG.exists():
        timezone = yaml.safe_load(SAMPLE_CATALOG.read_text()).get("timezone")
        assert timezone, f"{SAMPLE_CATALOG} has no `timezone`"
        return timezone
    return "Europe/Paris"


def module_locals(directory: Path) -> dict:
    found = {}
    for path in sorted(directory.glob("*.tf")):
        for entry in parse(path).get("locals", []):
            found.update(entry)
    return found


def policy_statements(rendering: Rendering) -> list[tuple[str, dict]]:
    """Every statement of every policy Terraform renders: role policies, bucket and key policies."""
    found = [(f"role {role.name}", s) for role in rendering.roles.values() for s in role.statements()]
    found += [(f"bucket {b}", s) for b, doc in rendering.bucket_policies.items() for s in as_list(doc["Statement"])]
    found += [(f"key {k}", s) for k, doc in rendering.key_policies.items() for s in as_list(doc["Statement"])]
    return found


def conditions(statement: dict) -> dict[tuple[str, str], list]:
    """{(operator, key): values} of a statement's Condition."""
    return {
        (op, key): as_list(values)
        for op, keys in statement.get("Condition", {}).items()
        for key, values in keys.items()
    }


# ---------------------------------------------------------------------------------------------


def test_every_terraform_file_parses_modules_included():
    files = tf_files()
    parsed_modules = {p.parent.name for p in files if p.parent.parent == MODULES}
    assert {"kms", "data_lake", "catalog", "export_job", "schedule", "iam", "dagster_service"} <= parsed_modules
    for path in files:
        assert isinstance(parse(path), dict), path


def test_every_bucket_is_private_encrypted_versioned_tls_only_and_expires_old_versions():
    lake_module = MODULES / "data_lake"
    resources = blocks(lake_module, "resource")
    buckets = [name for (type_, name) in resources if type_ == "aws_s3_bucket"]
    assert sorted(buckets) == ["access_logs", "athena_results", "lake"]
    every_bucket_in_infra = [
        (path, name)
        for path in tf_files()
        for entry in parse(path).get("resource", [])
        for type_, named in entry.items()
        if type_ == "aws_s3_bucket"
        for name in named
    ]
    assert all(path.parent == lake_module for path, _ in every_bucket_in_infra), (
        "buckets outside modules/data_lake escape these checks",
        every_bucket_in_infra,
    )

    for bucket in buckets:
        ref = f"${{aws_s3_bucket.{bucket}.id}}"

        def companion(type_: str, ref: str = ref, bucket: str = bucket) -> dict:
            matches = [body for (t, _), body in resources.items() if t == type_ and body.get("bucket") == ref]
            assert len(matches) == 1, f"bucket {bucket}: expected one {type_}, found {len(matches)}"
            return matches[0]

        public = companion("aws_s3_bucket_public_access_block")
        for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
            assert public[flag] is True, (bucket, flag)

        assert (
            single(companion("aws_s3_bucket_ownership_controls"), "rule")["object_ownership"] == "BucketOwnerEnforced"
        )
        assert single(companion("aws_s3_bucket_versioning"), "versioning_configuration")["status"] == "Enabled"

        rule = single(companion("aws_s3_bucket_server_side_encryption_configuration"), "rule")
        default = single(rule, "apply_server_side_encryption_by_default")
        if bucket == "access_logs":
            # S3 log delivery cannot write to SSE-KMS buckets; SSE-S3 is the only option.
            assert default["sse_algorithm"] == "AES256"
        else:
            assert default["sse_algorithm"] == "aws:kms"
            assert default["kms_master_key_id"] == "${var.kms_key_arn}"
            assert rule["bucket_key_enabled"] is True

        rules = companion("aws_s3_bucket_lifecycle_configuration")["rule"]
        assert any(
            r["status"] == "Enabled"
            and single(r, "noncurrent_version_expiration")["noncurrent_days"]
            == "${var.noncurrent_version_expiration_days}"
            for r in rules
        ), f"bucket {bucket}: noncurrent versions must expire after var.noncurrent_version_expiration_days"
        assert all("abort_incomplete_multipart_upload" in r for r in rules if "noncurrent_version_expiration" in r)

        if bucket != "access_logs":
            assert companion("aws_s3_bucket_logging")["target_bucket"] == "${aws_s3_bucket.access_logs.id}"


@pytest.mark.parametrize("env", ENVS)
def test_every_bucket_policy_denies_plain_http_and_puts_with_another_key(env):
    rendering = render(env)
    buckets = {r.values["bucket"] for r in rendering.resources("aws_s3_bucket")}
    assert set(rendering.bucket_policies) == buckets and len(buckets) == 3
    (key_arn,) = rendering.key_policies
    for bucket, document in rendering.bucket_policies.items():
        arn = f"arn:aws:s3:::{bucket}"
        denies = [s for s in as_list(document["Statement"]) if s["Effect"] == "Deny"]
        tls = [s for s in denies if conditions(s) == {("Bool", "aws:SecureTransport"): ["false"]}]
        assert len(tls) == 1 and tls[0]["Principal"] == "*", f"bucket {bucket}: no TLS-only statement"
        assert tls[0]["Action"] == "s3:*" and sorted(as_list(tls[0]["Resource"])) == [arn, f"{arn}/*"], (
            f"bucket {bucket}: the TLS rule must cover bucket and objects"
        )
        if bucket.startswith("weward-s3-access-logs"):
            continue  # S3 log delivery cannot write to SSE-KMS buckets: SSE-S3 there.
        puts = {
            s["Sid"]: conditions(s) for s in denies if s["Action"] == "s3:PutObject" and s["Resource"] == f"{arn}/*"
        }
        assert puts == {
            "DenyPutsAskingForAnotherEncryption": {("StringNotEquals", SSE): ["aws:kms"], ("Null", SSE): ["false"]},
            "DenyPutsAskingForAnotherKmsKey": {("StringNotEquals", SSE_KEY): [key_arn], ("Null", SSE_KEY): ["false"]},
            "DenyKmsPutsNamingNoKey": {("Null", SSE): ["false"], ("Null", SSE_KEY): ["true"]},
        }, f"bucket {bucket}: puts asking for another encryption, another key or no key must be denied"


SSE, SSE_KEY = "s3:x-amz-server-side-encryption", "s3:x-amz-server-side-encryption-aws-kms-key-id"


@pytest.mark.parametrize("env", ENVS)
def test_a_put_that_asks_for_no_encryption_is_never_denied_it_gets_the_bucket_default(env):
    """pyarrow's S3 client and boto3 send no encryption header (nor does any UploadPart); the
    bucket's default encryption (the lake key, bucket key on) encrypts those puts. A Deny with
    `StringNotEqualsIfExists` on a header matches when the header is absent: it refused every
    put of the pipeline. Every Deny on puts must require an encryption header to be present."""
    rendering = render(env)
    for bucket, document in rendering.bucket_policies.items():
        for statement in as_list(document["Statement"]):
            if statement["Effect"] != "Deny":
                continue
            operators = set(statement.get("Condition", {}))
            assert not [op for op in operators if op.endswith("IfExists")], (
                f"bucket {bucket}: {statement['Sid']} uses {sorted(operators)}: in a Deny, ...IfExists matches "
                f"requests without the key"
            )
            if "s3:PutObject" not in as_list(statement["Action"]) and statement["Action"] != "s3:*":
                continue
            if conditions(statement) == {("Bool", "aws:SecureTransport"): ["false"]}:
                continue  # plain HTTP: refused whatever the headers
            present = [
                key for (op, key), values in conditions(statement).items() if op == "Null" and values == ["false"]
            ]
            assert set(present) & {SSE, SSE_KEY}, (
                f"bucket {bucket}: {statement['Sid']} denies puts that carry no encryption header"
            )
    for bucket in ("lake", "athena_results"):
        (encryption,) = [
            r
            for r in rendering.resources("aws_s3_bucket_server_side_encryption_configuration")
            if r.address.endswith(f"aws_s3_bucket_server_side_encryption_configuration.{bucket}")
        ]
        rule = encryption.values["rule"][0]
        assert rule["bucket_key_enabled"] is True
        assert rule["apply_server_side_encryption_by_default"][0] == {
            "sse_algorithm": "aws:kms",
            "kms_master_key_id": next(iter(rendering.key_policies)),
        }


def test_noncurrent_versions_expire_within_a_month_everywhere():
    variable = variables(MODULES / "data_lake")["noncurrent_version_expiration_days"]
    assert variable["default"] <= 30
    assert "validation" in variable
    for env in ENVS:
        assert variables(INFRA / "envs" / env)["noncurrent_version_expiration_days"]["default"] <= 30


def test_no_allow_statement_grants_a_wildcard_action():
    offenders, checked = [], 0
    for where, statement in policy_statements(render("prod")):
        if statement["Effect"] == "Deny":
            continue  # Deny s3:* (TLS only) restricts; it grants nothing.
        assert "NotAction" not in statement and "NotResource" not in statement, (where, statement.get("Sid"))
        for action in as_list(statement["Action"]):
            checked += 1
            if "*" in action:
                offenders.append((where, statement.get("Sid"), action))
    assert checked > 100, "too few actions rendered: these checks would be vacuous"
    assert not offenders


def test_only_actions_without_resource_level_permissions_are_granted_on_star():
    offenders = []
    for where, statement in policy_statements(render("prod")):
        if statement["Effect"] == "Deny" or "*" not in as_list(statement["Resource"]):
            continue
        if where.startswith("key "):
            continue  # In a key policy "*" is the key itself.
        extra = set(as_list(statement["Action"])) - ACTIONS_WITHOUT_RESOURCE_LEVEL_PERMISSIONS
        if extra:
            offenders.append((where, statement.get("Sid"), sorted(extra)))
    assert not offenders


def test_the_redaction_role_writes_only_its_step_logs_and_its_own_audit():
    """Redaction may not change the export (data, keys, manifests); it adds write-once audit objects
    under <lake prefix>/_audit/redaction/ (the keys each batch deleted, carry-over's proof)."""
    role = render("prod").roles["weward-prod-redaction"]
    actions = {a for s in role.statements() for a in as_list(s["Action"])}
    s3_actions = {a for a in actions if a.startswith("s3:")}
    assert s3_actions == {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation", "s3:PutObject"}
    writes = [s for s in role.statements() if "s3:PutObject" in as_list(s["Action"])]
    assert sorted(r for s in writes for r in as_list(s["Resource"])) == [
        "arn:aws:s3:::weward-lake-prod/_dagster/compute-logs/*",
        "arn:aws:s3:::weward-lake-prod/lake/_audit/redaction/*",
    ], "the redaction writes its step logs and its audit, nothing else"
    glue_actions = {a for a in actions if a.startswith("glue:")}
    assert glue_actions and all(a.startswith(("glue:Get", "glue:BatchGet")) for a in glue_actions)


def test_lake_access_is_scoped_to_the_prefix_the_database_and_the_key():
    rendering = render("prod")
    (key_arn,) = rendering.key_policies
    lake_objects, results_objects = (
        "arn:aws:s3:::weward-lake-prod/lake/*",
        "arn:aws:s3:::weward-athena-results-prod/results/*",
    )
    compute_logs = "arn:aws:s3:::weward-lake-prod/_dagster/compute-logs/*"
    glue = [
        f"arn:aws:glue:eu-west-3:123456789012:{part}"
        for part in ("catalog", "database/weward_lake", "table/weward_lake/*")
    ]
    for name in ("weward-prod-export", "weward-prod-redaction", "weward-prod-analyst"):
        for statement in rendering.roles[name].statements():
            resources, actions = as_list(statement["Resource"]), as_list(statement["Action"])
            if any(a in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject") for a in actions):
                allowed = (lake_objects, results_objects, compute_logs)
                if name == "weward-prod-redaction":  # its write-once audit, inside the lake prefix
                    allowed += ("arn:aws:s3:::weward-lake-prod/lake/_audit/redaction/*",)
                assert all(r in allowed for r in resources), (name, statement)
            if "s3:ListBucket" in actions:  # a prefix under the lake's or the logs', never none
                assert set(conditions(statement)) == {("StringLike", "s3:prefix")}, (name, statement)
                for prefix in conditions(statement).get(("StringLike", "s3:prefix"), []):
                    assert prefix.split("/")[0] in ("lake", "results", "_dagster"), (name, statement)
            if any(a.startswith("glue:") for a in actions):
                assert resources == glue, (name, statement)
            if any(a.startswith("kms:") for a in actions):
                assert resources == [key_arn], (name, statement)


def test_the_kms_key_rotates():
    key = blocks(MODULES / "kms", "resource")[("aws_kms_key", "this")]
    assert key["enable_key_rotation"] is True


def test_athena_workgroup_enforces_its_configuration_encrypts_results_and_caps_scans():
    workgroup = blocks(MODULES / "catalog", "resource")[("aws_athena_workgroup", "analysts")]
    config = single(workgroup, "configuration")
    assert config["enforce_workgroup_configuration"] is True
    assert config["bytes_scanned_cutoff_per_query"] == "${var.bytes_scanned_cutoff_per_query}"
    encryption = single(single(config, "result_configuration"), "encryption_configuration")
    assert encryption == {"encryption_option": "SSE_KMS", "kms_key_arn": "${var.kms_key_arn}"}
    glue = blocks(MODULES / "catalog", "resource")[("aws_glue_data_catalog_encryption_settings", "this")]
    at_rest = single(single(glue, "data_catalog_encryption_settings"), "encryption_at_rest")
    assert at_rest["catalog_encryption_mode"] == "SSE-KMS"


def test_the_run_worker_reaches_only_postgres_and_the_vpc_endpoints():
    resources = blocks(MODULES / "export_job", "resource")
    rules = {name: body for (type_, name), body in resources.items() if type_.startswith("aws_vpc_security_group_")}
    worker_rules = {n: b for n, b in rules.items() if b["security_group_id"] == "${aws_security_group.run_worker.id}"}
    assert not [n for (t, n) in resources if t == "aws_vpc_security_group_ingress_rule" and n in worker_rules]
    destinations = {
        name: body.get("referenced_security_group_id") or body.get("prefix_list_id") or body.get("cidr_ipv4")
        for name, body in worker_rules.items()
    }
    assert destinations == {
        "postgres": "${var.postgres_security_group_id}",
        "vpc_endpoints": "${var.vpc_endpoint_security_group_id}",
        "s3_gateway": "${var.s3_prefix_list_id}",
    }
    assert "ingress" not in resources[("aws_security_group", "run_worker")]
    assert "egress" not in resources[("aws_security_group", "run_worker")]


def test_the_log_group_is_encrypted_and_tasks_run_read_only():
    resources = blocks(MODULES / "export_job", "resource")
    assert resources[("aws_cloudwatch_log_group", "run_worker")]["kms_key_id"] == "${var.kms_key_arn}"
    text = (MODULES / "export_job" / "main.tf").read_text()
    assert "readonlyRootFilesystem = true" in text
    assert re.search(
        r"secrets\s+=\s+\[for name, secret in each.value.secrets : \{ name = name, valueFrom = var.secret_arns\[secret\] \}\]",
        text,
    )


def test_the_scheduled_redaction_runs_redact_due_not_yesterday():
    """Yesterday is always inside the retention: materializing it refused every day, and nothing was
    ever redacted. The task runs the command that redacts every due day within the lookback."""
    stack = module_locals(STACK)
    command = stack["redact_command"]
    assert command == ["weward-pipeline", "redact-due", "--lookback-days", "${tostring(var.redact_lookback_days)}"]
    assert not [part for part in command if "yesterday" in part or "--partition" in part or "materialize" in part]
    assert "${local.yesterday}" in stack["export_command"][2]  # the export still takes yesterday
    assert module_calls(STACK)["export_job"]["redact_command"] == "${local.redact_command}"
    for env in ENVS:
        variable = variables(INFRA / "envs" / env)["redact_lookback_days"]
        assert variable["default"] == DEFAULT_LOOKBACK_DAYS and "validation" in variable
        assert "redact_selection" not in variables(INFRA / "envs" / env)
    # The image's console script has the command, with that option.
    args = cli.build_parser().parse_args(["redact-due", "--lookback-days", "30"])
    assert args.handler is cmd_redact_due and args.lookback_days == 30


def test_eventbridge_starts_the_redaction_only_without_the_dagster_service():
    """With the service, the daemon's sensor redacts: a second scheduler would race it."""
    assert (
        module_calls(STACK)["schedule"]["enabled_runs"] == '${var.dagster_service_enabled ? [] : ["export", "redact"]}'
    )
    schedule = blocks(MODULES / "schedule", "resource")[("aws_scheduler_schedule", "run")]
    assert schedule["state"] == '${var.enabled && contains(var.enabled_runs, each.key) ? "ENABLED" : "DISABLED"}'
    # The EC2 variant runs the export only: Terraform warns when nothing would redact.
    (check,) = [c for p in STACK.glob("*.tf") for entry in parse(p).get("check", []) for c in entry.values()]
    assert check["assert"][0]["condition"] == '${var.launch_type == "ecs_task" || var.dagster_service_enabled}'


def test_the_daemon_launches_the_sensor_s_redactions_from_the_redaction_task_definition():
    """EcsRunLauncher starts runs from the export task definition, whose role and DSN cannot DELETE."""
    service = MODULES / "dagster_service"
    environment = module_locals(service)["environment"]
    assert f"{REDACTION_TASK_DEFINITION_ENV} = var.redaction_task_definition" in environment
    rendering = render("prod")
    (launch,) = [s for s in rendering.roles["weward-prod-dagster-service"].statements() if s["Action"] == "ecs:RunTask"]
    tasks = rendering.task_definitions
    assert launch["Resource"] == [tasks[f"weward-prod-{run}"].arn for run in ("export", "redact", "erase")]
    call = module_calls(STACK)["dagster_service"]
    assert call["redaction_task_definition"] == '${module.export_job.task_definition_arns["redact"]}'
    assert call["run_worker_task_definition"] == '${module.export_job.task_definition_arns["export"]}'


def test_the_redaction_task_never_gets_the_export_credentials_or_the_pii_key():
    export_job = variables(MODULES / "export_job")
    own = export_job["redaction_secret_variables"]["default"]
    assert set(own) == {"WEWARD_PG_REDACT_URL", "DAGSTER_PG_PASSWORD"}
    # The code location's lake resource reads WEWARD_PG_URL: in this task it is the redaction DSN.
    assert export_job["redaction_secret_aliases"]["default"] == {"WEWARD_PG_URL": "WEWARD_PG_REDACT_URL"}
    assert "validation" in export_job["redaction_secret_aliases"]
    workers = module_locals(MODULES / "export_job")["workers"]
    assert workers["redact"]["secrets"] == (
        "${merge({for name in var.redaction_secret_variables : name => name}, var.redaction_secret_aliases)}"
    )


@pytest.fixture(scope="module", autouse=True)
def every_selected_directory_checked_in_the_background(request):
    """`init` + `test` of the directories this session tests start with this module, beside its
    other tests, two terraform processes at a time (terraform_render.check_in_background)."""
    selected = [
        item.callspec.params["directory"]
        for item in request.session.items
        if getattr(item, "originalname", "")
        == test_terraform_validates_and_tests_every_root_and_module_offline.__name__
    ]
    try:
        check_in_background(selected)
    except TerraformUnavailable:
        pass  # each test that needs terraform fails saying what to install


@pytest.mark.parametrize("directory", terraform_directories())
def test_terraform_validates_and_tests_every_root_and_module_offline(directory):
    """`terraform init -backend=false` from the provider mirror against the committed lock file,
    and `terraform test` (mock AWS provider, nothing leaves the machine), which validates the
    configuration before each run (a separate `terraform validate` loaded the provider once more
    for nothing). A root's rehearsal is planned once per rendering the tests read
    (terraform_render.VARIANTS), by render(). No terraform or no mirror fails here, saying what to install."""
    suites = sorted(
        (INFRA / ("envs/prod" if directory.startswith("envs/") else directory) / "tests").glob("*.tftest.hcl")
    )
    assert suites, f"infra/{directory} has no tests/*.tftest.hcl"
    run = checked(directory)
    assert run.returncode == 0 and not run.problems, run.report()
    expected = {f"tests/{suite.name}": re.findall(r'^run "(\w+)"', suite.read_text(), flags=re.M) for suite in suites}
    if directory.startswith("envs/"):
        del expected[REHEARSAL]  # planned once per rendering the tests read:
        rehearsal = rehearsal_run(directory.removeprefix("envs/"))
        assert rehearsal.returncode == 0 and not rehearsal.problems, rehearsal.report()
        assert rehearsal.runs == {REHEARSAL: list(VARIANTS)}
        assert rehearsal.summary == {"status": "pass", "passed": len(VARIANTS), "failed": 0, "errored": 0, "skipped": 0}
    assert run.runs == expected
    runs = sum(len(names) for names in expected.values())
    assert run.summary == {"status": "pass", "passed": runs, "failed": 0, "errored": 0, "skipped": 0}, run.report()


def test_every_root_and_module_pins_the_tested_aws_provider_in_a_committed_lock_file():
    """`~> 5.100`: the 5.x line the provider mirror ships; v6 changes resource schemas."""
    for directory in terraform_directories():
        versions = (INFRA / directory / "versions.tf").read_text()
        lock = INFRA / directory / ".terraform.lock.hcl"
        if "hashicorp/aws" not in versions:
            assert not lock.exists(), directory
            continue
        assert re.search(r'version\s*=\s*"~> 5\.100"', versions), f"infra/{directory}: constrain aws to ~> 5.100"
        assert lock.exists(), f"infra/{directory}: commit .terraform.lock.hcl (terraform init -backend=false)"
        assert re.search(
            r'provider "registry.terraform.io/hashicorp/aws" \{\n\s+version\s+= "5\.100\.\d+"', lock.read_text()
        )


@pytest.mark.parametrize("env", ENVS)
def test_the_schedule_fires_at_2am_in_the_table_catalog_time_zone(env):
    root = INFRA / "envs" / env
    assert module_calls(root)["pipeline"]["schedule_timezone"] == "${var.schedule_timezone}"
    assert module_calls(STACK)["schedule"]["schedule_timezone"] == "${var.schedule_timezone}"
    assert variables(root)["schedule_timezone"]["default"] == catalog_timezone()
    assert "TZ=${var.schedule_timezone}" in module_locals(STACK)["yesterday"]

    schedule_vars = variables(MODULES / "schedule")
    assert schedule_vars["export_schedule_expression"]["default"] == "cron(0 2 * * ? *)"
    for (type_, name), body in blocks(MODULES / "schedule", "resource").items():
        if type_ == "aws_scheduler_schedule":
            assert body["schedule_expression_timezone"] == "${var.schedule_timezone}", name


def test_prod_env_holds_the_production_values():
    env = read_env_file(ROOT / "deploy" / "prod.env")
    assert {key: env.get(key) for key in PRODUCTION} == PRODUCTION
    dev = read_env_file(ROOT / "deploy" / "dev.env")
    assert dev["WEWARD_GLUE_DATABASE"] == "weward_lake_dev"
    assert all(value.endswith("-dev") for key, value in dev.items() if key.endswith("_SECRET"))
    assert "-dev" in dev["WEWARD_LAKE_URL"] and "-dev" in dev["WEWARD_ATHENA_OUTPUT"]


@pytest.mark.parametrize("env", ENVS)
def test_bucket_database_and_workgroup_names_are_wired_from_the_env_file(env):
    root = INFRA / "envs" / env
    root_calls = module_calls(root)
    locals_ = parse(root / "main.tf")["locals"][0]
    assert locals_["environment"] == env
    assert root_calls["pipeline_env"]["env_file"] == "${path.module}/../../../deploy/${local.environment}.env"
    assert (root / "../../../deploy" / f"{env}.env").resolve() == ROOT / "deploy" / f"{env}.env"
    assert root_calls["pipeline"]["environment"] == "${local.environment}"
    assert root_calls["pipeline"]["pipeline_env"] == "${module.pipeline_env}"
    assert module_locals(STACK)["pipeline"] == "${var.pipeline_env}"
    calls = module_calls(STACK)
    assert calls["data_lake"]["lake_bucket_name"] == "${local.pipeline.lake_bucket}"
    assert calls["data_lake"]["athena_results_bucket_name"] == "${local.pipeline.athena_results_bucket}"
    assert calls["catalog"]["glue_database_name"] == "${local.pipeline.glue_database}"
    assert calls["catalog"]["athena_workgroup_name"] == "${local.pipeline.athena_workgroup}"
    assert calls["iam"]["lake_prefix"] == "${local.pipeline.lake_prefix}"
    assert calls["export_job"]["pipeline_env"] == "${local.pipeline.env}"
    assert calls["secrets"]["secret_names"] == "${local.pipeline.secret_names}"
    assert re.search(r"^\s*region\s*=\s*module\.pipeline_env\.aws_region$", (root / "versions.tf").read_text(), re.M)


def test_dev_and_prod_roots_differ_only_by_their_name():
    names = sorted(p.name for p in (INFRA / "envs" / "prod").glob("*.tf"))
    assert names == sorted(p.name for p in (INFRA / "envs" / "dev").glob("*.tf"))
    assert {"main.tf", "variables.tf", "outputs.tf", "versions.tf", "moved.tf"} <= set(names)
    for name in names:
        prod = (INFRA / "envs" / "prod" / name).read_text()
        dev = (INFRA / "envs" / "dev" / name).read_text()
        normalized = dev.replace('environment = "dev"', 'environment = "prod"').replace(
            "# Development:", "# Production:"
        )
        normalized = normalized.replace('environment "dev"', 'environment "prod"').replace(
            "deploy/dev.env", "deploy/prod.env"
        )
        assert normalized == prod, f"envs/dev/{name} drifted from envs/prod/{name}"


@pytest.mark.parametrize("env", ENVS)
def test_the_roots_are_thin_every_variable_reaches_the_stack_and_every_output_comes_back(env):
    """The roots hold backend, provider, name and defaults; modules/pipeline_stack holds the rest."""
    root = INFRA / "envs" / env
    root_variables, stack_variables = variables(root), variables(STACK)
    provider_only = {"tags", "aws_account_id"}  # default_tags and allowed_account_ids of the provider
    assert set(root_variables) - provider_only == set(stack_variables) - {"environment", "pipeline_env"}
    call = module_calls(root)["pipeline"]
    assert call["source"] == "../../modules/pipeline_stack"
    assert not provider_only & set(call)
    for name in set(root_variables) - provider_only:
        assert call[name] == f"${{var.{name}}}", name
    # Defaults live in the roots only: two copies could drift apart.
    assert not [name for name, body in stack_variables.items() if "default" in body]
    root_outputs = {
        name: body for p in root.glob("*.tf") for e in parse(p).get("output", []) for name, body in e.items()
    }
    stack_outputs = {name for p in STACK.glob("*.tf") for e in parse(p).get("output", []) for name in e}
    assert set(root_outputs) == stack_outputs
    assert all(body["value"] == f"${{module.pipeline.{name}}}" for name, body in root_outputs.items())
    assert set(module_calls(root)) == {"pipeline_env", "pipeline"}
    assert not [p for p in root.glob("*.tf") if parse(p).get("resource") or parse(p).get("data")]


@pytest.mark.parametrize("env", ENVS)
def test_the_provider_refuses_credentials_of_any_other_account(env):
    """Defect 7: without allowed_account_ids, a shell holding another account's credentials (dev's,
    say) plans and applies this environment's resources into that account."""
    root = INFRA / "envs" / env
    (provider,) = [entry["aws"] for entry in parse(root / "versions.tf")["provider"]]
    assert provider["allowed_account_ids"] == ["${var.aws_account_id}"]
    variable = variables(root)["aws_account_id"]
    assert "default" not in variable, "the account must be stated for each deployment, never guessed"
    assert "validation" in variable
    example = (root / "terraform.tfvars.example").read_text()
    assert re.search(r'^aws_account_id\s*=\s*"\d{12}"', example, re.M)


@pytest.mark.parametrize("env", ENVS)
def test_state_written_before_the_stack_module_moves_with_it(env):
    """Every module the stack calls had been called by the root itself: a moved block per module
    carries its resources over, so the first apply after the refactor replaces nothing."""
    moves = {(m["from"], m["to"]) for m in parse(INFRA / "envs" / env / "moved.tf")["moved"]}
    stack_modules = set(module_calls(STACK))
    added_after_the_move = {"alerts"}
    assert moves == {
        (f"${{module.{m}}}", f"${{module.pipeline.module.{m}}}") for m in stack_modules - added_after_the_move
    }


@pytest.mark.parametrize("env", ENVS)
def test_terraform_reads_the_names_the_pipeline_reads(env, tmp_path):
    """Evaluates modules/pipeline_env on deploy/<env>.env and compares with the pipeline's parser."""
    require_terraform()
    env_file = ROOT / "deploy" / f"{env}.env"
    (tmp_path / "main.tf").write_text(
        f'module "pipeline_env" {{\n  source   = "{MODULES / "pipeline_env"}"\n  env_file = "{env_file}"\n}}\n'
    )
    run_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "TF_IN_AUTOMATION": "1", "HOME": str(tmp_path)}
    subprocess.run(
        ["terraform", "init", "-backend=false", "-input=false"],
        cwd=tmp_path,
        env=run_env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    # Non-interactive `terraform console` prints only the last expression's value: ask for one.
    console = subprocess.run(
        ["terraform", "console"],
        cwd=tmp_path,
        env=run_env,
        input="jsonencode(module.pipeline_env)\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    terraform = json.loads(json.loads(console.stdout.strip().splitlines()[-1]))

    file_env = read_env_file(env_file)
    pipeline = Settings.from_env({**file_env, "WEWARD_PG_URL": "postgresql://export@db.invalid/app"})
    assert terraform["lake_bucket"] == pipeline.lake.bucket
    assert terraform["lake_prefix"] == pipeline.lake.prefix
    assert terraform["glue_database"] == pipeline.glue_database
    assert terraform["aws_region"] == pipeline.aws_region
    assert (
        f"s3://{terraform['athena_results_bucket']}/{terraform['athena_results_prefix']}"
        == file_env["WEWARD_ATHENA_OUTPUT"]
    )
    assert terraform["athena_workgroup"] == file_env["WEWARD_ATHENA_WORKGROUP"]
    if env == "prod":
        assert (terraform["lake_bucket"], terraform["glue_database"], terraform["athena_results_bucket"]) == (
            "weward-lake-prod",
            "weward_lake",
            "weward-athena-results-prod",
        )


def test_the_readme_documents_every_variable_and_output_of_the_environments():
    readme = (INFRA / "README.md").read_text()
    root = INFRA / "envs" / "prod"
    outputs = {name for path in root.glob("*.tf") for entry in parse(path).get("output", []) for name in entry}
    undocumented = [name for name in [*variables(root), *outputs] if f"| `{name}` |" not in readme]
    assert not undocumented, f"add to infra/README.md: {undocumented}"
    assert "```mermaid" in readme


def test_the_ec2_variant_boot_script_renders_to_valid_bash_that_quotes_the_command(tmp_path):
    require_terraform()
    template = MODULES / "schedule" / "run-on-boot.sh.tftpl"
    command = ["sh", "-c", "exec dagster asset materialize --select 'key:lake/*' --partition \"$(date)\""]
    quoted = 'join(" ", [for part in %s : format("\'%%s\'", replace(part, "\'", "\'\\\\\'\'"))])' % json.dumps(command)  # noqa: UP031 - the HCL holds a literal %s
    main_tf = (MODULES / "schedule" / "main.tf").read_text()
    assert (
        'command       = join(" ", [for part in var.ec2_command : format("\'%s\'", replace(part, "\'", "\'\\\\\'\'"))])'
        in main_tf
    )
    expression = (
        f'templatefile("{template}", {{region = "eu-west-3", image = "registry/run-worker:t", command = {quoted}, '
        'environment = {A = "1"}, secret_arns = {WEWARD_PG_URL = "arn:secret"}, log_group = "/weward-prod/run-worker", '
        'registry_host = "registry"})'
    )
    (tmp_path / "main.tf").write_text("")
    run_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}
    console = subprocess.run(
        ["terraform", "console"],
        cwd=tmp_path,
        env=run_env,
        input=f"jsonencode({expression})\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    script = json.loads(json.loads(console.stdout.strip().splitlines()[-1]))
    inner = script.split("<<'SCRIPT'\n", 1)[1].split("\nSCRIPT\n", 1)[0]
    for text in (script, inner):
        subprocess.run(["bash", "-n"], input=text, text=True, check=True)
    # The command survives the shell: bash splits it back into the original arguments.
    docker_line = next(line for line in inner.splitlines() if line.startswith("  registry/run-worker:t"))
    argv = subprocess.run(
        ["bash", "-c", f"printf '%s\\0' {docker_line.split(' ', 3)[3]}"], capture_output=True, text=True, check=True
    ).stdout.split("\0")[:-1]
    assert argv == command
