"""The production rehearsal: every AWS call each job makes is allowed by the policy Terraform
renders for the role its task runs as (issue 11).

Requests are recorded by the proxy in front of moto (weward_pipeline_tests/rehearsal/), mapped to
IAM authorizations the way AWS makes them, and evaluated by the rehearsal's IAM evaluator.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
from pathlib import Path
from urllib.parse import parse_qsl

import boto3
import psycopg
import pytest
from psycopg import sql

from weward_pipeline.config import SAMPLE_CATALOG, Settings, load_catalog
from weward_pipeline.export import AwsClients, export_day
from weward_pipeline.secret_store import PiiKey
from weward_pipeline_tests.conftest import materialize_command
from weward_pipeline_tests.rehearsal.authz import Account, Environment, Workgroup
from weward_pipeline_tests.rehearsal.check import denials, report
from weward_pipeline_tests.rehearsal.ecs import TaskMetadataEndpoint, create_ecs
from weward_pipeline_tests.rehearsal.proxy import job_credentials
from weward_pipeline_tests.rehearsal.stage import ensure_glue_database, read_env_file

FIXTURES = Path(__file__).parent / "rehearsal" / "fixtures"
DAY = dt.date(2024, 3, 30)


@contextlib.contextmanager
def environment(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def export_recording(recording_proxy, aws_server, sample_database):
    """One table of yesterday's export under production's names (deploy/prod.env), through the proxy,
    signed as job `export-inprocess`; returns its recorded requests."""
    prod = read_env_file()
    settings = Settings.from_env(
        {**prod, "WEWARD_PG_URL": sample_database, "AWS_ENDPOINT_URL": recording_proxy.endpoint_url}
    )
    aws_server.create_bucket(settings.lake.bucket)  # what Terraform creates: the bucket and the Glue database
    ensure_glue_database(aws_server.endpoint_url, settings.aws_region, settings.glue_database)
    catalog = load_catalog(SAMPLE_CATALOG)
    table = catalog.table("step_events")
    job = "export-inprocess"
    with environment({**job_credentials(job), "AWS_ENDPOINT_URL": recording_proxy.endpoint_url}):
        export_day(
            settings,
            catalog,
            table,
            DAY,
            clients=AwsClients.from_settings(settings),
            pii_key=PiiKey(b"k" * 48, "rehearsal"),
        )
    return recording_proxy.for_job(job)


def old_policy():
    old = json.loads((FIXTURES / "main_export_policy.json").read_text())
    env = Environment(Account("123456789012", "eu-west-3"), bucket_keys={"weward-lake-prod": old["lake_bucket_key"]})
    return old, env


def test_the_rehearsal_catches_defect_2_head_bucket_under_a_prefix_conditioned_list_bucket(
    recording_proxy, export_recording
):
    """main's check_lake_reachable called head_bucket; main's export role allowed s3:ListBucket only
    under an s3:prefix condition. Replaying that call, the rehearsal denies it and says why."""
    old, env = old_policy()
    job = "export-main-probe"
    s3 = boto3.client(
        "s3",
        endpoint_url=recording_proxy.endpoint_url,
        region_name="eu-west-3",
        **{k.lower(): v for k, v in job_credentials(job).items()},
    )
    s3.head_bucket(Bucket="weward-lake-prod")  # main's probe, verbatim

    found = denials("export", recording_proxy.for_job(job), [old["policy"]], old["role"], env)

    assert [str(d) for d in found] == [
        "job export: HEAD /weward-lake-prod -> 200 (boto3) [s3:HeadBucket] needs s3:ListBucket on arn:aws:s3:::weward-lake-prod "
        "(HeadBucket is authorized as s3:ListBucket without s3:prefix): implicit deny "
        "for role arn:aws:iam::123456789012:role/weward-prod-export"
    ]


def test_the_export_probes_the_lake_within_what_the_prefix_conditioned_grant_allows(export_recording):
    """Defect 2's fix in the code: the probe is a one-key listing under the lake prefix, so the
    export (boto3 and pyarrow alike) needs nothing outside the lake prefix, even under main's policy."""
    old, env = old_policy()
    assert {r.client for r in export_recording} == {"boto3", "pyarrow"}  # both clients went through the proxy
    first = export_recording[0]
    assert (first.method, first.path, first.query_dict()["prefix"], first.query_dict()["max-keys"]) == (
        "GET",
        "/weward-lake-prod",
        "lake/",
        "1",
    ), first.describe()
    found = denials("export", export_recording, [old["policy"]], old["role"], env)
    assert found == [], report(found)


# -- The rehearsal proper: every job under its rendered task, every call against its role --------

PROD_FAMILIES = {"export": "weward-prod-export", "redact-due": "weward-prod-redact", "erase": "weward-prod-erase"}
ANALYST_ROLE = "weward-prod-analyst"
DAEMON_FAMILY = "weward-prod-dagster-daemon"
ATHENA_QUERY = "SELECT count(*) AS syncs FROM step_events"


@pytest.fixture(scope="module")
def production():
    from weward_pipeline_tests.terraform_render import render

    return render("prod")


def create_workgroup(stage, production) -> None:
    """The analysts' Athena workgroup as Terraform's aws_athena_workgroup renders it (as the admin)."""
    (workgroup,) = production.resources("aws_athena_workgroup")
    (results,) = workgroup.values["configuration"][0]["result_configuration"]
    stage.aws_server.create_bucket(results["output_location"].removeprefix("s3://").split("/")[0])
    athena = stage.admin("athena")
    if workgroup.values["name"] not in {w["Name"] for w in athena.list_work_groups()["WorkGroups"]}:
        athena.create_work_group(
            Name=workgroup.values["name"],
            Configuration={
                "ResultConfiguration": {"OutputLocation": results["output_location"]},
                "EnforceWorkGroupConfiguration": workgroup.values["configuration"][0][
                    "enforce_workgroup_configuration"
                ],
            },
        )


def rendered_workgroups(production) -> dict[str, Workgroup]:
    found = {}
    for workgroup in production.resources("aws_athena_workgroup"):
        configuration = workgroup.values["configuration"][0]
        (results,) = configuration["result_configuration"]
        encryption = (results.get("encryption_configuration") or [{}])[0]
        found[workgroup.values["name"]] = Workgroup(
            results["output_location"],
            kms_key=encryption.get("kms_key_arn") if encryption.get("encryption_option") == "SSE_KMS" else None,
            enforced=configuration["enforce_workgroup_configuration"],
        )
    return found


@pytest.fixture(scope="module")
def rehearsal(production, pg_server, aws_server, recording_proxy, stack_dir):
    """Each job run once, as its ECS task: a backfill of a day past retention (the export task with
    a RunTask command override), the scheduled export (yesterday, with its checks), the scheduled
    redact-due, which redacts the backfilled day, then an erasure of two users (the erasure task
    with its run config in a RunTask environment override, as infra/README.md says), and an
    analyst's Athena query (the CLI on their machine, as the analyst role). Requests are recorded
    per job."""
    from weward_pipeline.config import SAMPLE_CATALOG
    from weward_pipeline_tests.rehearsal import runtime
    from weward_pipeline_tests.rehearsal.stage import Stage

    if runtime.bwrap_available() is None:
        pytest.fail("bubblewrap is missing: run scripts/install-system-deps.sh (apt-get install bubblewrap)")
    base = stack_dir / "rehearsal"
    base.mkdir()
    base.chmod(0o755)
    stage = Stage.build(pg_server, aws_server, recording_proxy, base)
    image = runtime.read_dockerfile(tables_file=str(SAMPLE_CATALOG))
    export = production.task_definitions[PROD_FAMILIES["export"]]
    backfill = materialize_command("key:lake/step_events", stage.old_day.isoformat(), dagster="dagster")
    stage.run("export-backfill", runtime.TaskRuntime.from_rendered(export, command=backfill), image)
    stage.run("export", runtime.TaskRuntime.from_rendered(export), image)
    stage.run(
        "redact-due", runtime.TaskRuntime.from_rendered(production.task_definitions[PROD_FAMILIES["redact-due"]]), image
    )
    request_url, stage.erased_users = stage.put_erasure_request("T-1")
    run_config = f'ops: {{erase_users: {{config: {{request_url: "{request_url}", delete_from_postgres: true}}}}}}'
    erase = runtime.TaskRuntime.from_rendered(
        production.task_definitions[PROD_FAMILIES["erase"]], environment={"WEWARD_ERASURE_RUN_CONFIG": run_config}
    )
    stage.run("erase", erase, image)
    create_workgroup(stage, production)
    prod = read_env_file()
    analyst = {
        k: prod[k] for k in ("AWS_REGION", "WEWARD_GLUE_DATABASE", "WEWARD_ATHENA_WORKGROUP", "WEWARD_ATHENA_OUTPUT")
    }
    stage.run_cli(
        "query-athena",
        [str(Path(sys.executable).parent / "weward-pipeline"), "query", "--engine", "athena", ATHENA_QUERY],
        {**analyst, "AWS_DEFAULT_REGION": prod["AWS_REGION"]},
        production.roles[ANALYST_ROLE].arn,
    )
    # The Dagster service's launcher: the daily export and an erasure launched as the daemon does.
    ecs = create_ecs(
        aws_server.endpoint_url, prod["AWS_REGION"], production, list(PROD_FAMILIES.values()), DAEMON_FAMILY
    )
    daemon = runtime.TaskRuntime.from_rendered(production.task_definitions[DAEMON_FAMILY])
    with TaskMetadataEndpoint(ecs.cluster_arn, ecs.daemon_task_arn) as metadata:
        stage.launch(
            "launch-export",
            daemon,
            image,
            metadata.uri,
            "daily_export",
            tags={"dagster/partition": (dt.date.today() - dt.timedelta(days=1)).isoformat()},
        )
        stage.launch(
            "launch-erasure",
            daemon,
            image,
            metadata.uri,
            "gdpr_erasure",
            run_config={"ops": {"erase_users": {"config": {"request_url": request_url}}}},
        )
        stage.watch_and_stop("monitor-and-terminate", daemon, image, metadata.uri, "daily_export")
    return stage


def test_every_job_runs_under_its_rendered_task_runtime(rehearsal):
    failures = [run.failure() for run in rehearsal.runs.values() if run.failure()]
    assert not failures, "\n\n".join(failures)


def test_every_recorded_call_is_allowed_for_the_role_its_task_runs_as(rehearsal, production):
    from weward_pipeline_tests.terraform_render import ACCOUNT_ID, REGION

    prod = read_env_file()
    lake_bucket = rehearsal.lake.bucket
    results_bucket = prod["WEWARD_ATHENA_OUTPUT"].removeprefix("s3://").split("/")[0]
    (key_arn,) = production.key_policies
    env = Environment(
        Account(ACCOUNT_ID, REGION),
        bucket_keys={lake_bucket: key_arn, results_bucket: key_arn},
        secret_arns=dict(production.secrets),
        workgroups=rendered_workgroups(production),
        table_locations=rehearsal.table_locations(prod["WEWARD_GLUE_DATABASE"]),
        task_definition_roles={
            t.arn: tuple(r for r in (t.values["task_role_arn"], t.values["execution_role_arn"]) if r)
            for t in production.task_definitions.values()
        },
    )
    bucket_policies = [production.bucket_policies[b] for b in (lake_bucket, results_bucket)]
    found = []
    for job, run in rehearsal.runs.items():
        role = production.role_by_arn(run.task.role)
        found += denials(
            job, rehearsal.proxy.for_job(job), list(role.policies.values()) + bucket_policies, role.arn, env
        )
    assert not found, report(found)


def test_the_erasure_task_deleted_the_users_rows_from_postgresql_as_the_erasure_role(rehearsal):
    """Its WEWARD_PG_ERASE_URL secret holds the erasure role's DSN (roles.py: SELECT on key and user
    columns, DELETE), and the rows of the erased users are gone from every erasable table."""
    erase_dsn = rehearsal.secret_values[read_env_file()["WEWARD_PG_ERASE_URL_SECRET"]]
    assert erase_dsn.startswith("postgresql://rehearsal_erase:")
    left = {}
    with psycopg.connect(rehearsal.app_url) as conn:
        for table in load_catalog(SAMPLE_CATALOG).tables:
            if table.user_column:
                left[table.name] = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}.{} WHERE {}::text = ANY(%s)").format(
                        sql.Identifier(table.schema), sql.Identifier(table.source), sql.Identifier(table.user_column)
                    ),
                    (rehearsal.erased_users,),
                ).fetchone()[0]
    assert left and set(left.values()) == {0}, left


def test_the_rehearsal_saw_every_jobs_calls(rehearsal, production):
    """What the verdict covers: each job reached AWS through the proxy, with the calls that matter."""

    def paths(job, method=None):
        return [r.path for r in rehearsal.proxy.for_job(job) if method in (None, r.method)]

    for job in (
        "export-backfill",
        "export",
        "redact-due",
        "erase",
        "query-athena",
        "launch-export",
        "launch-erasure",
        "monitor-and-terminate",
    ):
        assert rehearsal.proxy.for_job(job), f"job {job} sent nothing through the proxy"
    # Step logs of every run worker go to S3 (deploy/dagster.yaml's compute_logs).
    for job in ("export", "redact-due", "erase"):
        assert any("/_dagster/compute-logs/" in p for p in paths(job, "PUT")), job
    # The erasure read its request, wrote its audit and rewrote versions.
    erase = rehearsal.proxy.for_job("erase")
    assert any(r.method == "GET" and "/_requests/erasure/T-1.txt" in r.path for r in erase)
    assert any(r.method == "PUT" and "/_audit/erasure/" in r.path for r in erase)
    assert any(r.query_dict().get("versions") is not None for r in erase)
    # The checks ran in the export's runs (so their calls are the export's): every blocking check
    # of every exported day passed (freshness depends on the clock, not on IAM: not asserted).
    # (PLANNED: the runs the launcher started, which moto's ECS does not execute.)
    evaluations = [e for e in rehearsal.check_evaluations() if e[1] != "freshness_check" and e[3] != "PLANNED"]
    exported = {(asset, day) for asset, _, day, _ in evaluations if asset.startswith('["lake"')}
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    tables = [t.name for t in load_catalog(SAMPLE_CATALOG).tables]
    # Six tables yesterday, step_events' backfilled day (and the days the erasure rewrote, re-verified).
    assert {(json.dumps(["lake", t]), yesterday) for t in tables} | {
        ('["lake", "step_events"]', rehearsal.old_day.isoformat())
    } <= exported
    assert {
        "glue_points_at_export",
        "glue_schema_matches_files",
        "row_count_matches_source",
        "no_rows_need_reexport",
    } <= {check for _, check, _, _ in evaluations}
    assert {status for *_, status in evaluations} == {"SUCCEEDED"}, evaluations

    def operations(job):
        return {
            r.headers.get("x-amz-target", "").split(".")[-1] or dict(parse_qsl(r.body or "")).get("Action")
            for r in rehearsal.proxy.for_job(job)
        } - {"PutObject"}

    assert {"DescribeTaskDefinition", "DescribeTasks", "DescribeNetworkInterfaces", "RunTask"} <= operations(
        "launch-export"
    )
    assert {"DescribeTasks", "StopTask"} <= operations("monitor-and-terminate")
    assert "terminated True" in rehearsal.runs["monitor-and-terminate"].result.stdout
    # The launcher started each run from its own task definition, in the cluster, with the daemon's network.
    for job, family in (("launch-export", "weward-prod-export"), ("launch-erasure", "weward-prod-erase")):
        (run_task,) = [
            r for r in rehearsal.proxy.for_job(job) if r.headers.get("x-amz-target", "").endswith(".RunTask")
        ]
        started = json.loads(run_task.response)["tasks"][0]
        assert started["taskDefinitionArn"] == production.task_definitions[family].arn, job
        assert json.loads(run_task.body)["networkConfiguration"]["awsvpcConfiguration"]["subnets"], job
    starts = [
        r
        for r in rehearsal.proxy.for_job("query-athena")
        if r.headers.get("x-amz-target") == "AmazonAthena.StartQueryExecution"
    ]
    assert [json.loads(r.body)["QueryString"] for r in starts] == [ATHENA_QUERY]
