"""Backfills and the daily schedule the way the people who run the product use them: through the
running `dagster-webserver` (the UI's own GraphQL mutation) and `dagster-daemon`, on the local stack.

One webserver + daemon serve the whole module (they take ~20 s to start on 2 cores); the data is a
few days x two tables of the sample app, across the 2024 spring DST change in Europe/Paris.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import boto3
import psycopg
import pytest
import yaml
from psycopg import sql

from weward_pipeline import lake
from weward_pipeline.config import LakeLocation
from weward_pipeline.defs.schedules import DAILY_EXPORT_SCHEDULE
from weward_pipeline.devstack import sample_data
from weward_pipeline.extract import DayWindow
from weward_pipeline.glue import GlueCatalog
from weward_pipeline_tests.dagster_ui import LOCATION, DagsterProcesses

pytestmark = pytest.mark.timeout(900)

TIMEZONE = "Europe/Paris"
TABLES = {"step_events": "created_at", "ward_transactions": "created_at"}
# step_events is deleted from PostgreSQL 30 days after export (the sample days are long past that);
# ward_transactions is kept.
RETENTION = {"step_events": 30}
BACKFILL_DAYS = ["2024-03-30", "2024-03-31", "2024-04-01"]  # 03-31 has 23 hours
REPOSITORY = "__repository__"

# The UI's mutation (ui-core/src/instance/backfill/BackfillUtils.tsx), as sent by "Materialize
# selected" > partition range > "Launch backfill" on the asset graph.
LAUNCH_PARTITION_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
    ... on PipelineNotFoundError { message }
    ... on RunConflict { message }
    ... on ConflictingExecutionParamsError { message }
    ... on PythonError { message stack }
  }
}
"""

BACKFILL_STATUS = """
query Backfill($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill { id status numPartitions error { message } }
    ... on PythonError { message }
  }
}
"""

RUN_FAILURES = """
query RunLogs($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent { stepKey error { message } }
        ... on RunFailureEvent { message }
        ... on EngineEvent { message }
      }
    }
  }
}
"""

RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""

SCHEDULE = """
query Schedule($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    __typename
    ... on Schedule { name cronSchedule executionTimezone scheduleState { status } }
  }
}
"""

MATERIALIZATIONS = """
query Materializations($assetKey: AssetKeyInput!, $partitions: [String!]) {
  assetOrError(assetKey: $assetKey) {
    ... on Asset {
      assetMaterializations(partitions: $partitions, limit: 100) {
        partition timestamp runId
        metadataEntries { label ... on IntMetadataEntry { intValue } }
      }
    }
  }
}
"""

ASSET_PARTITIONS = """
query AssetPartitions($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode { partitionStats { numMaterialized numFailed } }
  }
}
"""

POOL = """
query Pool { instance { concurrencyLimit(concurrencyKey: "postgres_source") { slotCount } } }
"""

TERMINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


class SourceConnectionSampler(threading.Thread):
    """Counts the export's sessions in pg_stat_activity while a backfill runs (application_name)."""

    def __init__(self, admin_url: str, database: str) -> None:
        super().__init__(daemon=True)
        self.admin_url, self.database = admin_url, database
        self.stop_event = threading.Event()
        self.max_seen = 0
        self.samples = 0

    def run(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            while not self.stop_event.is_set():
                count = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name LIKE 'weward-export%%'",
                    (self.database,),
                ).fetchone()[0]
                self.max_seen = max(self.max_seen, count)
                self.samples += 1
                time.sleep(0.1)

    def __enter__(self) -> SourceConnectionSampler:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.join(timeout=5)


def cron_in(minutes: int) -> str:
    """A daily cron whose next tick is `minutes` from now (Paris time, like the catalog)."""
    tick = dt.datetime.now(ZoneInfo(TIMEZONE)) + dt.timedelta(minutes=minutes)
    return f"{tick.minute} {tick.hour} * * *"


@pytest.fixture(scope="module")
def ui(pg_server, aws_server):
    """Sample database + fresh bucket/Glue database + webserver and daemon on a temp DAGSTER_HOME."""
    suffix = secrets.token_hex(4)
    database = f"ui_{suffix}"
    pg_url = pg_server.create_database(database)
    sample_data.load(
        pg_url, end_date=dt.date(2024, 4, 1), size=sample_data.SampleSize(users=150, days=4), timezone=TIMEZONE
    )
    bucket = f"lake-ui-{suffix}"
    aws_server.create_bucket(bucket)
    # Not pytest's tmp_path: pytest prunes old basetemp dirs when other sessions start, and the
    # daemon's runs keep writing here for the module's lifetime.
    home = Path(tempfile.mkdtemp(prefix="weward-dagster-ui-"))
    catalog_file = home / "tables.yaml"
    catalog_file.write_text(
        yaml.safe_dump(
            {
                "start_date": "2024-03-01",
                "timezone": TIMEZONE,
                "tables": [
                    {
                        "name": name,
                        "mode": "append",
                        "partition_column": column,
                        "primary_key": ["id"],
                        "owners": ["team:data"],
                        "description": f"Sample {name} for the UI tests.",
                        **({"retention_days": RETENTION[name]} if name in RETENTION else {}),
                    }
                    for name, column in TABLES.items()
                ],
            }
        )
    )
    env = {
        **aws_server.env(),
        "WEWARD_PG_URL": pg_url,
        "WEWARD_LAKE_URL": f"s3://{bucket}/exports",
        "WEWARD_GLUE_DATABASE": f"lake_ui_{suffix}",
        "WEWARD_TABLES_FILE": str(catalog_file),
        # One tick a few minutes from now instead of 02:00, so the daemon runs it during the test.
        "WEWARD_SCHEDULE_CRON": cron_in(minutes=3),
    }
    processes = DagsterProcesses(home, env)
    try:
        processes.start(daemon=True)
        processes.wait_ready(daemons=("SCHEDULER", "BACKFILL", "QUEUED_RUN_COORDINATOR", "SENSOR"))
        processes.pg_url = pg_url
        processes.database = database
        processes.admin_url = pg_server.admin_url("postgres")
        processes.lake_env = env
        processes.bucket = bucket
        yield processes
    finally:
        processes.stop()
        if not os.environ.get("WEWARD_KEEP_DAGSTER_HOME"):
            shutil.rmtree(home, ignore_errors=True)
        with psycopg.connect(pg_server.admin_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


def launch_backfill(ui: DagsterProcesses, tables: list[str], days: list[str]) -> str:
    params = {
        "tags": [{"key": "dagster/from_ui", "value": "true"}],
        "assetSelection": [{"path": ["lake", name]} for name in tables],
        "partitionNames": days,
        "fromFailure": False,
    }
    result = ui.graphql(LAUNCH_PARTITION_BACKFILL, {"backfillParams": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def wait_backfill(ui: DagsterProcesses, backfill_id: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        backfill = ui.graphql(BACKFILL_STATUS, {"backfillId": backfill_id})["partitionBackfillOrError"]
        if backfill.get("status") in TERMINAL:
            return backfill
        if time.monotonic() > deadline:
            raise AssertionError(
                f"backfill {backfill_id} still {backfill.get('status')} after {timeout}s\n{ui.log_tail()}"
            )
        ui._check_alive()
        time.sleep(1)


def failures(ui: DagsterProcesses, runs: list[dict]) -> str:
    """Why runs failed, from their event logs: what a user reads on the run page."""
    lines = []
    for run in runs:
        if run["status"] == "SUCCESS":
            continue
        events = ui.graphql(RUN_FAILURES, {"runId": run["runId"]})["logsForRun"].get("events", [])
        for event in events:
            if event["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent"):
                message = event.get("error", {}).get("message") if event.get("error") else event.get("message")
                lines.append(f"run {run['runId'][:8]} {run['status']} {event.get('stepKey', '')}: {message}")
    return "\n".join(lines)


def runs_tagged(ui: DagsterProcesses, key: str, value: str) -> list[dict]:
    data = ui.graphql(RUNS, {"filter": {"tags": [{"key": key, "value": value}]}})
    return [{**run, "tags": {t["key"]: t["value"] for t in run["tags"]}} for run in data["runsOrError"]["results"]]


def materializations(ui: DagsterProcesses, key: list[str], partitions: list[str]) -> list[dict]:
    data = ui.graphql(MATERIALIZATIONS, {"assetKey": {"path": key}, "partitions": partitions})["assetOrError"]
    return data.get("assetMaterializations") or []


def wait_materialized(
    ui: DagsterProcesses, key: list[str], partitions: list[str], after: float = 0, timeout: float = 420
) -> dict[str, dict]:
    """The newest materialization of each partition made after `after` (ms), once all exist."""
    deadline = time.monotonic() + timeout
    while True:
        latest: dict[str, dict] = {}
        for event in materializations(ui, key, partitions):
            if float(event["timestamp"]) > after and event["partition"] not in latest:
                latest[event["partition"]] = event
        if set(latest) == set(partitions):
            return latest
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{'/'.join(key)}: only {sorted(latest)} of {partitions} materialized after {timeout}s\n{ui.log_tail()}"
            )
        ui._check_alive()
        time.sleep(2)


def source_count(pg_url: str, table: str, column: str, day: str) -> int:
    window = DayWindow(dt.date.fromisoformat(day), TIMEZONE)
    query = sql.SQL("SELECT count(*) FROM {} WHERE {} >= %s AND {} < %s").format(
        sql.Identifier(table), sql.Identifier(column), sql.Identifier(column)
    )
    with psycopg.connect(pg_url) as conn:
        return conn.execute(query, (window.start, window.end)).fetchone()[0]


def lake_state(ui: DagsterProcesses, table: str, day: str) -> dict:
    """What an analyst and an auditor see for one day: the Glue partition and the S3 objects."""
    env = ui.lake_env
    glue = GlueCatalog(
        boto3.client("glue", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"]),
        env["WEWARD_GLUE_DATABASE"],
    )
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"])
    location = LakeLocation.parse(env["WEWARD_LAKE_URL"])
    partition = glue.get_partition(table, day)
    day_prefix = lake.day_prefix(location, table, dt.date.fromisoformat(day))
    keys = lake.list_keys(s3, location.bucket, day_prefix)
    # <export_id>.json manifests and, for retention tables, <export_id>.keys/ (redaction keys).
    meta_prefix = location.key("_manifests", table, f"dt={day}") + "/"
    meta = [k[len(meta_prefix) :] for k in lake.list_keys(s3, location.bucket, meta_prefix)]
    manifests = [k for k in meta if k.endswith(".json")]
    meta_exports = sorted({k.split("/", 1)[0].removesuffix(".json").removesuffix(".keys") for k in meta})
    versions = sorted({k[len(day_prefix) :].split("/", 1)[0] for k in keys})
    rows = 0
    for key in keys:
        head = s3.get_object(Bucket=location.bucket, Key=key, Range="bytes=-8")
        assert head["Body"].read()[-4:] == b"PAR1", f"s3://{location.bucket}/{key} is not Parquet"
    if partition is not None:
        rows = int(partition["Parameters"]["weward.rows"])
    return {
        "partition": partition,
        "versions": versions,
        "keys": keys,
        "manifests": manifests,
        "meta_exports": meta_exports,
        "rows": rows,
    }


@pytest.fixture(scope="module")
def first_backfill(ui):
    """The 3-day x 2-table backfill, launched from the UI, with the source connections it opened."""
    # Counted before: automation may redact step_events as soon as each day has passed its checks.
    source_rows = {
        (t, day): source_count(ui.pg_url, t, column, day) for t, column in TABLES.items() for day in BACKFILL_DAYS
    }
    with SourceConnectionSampler(ui.admin_url, ui.database) as sampler:
        backfill_id = launch_backfill(ui, list(TABLES), BACKFILL_DAYS)
        backfill = wait_backfill(ui, backfill_id)
    return {
        "id": backfill_id,
        "backfill": backfill,
        "sampler": sampler,
        "source_rows": source_rows,
        "runs": runs_tagged(ui, "dagster/backfill", backfill_id),
    }


def test_a_ui_backfill_exports_and_registers_every_day_of_every_selected_table(ui, first_backfill):
    backfill, runs = first_backfill["backfill"], first_backfill["runs"]
    assert backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), f"{backfill}\n{failures(ui, runs)}"

    # One run per day, both tables in it, tagged with its day (not a one-day range: see assets.py).
    assert sorted(r["tags"].get("dagster/partition") for r in runs) == BACKFILL_DAYS
    assert {r["status"] for r in runs} == {"SUCCESS"}, runs

    for table in TABLES:
        stats = ui.graphql(ASSET_PARTITIONS, {"assetKey": {"path": ["lake", table]}})["assetNodeOrError"]
        assert stats["partitionStats"]["numMaterialized"] >= len(BACKFILL_DAYS)
        for day in BACKFILL_DAYS:
            state = lake_state(ui, table, day)
            expected = first_backfill["source_rows"][table, day]
            assert expected > 0, f"sample data has no {table} rows on {day}"
            assert state["partition"] is not None, f"no Glue partition {table}/dt={day}"
            assert state["rows"] == expected == int(state["partition"]["Parameters"]["weward.source_rows"])
            assert len(state["versions"]) == 1, f"{table} {day}: several versions {state['versions']}"
            assert state["partition"]["StorageDescriptor"]["Location"].rstrip("/").endswith(state["versions"][0])
            assert len(state["manifests"]) == 1
            assert state["meta_exports"] == [state["partition"]["Parameters"]["weward.export_id"]]


def test_the_backfill_never_had_more_source_connections_than_the_pool_allows(ui, first_backfill):
    sampler = first_backfill["sampler"]
    slots = ui.graphql(POOL)["instance"]["concurrencyLimit"]["slotCount"]
    assert slots == 2, "dagster.yaml sets the postgres_source pool's default limit to 2"
    assert sampler.samples > 10
    assert 1 <= sampler.max_seen <= slots, f"saw {sampler.max_seen} export sessions at once (pool: {slots})"


@pytest.fixture(scope="module")
def first_redaction(ui, first_backfill):
    """The redaction_automation sensor redacts the backfilled days by itself (retention long passed)."""
    return wait_materialized(ui, ["redaction", "step_events"], BACKFILL_DAYS)


def test_the_backfilled_days_are_then_redacted_by_automation_where_retention_is_due(ui, first_redaction):
    for day in BACKFILL_DAYS:
        exported = lake_state(ui, "step_events", day)["rows"]
        deleted = {e["label"]: e.get("intValue") for e in first_redaction[day]["metadataEntries"]}
        assert deleted.get("rows_deleted") == exported > 0, deleted
        assert source_count(ui.pg_url, "step_events", "created_at", day) == 0
        # No retention on ward_transactions: every exported row is still in PostgreSQL.
        assert (
            source_count(ui.pg_url, "ward_transactions", "created_at", day)
            == lake_state(ui, "ward_transactions", day)["rows"]
        )
    assert not materializations(ui, ["redaction", "ward_transactions"], BACKFILL_DAYS)


def test_rerunning_a_backfill_over_exported_days_replaces_them_without_duplicates(ui, first_backfill, first_redaction):
    day = "2024-03-31"
    before = {table: lake_state(ui, table, day) for table in TABLES}
    started_ms = time.time() * 1000
    neighbours = {table: lake_state(ui, table, "2024-03-30")["versions"] for table in TABLES}
    backfill_id = launch_backfill(ui, list(TABLES), [day])
    backfill = wait_backfill(ui, backfill_id)
    assert backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), f"{backfill}\n{ui.log_tail()}"
    for table in TABLES:
        after = lake_state(ui, table, day)
        old_id = before[table]["partition"]["Parameters"]["weward.export_id"]
        new_id = after["partition"]["Parameters"]["weward.export_id"]
        assert new_id != old_id, "the re-run must publish a new export"
        assert after["versions"] == [f"v={new_id}"], f"superseded objects left behind: {after['versions']}"
        assert len(after["manifests"]) == 1
        assert after["meta_exports"] == [new_id], "the superseded manifest and redaction keys are gone"
        # Rows already redacted from PostgreSQL are carried over from the previous export.
        assert after["rows"] == before[table]["rows"]
        assert lake_state(ui, table, "2024-03-30")["versions"] == neighbours[table], "other days are untouched"
    assert source_count(ui.pg_url, "ward_transactions", "created_at", day) == before["ward_transactions"]["rows"]

    # The export changed, so automation redacts the day again; nothing is left to delete.
    again = wait_materialized(ui, ["redaction", "step_events"], [day], after=started_ms)[day]
    assert {e["label"]: e.get("intValue") for e in again["metadataEntries"]}.get("rows_deleted") == 0
    assert source_count(ui.pg_url, "step_events", "created_at", day) == 0


def test_the_daemon_runs_the_daily_schedule_for_yesterday(ui):
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "scheduleName": DAILY_EXPORT_SCHEDULE}
    schedule = ui.graphql(SCHEDULE, {"selector": selector})["scheduleOrError"]
    assert schedule["__typename"] == "Schedule", schedule
    assert schedule["scheduleState"]["status"] == "RUNNING", "the schedule must run without anyone turning it on"
    assert schedule["executionTimezone"] == TIMEZONE

    def scheduled_runs():
        return [r for r in runs_tagged(ui, "dagster/schedule_name", DAILY_EXPORT_SCHEDULE) if r["status"] == "SUCCESS"]

    deadline = time.monotonic() + 420
    while not scheduled_runs():
        assert time.monotonic() < deadline, f"no successful scheduled run after 420 s\n{ui.log_tail()}"
        ui._check_alive()
        time.sleep(2)
    runs = runs_tagged(ui, "dagster/schedule_name", DAILY_EXPORT_SCHEDULE)
    assert len(runs) == 1, "one tick, one run"
    day = scheduled_runs()[0]["tags"]["dagster/partition"]
    today = dt.datetime.now(ZoneInfo(TIMEZONE)).date()
    assert day in {(today - dt.timedelta(days=n)).isoformat() for n in (1, 2)}, "yesterday, in the catalog's zone"
    for table, column in TABLES.items():
        state = lake_state(ui, table, day)
        assert state["partition"] is not None, f"the scheduled run did not register {table}/dt={day}"
        assert state["rows"] == source_count(ui.pg_url, table, column, day)
