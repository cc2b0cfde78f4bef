"""`weward-pipeline redact-due`: the daily redaction where no Dagster daemon runs the sensor.

Against the real PostgreSQL server and moto, on a Dagster instance opened the way production opens
it (`$DAGSTER_HOME/dagster.yaml` = deploy/dagster.yaml, PostgreSQL storage; only the ECS run launcher
swapped, it is not used). Time is an explicit `--now`, never waited for: the retention is set so that
2024-03-31 became due at the last local midnight, and earlier runs of the command are replayed at
earlier instants.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import sys
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg
import pytest
import yaml
from psycopg import sql

from weward_pipeline import cli
from weward_pipeline.cli.redact import LAUNCHED_BY, LAUNCHED_BY_TAG
from weward_pipeline.defs.factory import build_definitions
from weward_pipeline.defs.redaction import AUTOMATION_SENSOR
from weward_pipeline.devstack import sample_data
from weward_pipeline_tests.conftest import TIMEZONE, make_catalog
from weward_pipeline_tests.test_production_dagster_storage import production_dagster_home
from weward_pipeline_tests.test_redaction import STEP_EVENTS
from weward_pipeline_tests.test_redaction_dagster import LAKE, REDACTION, Pipeline

DAYS = ["2024-03-27", "2024-03-28", "2024-03-29", "2024-03-30", "2024-03-31", "2024-04-01"]
TODAY = dt.datetime.now(ZoneInfo(TIMEZONE)).date()
# 2024-03-31 ended at 2024-04-01 00:00; its retention ends at the last local midnight, 04-01's at the next.
RETENTION = (TODAY - dt.date(2024, 4, 1)).days
LAST_MIDNIGHT = dt.datetime.combine(TODAY, dt.time(), tzinfo=ZoneInfo(TIMEZONE))


@pytest.fixture
def app_db(fresh_database):
    """The sample app, 6 days ending 2024-04-01, 15 users: about 45 step events a day."""
    sample_data.load(
        fresh_database, end_date=dt.date(2024, 4, 1), size=sample_data.SampleSize(users=15, days=6), timezone=TIMEZONE
    )
    return fresh_database


@pytest.fixture
def dagster_home(pg_server, tmp_path, monkeypatch):
    """$DAGSTER_HOME holding deploy/dagster.yaml, its DAGSTER_PG_* pointing at a database of its own."""
    name = f"dagster_{secrets.token_hex(4)}"
    yield production_dagster_home(pg_server.create_database(name), tmp_path, monkeypatch)
    with psycopg.connect(pg_server.admin_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pipeline(app_db, lake_env, clients, dagster_home, tmp_path, monkeypatch):
    """The real Definitions on the production-shaped instance; the command reads the same catalog file.

    The environment is the ECS redaction task's: WEWARD_PG_REDACT_URL, and WEWARD_PG_URL filled from
    the same secret (infra/modules/export_job), so the code location's resources resolve.
    """
    pipeline = Pipeline(lake_env, clients, app_db, monkeypatch, retention_days=RETENTION)
    pipeline.instance = dg.DagsterInstance.get()
    catalog = tmp_path / "tables.yaml"
    catalog.write_text(
        yaml.safe_dump(
            {"start_date": "2024-01-01", "timezone": TIMEZONE, "tables": [{**STEP_EVENTS, "retention_days": RETENTION}]}
        )
    )
    monkeypatch.setenv("WEWARD_TABLES_FILE", str(catalog))
    monkeypatch.setenv("WEWARD_PG_REDACT_URL", app_db)
    yield pipeline
    pipeline.instance.dispose()


def redact_due(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(["redact-due", *args])
    out = capsys.readouterr().out
    print(out, file=sys.stderr)  # shown when a test fails; not read back by the next call
    return code, out


def line(out: str, day: str) -> str:
    (found,) = [text for text in out.splitlines() if text.startswith(f"step_events  {day}  ")]
    return found.split(f"{day}  ", 1)[1]


def redaction_runs(instance) -> list[dg.DagsterRun]:
    return [run for run in instance.get_runs() if run.tags.get(LAUNCHED_BY_TAG) == LAUNCHED_BY]


def redactions(instance, day: str) -> list[dict]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=REDACTION, asset_partitions=[day]), limit=10
    ).records
    return [{k: v.value for k, v in r.asset_materialization.metadata.items()} | {"run_id": r.run_id} for r in records]


def break_export_checks(pipeline: Pipeline, day: str) -> None:
    """The export of `day` loses a data object before its checks run: they fail."""
    bucket, key = pipeline.object_key(day)
    pipeline.clients.s3.delete_object(Bucket=bucket, Key=key)
    assert not all(pipeline.run_checks(day).values())


def test_due_days_are_redacted_through_dagster_missed_and_backfilled_ones_included_and_nothing_twice(pipeline, capsys):
    instance = pipeline.instance
    everything = pipeline.pg_ids()
    rows = {day: pipeline.pg_ids(dt.date.fromisoformat(day)) for day in DAYS}
    assert all(rows.values())
    for day in ("2024-03-28", "2024-03-30", "2024-03-31", "2024-04-01"):  # 03-29 is never exported
        assert pipeline.run(LAKE, day=day, checks=day != "2024-03-28").success
    break_export_checks(pipeline, "2024-03-28")

    # Two days ago the scheduled task found nothing due: 03-28's checks failed, 03-29 was never exported.
    code, out = redact_due(capsys, "--now", (LAST_MIDNIGHT - dt.timedelta(days=2, hours=-6)).isoformat())
    assert code == 0
    assert line(out, "2024-03-28").startswith("not due: the export's checks have not passed")
    assert line(out, "2024-03-29").startswith("not due: never exported")
    assert "step_events: 0 due" in out
    assert pipeline.pg_ids() == everything and not redaction_runs(instance)

    # Yesterday's task never ran (03-30 became due then). Meanwhile an older day is backfilled.
    assert pipeline.run(LAKE, day="2024-03-27").success

    # Today, first a dry run: it reports, through Dagster, and deletes and materializes nothing (the
    # next real run redacts the same days: there is no state of its own to leave alone).
    code, out = redact_due(capsys, "--dry-run")
    assert code == 0
    for day in ("2024-03-27", "2024-03-30", "2024-03-31"):
        assert line(out, day).startswith(f"dry run: would delete {len(rows[day])} of {len(rows[day])} exported rows")
    assert "2024-04-01" not in out  # inside its retention: not even in the window
    assert pipeline.pg_ids() == everything
    assert all(not redactions(instance, day) for day in DAYS)
    assert {run.tags["dagster/partition"] for run in redaction_runs(instance)} == {
        "2024-03-27",
        "2024-03-30",
        "2024-03-31",
    }
    assert all(run.tags["weward/dry_run"] == "true" and run.is_success for run in redaction_runs(instance))

    # With a 3-day lookback, 03-27 (retention ended 4 days ago) is listed, not redacted.
    code, out = redact_due(capsys, "--lookback-days", "3")
    assert code == 0
    for day in ("2024-03-30", "2024-03-31"):
        assert line(out, day).startswith(
            f"redacted: {len(rows[day])} of {len(rows[day])} exported rows deleted, 0 already gone; kept back: none"
        )
    assert "1 older day(s) not redacted (2024-03-27 .. 2024-03-27): --lookback-days 5" in out
    assert pipeline.pg_ids() == everything - rows["2024-03-30"] - rows["2024-03-31"]

    code, out = redact_due(capsys)
    assert code == 0
    assert line(out, "2024-03-27").startswith(f"redacted: {len(rows['2024-03-27'])} of")
    assert "step_events: 1 due, 2 redacted before" in out
    redacted = {"2024-03-27", "2024-03-30", "2024-03-31"}
    assert pipeline.pg_ids() == everything - set().union(*(rows[day] for day in redacted))
    for day in ("2024-03-28", "2024-03-29", "2024-04-01"):  # checks failed, never exported, inside retention
        assert pipeline.pg_ids(dt.date.fromisoformat(day)) == rows[day]

    # The audit is in the instance's event log (PostgreSQL), one materialization per day, read by a
    # second instance as the webserver would; the lake still holds every redacted row.
    reader = dg.DagsterInstance.get()
    try:
        for day in sorted(redacted):
            (audit,) = redactions(reader, day)
            assert audit["rows_deleted"] == audit["dagster/row_count"] == len(rows[day])
            assert audit["status"] == "done" and audit["lake_verified_after"] is True
            assert audit["export_id"] == pipeline.manifest(dt.date.fromisoformat(day)).export_id
            run = reader.get_run_by_id(audit["run_id"])
            assert run.tags[LAUNCHED_BY_TAG] == LAUNCHED_BY and run.tags["dagster/partition"] == day
            assert "weward/dry_run" not in run.tags
            assert pipeline.lake_ids(dt.date.fromisoformat(day)) == rows[day]
    finally:
        reader.dispose()

    # Idempotent: nothing is due any more, no run is started.
    runs_before = len(instance.get_runs())
    code, out = redact_due(capsys)
    assert code == 0 and "step_events: 0 due, 3 redacted before" in out
    assert len(instance.get_runs()) == runs_before
    assert pipeline.pg_ids() == everything - set().union(*(rows[day] for day in redacted))


def test_a_re_exported_day_is_redacted_again_by_the_next_run(pipeline, capsys):
    """A row inserted after the export is kept back; once the day is re-exported (the fix the check
    names), the next run notices the new export, as the sensor would, and takes the row too."""
    day = "2024-03-31"
    everything = pipeline.pg_ids()
    rows = pipeline.pg_ids(dt.date(2024, 3, 31))
    assert pipeline.run(LAKE, day=day).success
    pipeline.execute(
        "INSERT INTO step_events (id, user_id, created_at, step_date, steps, source) "
        "VALUES (920001, 3, '2024-03-31 18:30:00+02', '2024-03-31', 99, 'manual')"
    )

    code, out = redact_due(capsys)
    assert code == 0
    assert line(out, day).endswith(
        f"kept back: 1 inserted_after_export (re-export lake/step_events for {day}; "
        f"it is redacted again after) (run {redactions(pipeline.instance, day)[0]['run_id'][:8]})"
    )
    assert pipeline.pg_ids() == (everything - rows) | {920001}

    assert pipeline.run(LAKE, day=day).success
    code, out = redact_due(capsys)
    assert code == 0
    # The re-export read the one row left in PostgreSQL and carried the redacted ones over from the lake.
    assert line(out, day).startswith("redacted: 1 of 1 exported rows deleted, 0 already gone; kept back: none")
    assert pipeline.pg_ids() == everything - rows
    assert pipeline.lake_ids(dt.date(2024, 3, 31)) == rows | {920001}

    code, out = redact_due(capsys)
    assert code == 0 and "step_events: 0 due" in out


def test_a_failed_day_fails_the_command_once_and_is_then_held_back_with_the_way_to_retry(pipeline, capsys):
    everything = pipeline.pg_ids()
    for day in ("2024-03-30", "2024-03-31"):
        assert pipeline.run(LAKE, day=day).success
    # After its checks passed, an object of 03-31 disappears: redaction re-verifies the lake and refuses.
    bucket, key = pipeline.object_key("2024-03-31")
    pipeline.clients.s3.delete_object(Bucket=bucket, Key=key)
    # A redaction of 03-30 whose process was killed: the run stays NOT_STARTED with its planned
    # materialization, so automation sees the day in progress.
    job = pipeline.defs.resolve_implicit_global_asset_job_def()
    stuck = pipeline.instance.create_run_for_job(
        job_def=job.get_subset(asset_selection={REDACTION}),
        asset_selection=frozenset({REDACTION}),
        tags={LAUNCHED_BY_TAG: LAUNCHED_BY, "dagster/partition": "2024-03-30"},
    )

    code, out = redact_due(capsys)
    assert code == 1
    assert line(out, "2024-03-31").startswith("FAILED: ") and "[lake_mismatch]" in line(out, "2024-03-31")
    assert line(out, "2024-03-30") == "not due: a redaction of it is in progress"
    assert pipeline.pg_ids() == everything

    # The next morning: the stuck run is past --abandoned-after-hours, so it is marked failed (exit 1);
    # both days are then held back with the command that retries them, as the sensor would hold them.
    code, out = redact_due(capsys, "--abandoned-after-hours", "0")
    assert code == 1
    assert f"FAILED: run {stuck.run_id[:8]} (2024-03-30) was still NOT_STARTED" in out
    assert pipeline.instance.get_run_by_id(stuck.run_id).status == dg.DagsterRunStatus.FAILURE
    for day in ("2024-03-30", "2024-03-31"):
        assert line(out, day) == (
            f"not due: its last redaction failed; fix the cause (see that run), then: dagster asset "
            f"materialize -m weward_pipeline.definitions --select key:redaction/step_events "
            f"--partition {day}"
        )

    code, out = redact_due(capsys)
    assert code == 0
    assert pipeline.pg_ids() == everything


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tables", "no_such_table"], "unknown table 'no_such_table'"),
        (["--tables", "users"], "table users has no retention_days"),
        (["--lookback-days", "0"], "--lookback-days (or $WEWARD_REDACT_LOOKBACK_DAYS) must be at least 1"),
        (["--now", "2999-01-01T00:00:00+00:00"], "is in the future"),
    ],
)
def test_bad_arguments_exit_2_with_the_fix(args, message, monkeypatch, capsys):
    monkeypatch.delenv("WEWARD_TABLES_FILE", raising=False)  # the sample catalog: users has no retention
    assert cli.main(["redact-due", *args]) == 2
    assert message in capsys.readouterr().err


def test_without_dagster_home_nothing_runs(monkeypatch, capsys):
    monkeypatch.delenv("WEWARD_TABLES_FILE", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert cli.main(["redact-due"]) == 2
    assert "DAGSTER_HOME is not set" in capsys.readouterr().err


def test_with_the_dagster_service_the_sensor_runs_redactions_on_the_redaction_task_definition(monkeypatch):
    """On ECS the daemon's EcsRunLauncher starts runs from the export task definition (export role and
    DSN: no DELETE); the sensor's runs name the redaction one through dagster-aws's run tag."""
    monkeypatch.setenv("WEWARD_PG_URL", "postgresql://u:p@db.invalid/app")
    monkeypatch.setenv("WEWARD_LAKE_URL", "s3://lake-bucket/exports")
    monkeypatch.setenv("WEWARD_REDACTION_TASK_DEFINITION", "weward-prod-redact")
    defs = build_definitions(make_catalog({**STEP_EVENTS, "retention_days": 30}))
    assert json.loads(defs.get_sensor_def(AUTOMATION_SENSOR).run_tags["ecs/run_task_kwargs"]) == {
        "taskDefinition": "weward-prod-redact"
    }
    monkeypatch.delenv("WEWARD_REDACTION_TASK_DEFINITION")
    assert (
        "ecs/run_task_kwargs"
        not in build_definitions(make_catalog(STEP_EVENTS)).get_sensor_def(AUTOMATION_SENSOR).run_tags
    )
