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
from pathlib import Path

import boto3
import pytest

from weward_pipeline.config import Settings, load_catalog, SAMPLE_CATALOG
from weward_pipeline.export import AwsClients, export_day
from weward_pipeline.secret_store import PiiKey
from weward_pipeline_tests.rehearsal.authz import Account, Environment
from weward_pipeline_tests.rehearsal.check import denials, report
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
    settings = Settings.from_env({**prod, "WEWARD_PG_URL": sample_database, "AWS_ENDPOINT_URL": recording_proxy.endpoint_url})
    aws_server.create_bucket(settings.lake.bucket)  # what Terraform creates: the bucket and the Glue database
    ensure_glue_database(aws_server.endpoint_url, settings.aws_region, settings.glue_database)
    catalog = load_catalog(SAMPLE_CATALOG)
    table = catalog.table("step_events")
    job = "export-inprocess"
    with environment({**job_credentials(job), "AWS_ENDPOINT_URL": recording_proxy.endpoint_url}):
        export_day(settings, catalog, table, DAY, clients=AwsClients.from_settings(settings),
                   pii_key=PiiKey(b"k" * 48, "rehearsal"))
    return recording_proxy.for_job(job)


def old_policy():
    old = json.loads((FIXTURES / "main_export_policy.json").read_text())
    env = Environment(Account("123456789012", "eu-west-3"), bucket_keys={"weward-lake-prod": old["lake_bucket_key"]})
    return old, env


def test_the_rehearsal_catches_defect_2_head_bucket_under_a_prefix_conditioned_list_bucket(recording_proxy, export_recording):
    """main's check_lake_reachable called head_bucket; main's export role allowed s3:ListBucket only
    under an s3:prefix condition. Replaying that call, the rehearsal denies it and says why."""
    old, env = old_policy()
    job = "export-main-probe"
    s3 = boto3.client("s3", endpoint_url=recording_proxy.endpoint_url, region_name="eu-west-3",
                      **{k.lower(): v for k, v in job_credentials(job).items()})
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
    assert (first.method, first.path, first.query_dict()["prefix"], first.query_dict()["max-keys"]) == \
        ("GET", "/weward-lake-prod", "lake/", "1"), first.describe()
    found = denials("export", export_recording, [old["policy"]], old["role"], env)
    assert found == [], report(found)


# -- The rehearsal proper: every job under its rendered task, every call against its role --------

PROD_FAMILIES = {"export": "weward-prod-export", "redact-due": "weward-prod-redact"}


@pytest.fixture(scope="module")
def production():
    from weward_pipeline_tests.terraform_render import render

    return render("prod")


@pytest.fixture(scope="module")
def rehearsal(production, pg_server, aws_server, recording_proxy, stack_dir):
    """Each job run once, as its ECS task: a backfill of a day past retention (the export task with
    a RunTask command override), the scheduled export (yesterday), then the scheduled redact-due,
    which redacts the backfilled day. Requests are recorded per job."""
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
    backfill = ["dagster", "asset", "materialize", "-m", "weward_pipeline.definitions", "--select", "key:lake/step_events",
                "--partition", stage.old_day.isoformat()]
    stage.run("export-backfill", runtime.TaskRuntime.from_rendered(export, command=backfill), image)
    stage.run("export", runtime.TaskRuntime.from_rendered(export), image)
    stage.run("redact-due", runtime.TaskRuntime.from_rendered(production.task_definitions[PROD_FAMILIES["redact-due"]]), image)
    return stage


def test_every_job_runs_under_its_rendered_task_runtime(rehearsal):
    failures = [run.failure() for run in rehearsal.runs.values() if run.failure()]
    assert not failures, "\n\n".join(failures)


def test_every_recorded_call_is_allowed_for_the_role_its_task_runs_as(rehearsal, production):
    from weward_pipeline_tests.terraform_render import ACCOUNT_ID, REGION

    lake_bucket = "weward-lake-prod"
    (key_arn,) = production.key_policies
    env = Environment(Account(ACCOUNT_ID, REGION), bucket_keys={lake_bucket: key_arn}, secret_arns=dict(production.secrets))
    found = []
    for job, run in rehearsal.runs.items():
        role = production.role_by_arn(run.task.role)
        policies = list(role.policies.values()) + [production.bucket_policies[lake_bucket]]
        found += denials(job, rehearsal.proxy.for_job(job), policies, role.arn, env)
    assert rehearsal.proxy.for_job("export"), "the export sent nothing through the proxy"
    assert not found, report(found)
