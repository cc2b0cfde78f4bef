"""Redaction tries hard to lose data here, against the real PostgreSQL server and S3/Glue endpoint.

Each test exports real days of the sample app's `step_events`, does something nasty between the
export and the redaction, redacts, and asserts the exact set of rows left in PostgreSQL and the
exact set of rows in the lake (read back through Glue, as Athena would).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from weward_pipeline import redact
from weward_pipeline.devstack import sample_data
from weward_pipeline.export import ExportError, export_day
from weward_pipeline.extract import DayWindow
from weward_pipeline.keys import RedactionKeys
from weward_pipeline.redact import RedactionLimits, RedactionRefused, redact_day
from weward_pipeline.verify import published_manifest
from weward_pipeline_tests.conftest import TIMEZONE, OneTable, make_catalog, make_settings
from weward_pipeline_tests.lake_reader import read_table

DAY = dt.date(2024, 3, 31)  # 23 hours in Europe/Paris
OTHER_DAY = dt.date(2024, 3, 30)
STEP_EVENTS = {
    "name": "step_events",
    "mode": "append",
    "partition_column": "created_at",
    "primary_key": ["id"],
    "retention_days": 30,
}
# Small batches so a day of the test data takes several; no pauses to keep the tests quick.
FAST = RedactionLimits(batch_rows=25, pause_s=0, retry_backoff_s=0.05, lock_timeout_s=0.5)


@pytest.fixture
def app_db(fresh_database):
    """The sample app, 3 days ending 2024-04-01, 60 users (not all walk every day): about 120 step
    events on DAY, so a day takes several batches of FAST.batch_rows."""
    sample_data.load(
        fresh_database, end_date=dt.date(2024, 4, 1), size=sample_data.SampleSize(users=60, days=3), timezone=TIMEZONE
    )
    return fresh_database


class Scenario(OneTable):
    def __init__(self, lake_env, clients, pg_url, table=STEP_EVENTS):
        super().__init__(lake_env, clients, pg_url, table)

    def export(self, day=DAY):
        return export_day(self.settings, self.catalog, self.table, day, clients=self.clients)

    def redact(self, day=DAY, **kwargs):
        kwargs.setdefault("limits", FAST)
        return redact_day(self.settings, self.catalog, self.table, day, clients=self.clients, **kwargs)

    def pg_ids(self, day: dt.date | None = None) -> set[int]:
        query, params = "SELECT id FROM step_events", ()
        if day is not None:
            window = DayWindow(day, TIMEZONE)
            query += " WHERE created_at >= %s AND created_at < %s"
            params = (window.start, window.end)
        with psycopg.connect(self.pg_url) as conn:
            return {row[0] for row in conn.execute(query, params)}

    def lake_ids(self, day=DAY) -> set[int]:
        ids = read_table(self.glue, self.clients.filesystem, self.table.name, day.isoformat()).column("id").to_pylist()
        assert len(ids) == len(set(ids)), "a row is in the lake twice"
        return set(ids)

    def execute(self, statement: str, params=()):
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            conn.execute(statement, params)

    def manifest(self, day=DAY):
        return published_manifest(self.glue, self.clients.s3, self.table.name, day.isoformat())[1]


@pytest.fixture
def scenario(app_db, lake_env, clients):
    return Scenario(lake_env, clients, app_db)


def test_exported_day_is_deleted_from_postgres_and_stays_whole_in_the_lake(scenario):
    everything = scenario.pg_ids()
    day_rows = scenario.pg_ids(DAY)
    scenario.export()

    report = scenario.redact()

    assert report.status == "done" and report.why_quit is None
    assert report.rows_in_export == report.rows_deleted == len(day_rows) > 50
    assert report.kept_back == {} and not report.needs_reexport
    assert report.batches == -(-len(day_rows) // FAST.batch_rows)
    assert report.lake_verified_after is True
    assert scenario.pg_ids() == everything - day_rows
    assert scenario.lake_ids() == day_rows


def test_temporary_files_go_to_tmpdir_and_an_unusable_one_fails_first_naming_the_path(scenario, tmp_path, monkeypatch):
    from weward_pipeline.scratch import ScratchError

    scenario.export()
    before = scenario.pg_ids(DAY)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "not-a-volume"))
    with pytest.raises(ScratchError, match=f"cannot create temporary files in {tmp_path}/not-a-volume .*set TMPDIR"):
        scenario.redact()
    assert scenario.pg_ids(DAY) == before  # refused before anything was read or deleted
    volume = tmp_path / "volume"
    volume.mkdir()
    monkeypatch.setenv("TMPDIR", str(volume))
    seen = []
    real_collect = redact.collect_evidence
    monkeypatch.setattr(redact, "collect_evidence", lambda *a: seen.append(a[-1]) or real_collect(*a))
    assert scenario.redact().rows_deleted == len(before)
    assert seen[0].parent == volume and not seen[0].exists()  # under TMPDIR, removed afterwards


def test_running_it_twice_deletes_nothing_the_second_time(scenario):
    everything = scenario.pg_ids()
    day_rows = scenario.pg_ids(DAY)
    scenario.export()
    scenario.redact()

    again = scenario.redact()

    assert again.rows_deleted == 0 and again.rows_already_gone == len(day_rows)
    assert scenario.pg_ids() == everything - day_rows
    assert scenario.lake_ids() == day_rows


def export_order(scenario: Scenario, day=DAY) -> list[int]:
    """Primary keys in the order of the published data files (= the keys objects = the batches)."""
    manifest = scenario.manifest(day)
    bucket = scenario.settings.lake.bucket
    ids: list[int] = []
    for obj in manifest.objects:
        ids += (
            pq.read_table(f"{bucket}/{obj.key}", filesystem=scenario.clients.filesystem, columns=["id"])
            .column("id")
            .to_pylist()
        )
    return ids


# -- rows that are not in the lake as it is now stay ---------------------------------------------


def test_a_row_inserted_into_the_day_after_the_export_stays_and_is_reported(scenario):
    everything = scenario.pg_ids()
    day_rows = scenario.pg_ids(DAY)
    scenario.export()
    scenario.execute(
        "INSERT INTO step_events (id, user_id, created_at, step_date, steps, source) "
        "VALUES (900001, 7, '2024-03-31 12:00:00+02', '2024-03-31', 4321, 'manual')"
    )

    report = scenario.redact()

    assert report.rows_deleted == len(day_rows)
    assert report.kept_back == {redact.INSERTED_AFTER_EXPORT: 1}
    assert report.kept_back_keys == {redact.INSERTED_AFTER_EXPORT: [900001]}
    assert report.needs_reexport and report.window_rows_after == 1
    assert scenario.pg_ids() == (everything - day_rows) | {900001}
    assert scenario.lake_ids() == day_rows


def test_a_row_changed_after_the_export_stays_but_one_merely_touched_goes(scenario):
    everything = scenario.pg_ids()
    day_rows = scenario.pg_ids(DAY)
    scenario.export()
    changed, touched, moved = sorted(day_rows)[5], sorted(day_rows)[6], sorted(day_rows)[7]
    scenario.execute("UPDATE step_events SET steps = steps + 1 WHERE id = %s", (changed,))
    scenario.execute("UPDATE step_events SET steps = steps WHERE id = %s", (touched,))  # same content
    # Moved to another day: the lake's copy of day D is no longer the row as it is.
    scenario.execute("UPDATE step_events SET created_at = created_at - interval '2 days' WHERE id = %s", (moved,))

    report = scenario.redact()

    assert report.kept_back == {redact.CHANGED_SINCE_EXPORT: 2}
    assert sorted(report.kept_back_keys[redact.CHANGED_SINCE_EXPORT]) == [changed, moved]
    assert report.rows_deleted == len(day_rows) - 2
    assert scenario.pg_ids() == (everything - day_rows) | {changed, moved}
    assert scenario.lake_ids() == day_rows


def test_a_column_added_since_the_export_must_be_null_for_the_row_to_go(scenario):
    everything = scenario.pg_ids()
    day_rows = scenario.pg_ids(DAY)
    scenario.export()
    filled = sorted(day_rows)[0]
    scenario.execute("ALTER TABLE step_events ADD COLUMN heart_rate smallint")
    scenario.execute("UPDATE step_events SET heart_rate = 72 WHERE id = %s", (filled,))

    report = scenario.redact()

    assert report.columns_required_null == ["heart_rate"]
    assert report.kept_back == {redact.CHANGED_SINCE_EXPORT: 1}
    assert scenario.pg_ids() == (everything - day_rows) | {filled}
    assert scenario.lake_ids() == day_rows


def test_a_column_whose_type_changed_since_the_export_stops_everything(scenario):
    everything = scenario.pg_ids()
    scenario.export()
    scenario.execute("ALTER TABLE step_events ALTER COLUMN steps TYPE bigint")

    with pytest.raises(RedactionRefused) as refused:
        scenario.redact()

    assert refused.value.reason == redact.SCHEMA_CHANGED
    assert "'steps' was integer at export, is bigint now" in str(refused.value)
    assert scenario.pg_ids() == everything


# -- the lake no longer matches what was published: nothing is deleted --------------------------


def _only_object(scenario):
    manifest = scenario.manifest()
    assert len(manifest.objects) == 1
    return scenario.settings.lake.bucket, manifest.objects[0].key


def test_a_deleted_parquet_object_means_nothing_is_deleted(scenario):
    everything = scenario.pg_ids()
    scenario.export()
    bucket, key = _only_object(scenario)
    scenario.clients.s3.delete_object(Bucket=bucket, Key=key)

    with pytest.raises(RedactionRefused) as refused:
        scenario.redact()

    assert refused.value.reason == redact.LAKE_MISMATCH and "is missing" in str(refused.value)
    assert scenario.pg_ids() == everything


def test_a_truncated_parquet_object_means_nothing_is_deleted(scenario):
    everything = scenario.pg_ids()
    day_rows = scenario.pg_ids(DAY)
    scenario.export()
    bucket, key = _only_object(scenario)
    body = scenario.clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    scenario.clients.s3.put_object(Bucket=bucket, Key=key, Body=body[: len(body) // 2])

    with pytest.raises(RedactionRefused) as refused:
        scenario.redact()

    assert refused.value.reason == redact.LAKE_MISMATCH and "changed since export" in str(refused.value)
    assert scenario.pg_ids() == everything
    assert scenario.pg_ids(DAY) == day_rows


def test_an_object_rewritten_with_other_rows_means_nothing_is_deleted(scenario):
    """A valid Parquet file with one row fewer (as a careless manual fix would leave it)."""
    everything = scenario.pg_ids()
    scenario.export()
    bucket, key = _only_object(scenario)
    table = pq.read_table(f"{bucket}/{key}", filesystem=scenario.clients.filesystem)
    pq.write_table(table.slice(1), f"{bucket}/{key}", filesystem=scenario.clients.filesystem)

    with pytest.raises(RedactionRefused) as refused:
        scenario.redact()

    assert refused.value.reason == redact.LAKE_MISMATCH
    assert scenario.pg_ids() == everything


def test_keys_rewritten_to_name_a_row_not_in_the_lake_mean_nothing_is_deleted(scenario):
    """Someone appends a late row's key and true fingerprint to the keys object: refused (ETag)."""
    everything = scenario.pg_ids()
    scenario.export()
    scenario.execute(
        "INSERT INTO step_events (id, user_id, created_at, step_date, steps, source) "
        "VALUES (900005, 7, '2024-03-31 10:00:00+02', '2024-03-31', 10, 'manual')"
    )
    keys = RedactionKeys.from_manifest(scenario.manifest())
    path = f"{scenario.settings.lake.bucket}/{keys.objects[0].key}"
    with psycopg.connect(scenario.pg_url) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        (fingerprint,) = conn.execute(
            "SELECT decode(md5(ROW(s.*)::text), 'hex') FROM step_events s WHERE id = 900005"
        ).fetchone()
    original = pq.read_table(path, filesystem=scenario.clients.filesystem)
    forged = pa.concat_tables(
        [original, pa.table({"id": [900005], "_weward_fingerprint": [fingerprint]}).cast(original.schema)]
    )
    pq.write_table(forged, path, filesystem=scenario.clients.filesystem)

    with pytest.raises(RedactionRefused) as refused:
        scenario.redact()

    assert refused.value.reason == redact.KEYS_MISMATCH and "PreconditionFailed" in str(refused.value)
    assert scenario.pg_ids() == everything | {900005}


def test_keys_gone_from_s3_mean_nothing_is_deleted(scenario):
    everything = scenario.pg_ids()
    scenario.export()
    keys = RedactionKeys.from_manifest(scenario.manifest())
    bucket = scenario.settings.lake.bucket
    scenario.clients.s3.delete_object(Bucket=bucket, Key=keys.objects[0].key)

    with pytest.raises(RedactionRefused) as refused:
        scenario.redact()

    assert refused.value.reason == redact.KEYS_MISMATCH and "is not as exported" in str(refused.value)
    assert scenario.pg_ids() == everything


def test_a_day_never_exported_means_nothing_is_deleted(scenario):
    everything = scenario.pg_ids()
    scenario.export(OTHER_DAY)

    with pytest.raises(RedactionRefused) as refused:
        scenario.redact(DAY)

    assert refused.value.reason == redact.NOT_PUBLISHED
    assert f"Materialize lake/step_events for {DAY}" in str(refused.value)
    assert scenario.pg_ids() == everything
    assert scenario.lake_ids(OTHER_DAY) == scenario.pg_ids(OTHER_DAY)


def test_a_day_inside_its_retention_is_not_touched(scenario):
    everything = scenario.pg_ids()
    day_rows = scenario.pg_ids(DAY)
    scenario.export()
    # 2024-03-31 ends at 2024-04-01 00:00 Paris; 30 days later is 2024-05-01 00:00 Paris (22:00 UTC).
    just_before = dt.datetime(2024, 4, 30, 21, 59, 59, tzinfo=dt.UTC)

    with pytest.raises(RedactionRefused) as refused:
        scenario.redact(now=just_before)

    assert refused.value.reason == redact.INSIDE_RETENTION
    assert "from 2024-05-01T00:00:00+02:00 on" in str(refused.value)
    assert scenario.pg_ids() == everything
    report = scenario.redact(now=just_before + dt.timedelta(seconds=1))
    assert report.rows_deleted == len(day_rows)
    assert scenario.pg_ids() == everything - day_rows
    assert scenario.lake_ids() == day_rows


# -- gentle on the primary ------------------------------------------------------------------------


def _backend_waiting_on_a_lock(pg_url: str) -> bool:
    with psycopg.connect(pg_url) as conn:
        return (
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'weward-redact%%' "
                "AND wait_event_type = 'Lock'"
            ).fetchone()[0]
            > 0
        )


def _wait_for(condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_writer_holding_a_row_lock_costs_one_skipped_batch_and_is_never_blocked_long(scenario):
    everything = scenario.pg_ids()
    day_rows = scenario.pg_ids(DAY)
    scenario.export()
    order = export_order(scenario)
    batch = FAST.batch_rows
    second_batch = order[batch : 2 * batch]
    held, touched = second_batch[3], second_batch[0]
    limits = RedactionLimits(batch_rows=batch, pause_s=0, lock_timeout_s=0.3, lock_retries=2, retry_backoff_s=0.1)
    latencies: list[float] = []
    done = threading.Event()

    def other_writer():
        """The app updating another row of the locked batch while the redaction waits for the lock."""
        with psycopg.connect(scenario.pg_url, autocommit=True) as conn:
            while not done.is_set():
                started = time.monotonic()
                conn.execute("UPDATE step_events SET steps = steps WHERE id = %s", (touched,))
                latencies.append(time.monotonic() - started)
                time.sleep(0.02)

    with psycopg.connect(scenario.pg_url) as writer:
        writer.execute("SELECT 1 FROM step_events WHERE id = %s FOR UPDATE", (held,))
        thread = threading.Thread(target=other_writer)
        thread.start()
        try:
            report = scenario.redact(limits=limits)
        finally:
            done.set()
            thread.join()
        writer.rollback()

    assert report.status == "incomplete" and report.batches_skipped == 1
    assert report.lock_timeouts == 3 and report.batches_retried == 1
    assert report.kept_back == {redact.LOCKED: batch}
    assert sorted(report.kept_back_keys[redact.LOCKED]) == sorted(second_batch)
    assert scenario.pg_ids() == (everything - day_rows) | set(second_batch)
    # Our DELETE gave up its locks within lock_timeout each time: the app waited at most that long.
    assert latencies and max(latencies) < limits.lock_timeout_s + 0.5, max(latencies)

    report = scenario.redact()  # the lock is gone: a re-run finishes the day
    assert report.rows_deleted == batch and report.status == "done"
    assert scenario.pg_ids() == everything - day_rows
    assert scenario.lake_ids() == day_rows


def test_a_row_updated_while_the_redaction_waits_for_its_lock_is_not_deleted(scenario):
    """PostgreSQL re-checks the fingerprint on the new row version: the update wins."""
    everything = scenario.pg_ids()
    day_rows = scenario.pg_ids(DAY)
    scenario.export()
    updated = export_order(scenario)[FAST.batch_rows + 2]
    limits = RedactionLimits(batch_rows=FAST.batch_rows, pause_s=0, lock_timeout_s=20, retry_backoff_s=0)
    result: dict = {}

    with psycopg.connect(scenario.pg_url) as writer:
        writer.execute("UPDATE step_events SET steps = steps + 10 WHERE id = %s", (updated,))
        thread = threading.Thread(target=lambda: result.update(report=scenario.redact(limits=limits)))
        thread.start()
        _wait_for(lambda: _backend_waiting_on_a_lock(scenario.pg_url), what="the redaction to wait for the row lock")
        writer.commit()
        thread.join(timeout=60)

    report = result["report"]
    assert report.lock_timeouts == 0
    assert report.kept_back == {redact.CHANGED_SINCE_EXPORT: 1}
    assert report.kept_back_keys == {redact.CHANGED_SINCE_EXPORT: [updated]}
    assert scenario.pg_ids() == (everything - day_rows) | {updated}
    assert scenario.lake_ids() == day_rows


def test_deletes_pause_while_a_replica_lags_and_stop_if_it_does_not_catch_up(scenario):
    everything = scenario.pg_ids()
    day_rows = scenario.pg_ids(DAY)
    scenario.export()
    order = export_order(scenario)
    lags = iter([0.0, 12.0, 9.0, 0.5, 0.0] + [30.0] * 1000)
    slept: list[float] = []
    limits = RedactionLimits(batch_rows=FAST.batch_rows, pause_s=0, max_replica_lag_s=5, max_lag_wait_s=3)

    report = scenario.redact(limits=limits, lag_probe=lambda: next(lags), sleep=slept.append)

    # Batch 1 at lag 0; before batch 2 the lag is 12 then 9 (two 1 s pauses), then 0.5: go;
    # batch 3 at 0; before batch 4 it stays at 30 for the 3 s allowed: stop.
    assert report.batches == 3 and report.status == "stopped"
    assert report.replica_lag_waits == 2 and sum(slept) == 2 + 3
    assert "replica lag stayed above 5 s" in report.why_quit
    deleted = set(order[: 3 * FAST.batch_rows])
    assert report.rows_deleted == len(deleted)
    assert report.kept_back == {redact.NOT_REACHED: len(day_rows) - len(deleted)}
    assert scenario.pg_ids() == everything - deleted
    scenario.redact()
    assert scenario.pg_ids() == everything - day_rows
    assert scenario.lake_ids() == day_rows


# -- resumable ------------------------------------------------------------------------------------

KILLABLE = textwrap.dedent("""
    import datetime as dt, sys
    from weward_pipeline.config import Settings, load_catalog
    from weward_pipeline.redact import RedactionLimits, redact_day
    catalog = load_catalog()
    redact_day(Settings.from_env(), catalog, catalog.tables[0], dt.date.fromisoformat(sys.argv[1]),
               limits=RedactionLimits(batch_rows=int(sys.argv[2]), pause_s=0, lock_timeout_s=60))
""")


def test_killed_in_the_middle_of_a_batch_then_resumed_ends_exactly_redacted(scenario, tmp_path, lake_env):
    """SIGKILL while batch 3 waits for a row lock: batches 1-2 stay deleted, batch 3 rolls back."""
    import yaml

    everything = scenario.pg_ids()
    day_rows = scenario.pg_ids(DAY)
    scenario.export()
    order = export_order(scenario)
    batch = FAST.batch_rows
    catalog_file = tmp_path / "tables.yaml"
    catalog_file.write_text(yaml.safe_dump({"start_date": "2024-01-01", "timezone": TIMEZONE, "tables": [STEP_EVENTS]}))
    env = {**os.environ, **lake_env, "WEWARD_PG_URL": scenario.pg_url, "WEWARD_TABLES_FILE": str(catalog_file)}

    with psycopg.connect(scenario.pg_url) as writer:
        writer.execute("SELECT 1 FROM step_events WHERE id = %s FOR UPDATE", (order[2 * batch + 4],))
        process = subprocess.Popen(
            [sys.executable, "-c", KILLABLE, DAY.isoformat(), str(batch)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for(
                lambda: _backend_waiting_on_a_lock(scenario.pg_url),
                timeout=60,
                what="the redaction to reach the locked batch",
            )
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
        writer.rollback()
    # The server notices the dead client once the lock is free; its open batch is rolled back.
    _wait_for(lambda: not _redaction_backends(scenario.pg_url), what="the killed backend to go")

    assert scenario.pg_ids() == everything - set(order[: 2 * batch])

    report = scenario.redact()
    assert report.rows_already_gone == 2 * batch
    assert report.rows_deleted == len(day_rows) - 2 * batch
    assert scenario.pg_ids() == everything - day_rows
    assert scenario.lake_ids() == day_rows


def _redaction_backends(pg_url: str) -> int:
    with psycopg.connect(pg_url) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'weward-redact%%'"
        ).fetchone()[0]


# -- dry run --------------------------------------------------------------------------------------


def test_a_dry_run_reports_what_would_go_and_writes_nothing(scenario):
    everything = scenario.pg_ids()
    day_rows = scenario.pg_ids(DAY)
    scenario.export()
    changed = sorted(day_rows)[3]
    scenario.execute("UPDATE step_events SET steps = steps + 1 WHERE id = %s", (changed,))
    scenario.execute(
        "INSERT INTO step_events (id, user_id, created_at, step_date, steps, source) "
        "VALUES (900002, 7, '2024-03-31 23:59:59+02', '2024-03-31', 1, 'manual')"
    )
    bucket = scenario.settings.lake.bucket
    objects_before = {o["Key"]: o["ETag"] for o in scenario.clients.s3.list_objects_v2(Bucket=bucket)["Contents"]}

    report = scenario.redact(dry_run=True)

    assert report.status == "dry_run" and report.rows_deleted == 0
    assert report.rows_would_delete == len(day_rows) - 1
    assert report.kept_back == {redact.CHANGED_SINCE_EXPORT: 1, redact.INSERTED_AFTER_EXPORT: 1}
    assert report.kept_back_keys[redact.CHANGED_SINCE_EXPORT] == [changed]
    assert report.delete_sql.startswith('DELETE FROM "public"."step_events" AS t USING unnest(')
    assert "decode(md5(ROW(" in report.delete_sql
    assert scenario.pg_ids() == everything | {900002}
    assert {
        o["Key"]: o["ETag"] for o in scenario.clients.s3.list_objects_v2(Bucket=bucket)["Contents"]
    } == objects_before
    assert scenario.lake_ids() == day_rows


# -- re-export after redaction ---------------------------------------------------------------------


def test_re_exporting_a_redacted_day_keeps_the_redacted_rows_in_the_lake(scenario):
    """Late row -> redaction keeps it -> re-export (carries the redacted rows over) -> redaction."""
    everything = scenario.pg_ids()
    day_rows = scenario.pg_ids(DAY)
    first = scenario.export()
    scenario.execute(
        "INSERT INTO step_events (id, user_id, created_at, step_date, steps, source) "
        "VALUES (900003, 9, '2024-03-31 08:00:00+02', '2024-03-31', 800, 'garmin')"
    )
    assert scenario.redact().needs_reexport
    assert scenario.pg_ids(DAY) == {900003}

    second = scenario.export()

    manifest = scenario.manifest()
    assert (manifest.source_rows, manifest.carried_rows) == (1, len(day_rows))
    assert second.rows == len(day_rows) + 1
    assert scenario.lake_ids() == day_rows | {900003}
    bucket = scenario.settings.lake.bucket
    leftover = scenario.clients.s3.list_objects_v2(Bucket=bucket, Prefix=f"exports/_manifests/step_events/dt={DAY}/")
    assert all(first.export_id not in o["Key"] for o in leftover.get("Contents", []))  # superseded keys removed

    report = scenario.redact()
    assert report.rows_in_export == 1 and report.rows_deleted == 1 and not report.needs_reexport
    assert scenario.pg_ids() == everything - day_rows
    assert scenario.lake_ids() == day_rows | {900003}

    third = scenario.export()  # nothing left in PostgreSQL: everything comes from the lake
    assert third.rows == len(day_rows) + 1 and scenario.manifest().carried_rows == len(day_rows) + 1
    assert scenario.lake_ids() == day_rows | {900003}


def test_re_export_refuses_when_the_published_day_is_damaged_after_redaction(scenario):
    everything = scenario.pg_ids()
    day_rows = scenario.pg_ids(DAY)
    scenario.export()
    scenario.redact()
    bucket, key = _only_object(scenario)
    scenario.clients.s3.delete_object(Bucket=bucket, Key=key)

    with pytest.raises(ExportError) as refused:
        scenario.export()

    assert "may hold the only copy of rows already redacted" in str(refused.value)
    assert scenario.manifest().export_id in str(refused.value)
    assert scenario.pg_ids() == everything - day_rows


# -- the real thing: least-privilege roles, every column type, composite keys ----------------------


def test_the_least_privilege_roles_export_and_redact_with_a_dropped_personal_column(
    fresh_database, pg_server, lake_env, clients
):
    """Export as the read-only role, redact as the role that can only read exported columns and delete."""
    import secrets

    from weward_pipeline.roles import PipelineRoles, drop_roles, ensure_roles, grant_catalog

    sample_data.load(
        fresh_database, end_date=dt.date(2024, 4, 1), size=sample_data.SampleSize(users=30, days=2), timezone=TIMEZONE
    )
    table = {**STEP_EVENTS, "user_column": "user_id", "pii": {"user_id": "keep", "device_id": "drop"}}
    catalog = make_catalog(table)
    suffix = secrets.token_hex(3)
    roles = PipelineRoles(
        export_role=f"t_export_{suffix}", redact_role=f"t_redact_{suffix}", erase_role=f"t_erase_{suffix}"
    )
    ensure_roles(pg_server.admin_url(), roles)
    try:
        assert grant_catalog(fresh_database, catalog, roles) == []
        scenario = Scenario(lake_env, clients, fresh_database, table)
        scenario.settings = make_settings(
            {**lake_env, "WEWARD_PG_REDACT_URL": roles.redact_url(fresh_database)}, roles.export_url(fresh_database)
        )
        everything = scenario.pg_ids()
        day_rows = scenario.pg_ids(DAY)
        scenario.export()
        # The app changes the dropped column: it is not in the lake, so the row may still go.
        scenario.execute("UPDATE step_events SET device_id = gen_random_uuid() WHERE id = %s", (min(day_rows),))

        dry = scenario.redact(dry_run=True)
        report = scenario.redact()

        assert dry.rows_would_delete == report.rows_deleted == len(day_rows)
        assert report.postgres.startswith(f"postgresql://{roles.redact_role}@")
        assert "device_id" not in report.delete_sql
        assert scenario.pg_ids() == everything - day_rows
        assert scenario.lake_ids() == day_rows
    finally:
        drop_roles(pg_server.admin_url(), roles, [fresh_database.rsplit("/", 1)[1]])


EVERY_TYPE_DDL = """
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE TABLE visits (
    shop text NOT NULL, visit_no integer NOT NULL,
    at timestamp NOT NULL,  -- local wall-clock time, as some apps store it
    amount numeric(8, 2), ratio double precision, small real, tags text[], doc jsonb, raw_doc json,
    took interval, raw bytea, u uuid, m mood, ok boolean, d date, tm time, ip inet,
    PRIMARY KEY (shop, visit_no)
);
INSERT INTO visits
SELECT 'shop-' || (g % 3), g, timestamp '2024-03-30 00:00' + g * interval '37 minutes',
       g * 1.25, g / 7.0, g / 3.0::real, ARRAY['a', NULL, 'c,d'], jsonb_build_object('g', g, 'é', true),
       '{"b": 1,  "a": [1, 2]}', make_interval(days => g, secs => g / 3.0), decode(md5(g::text), 'hex'),
       md5(g::text)::uuid, (ARRAY['sad', 'happy'])[1 + g % 2]::mood, g % 2 = 0, date '2024-01-01' + g,
       time '00:00' + g * interval '1 minute 1.5 second', ('10.0.0.' || g)::inet
FROM generate_series(1, 120) AS g;
"""


def test_fingerprints_agree_for_every_column_type_whatever_the_server_defaults(fresh_database, lake_env, clients):
    """The export (ADBC) and the redaction (psycopg) compute the same fingerprint; the database's own
    text settings (float digits, bytea, dates, time zone) do not matter: the export's are recorded."""
    database = fresh_database.rsplit("/", 1)[1]
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute(EVERY_TYPE_DDL)
        for setting, value in (
            ("extra_float_digits", "3"),
            ("bytea_output", "escape"),
            ("DateStyle", "SQL, DMY"),
            ("IntervalStyle", "sql_standard"),
            ("TimeZone", "America/New_York"),
        ):
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                    sql.Identifier(database), sql.Identifier(setting), sql.Literal(value)
                )
            )
    table = {
        "name": "visits",
        "mode": "append",
        "partition_column": "at",
        "primary_key": ["shop", "visit_no"],
        "retention_days": 1,
    }
    scenario = Scenario(lake_env, clients, fresh_database, table)

    def keys(day=None):
        query = "SELECT shop, visit_no FROM visits"
        if day:
            query += f" WHERE at >= '{day}' AND at < '{day + dt.timedelta(days=1)}'"
        with psycopg.connect(fresh_database) as conn:
            return {tuple(row) for row in conn.execute(query)}

    everything, day_rows = keys(), keys(DAY)
    assert len(day_rows) > 30
    scenario.export()
    changed = sorted(day_rows)[0]
    scenario.execute("UPDATE visits SET ratio = ratio + 1e-15 WHERE shop = %s AND visit_no = %s", changed)

    report = scenario.redact()

    assert report.kept_back == {redact.CHANGED_SINCE_EXPORT: 1}
    assert report.kept_back_keys[redact.CHANGED_SINCE_EXPORT] == [list(changed)]
    assert report.rows_deleted == len(day_rows) - 1
    assert keys() == (everything - day_rows) | {changed}
    lake = read_table(scenario.glue, clients.filesystem, "visits", DAY.isoformat())
    assert set(zip(lake.column("shop").to_pylist(), lake.column("visit_no").to_pylist())) == day_rows


def test_a_connection_lost_midway_says_what_was_deleted_and_a_re_run_finishes(scenario):
    """A failover or a DBA's pg_terminate_backend between batches."""
    everything = scenario.pg_ids()
    day_rows = scenario.pg_ids(DAY)
    scenario.export()
    order = export_order(scenario)

    def terminate_after_two_batches(report):
        if report.batches == 2:
            scenario.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'weward-redact%%'"
            )

    with pytest.raises(redact.RedactionFailed) as failed:
        scenario.redact(on_batch=terminate_after_two_batches)

    report = failed.value.report
    assert report.status == "failed" and report.rows_deleted == 2 * FAST.batch_rows
    assert "re-run to finish" in str(failed.value)
    assert scenario.pg_ids() == everything - set(order[: 2 * FAST.batch_rows])
    scenario.redact()
    assert scenario.pg_ids() == everything - day_rows
    assert scenario.lake_ids() == day_rows


def test_the_cli_dry_runs_a_range_of_days_and_deletes_only_with_execute(
    scenario, lake_env, tmp_path, monkeypatch, capsys
):
    import yaml

    from weward_pipeline.cli import main

    everything = scenario.pg_ids()
    day_rows = scenario.pg_ids(DAY)
    scenario.export()
    catalog_file = tmp_path / "tables.yaml"
    catalog_file.write_text(yaml.safe_dump({"start_date": "2024-01-01", "timezone": TIMEZONE, "tables": [STEP_EVENTS]}))
    monkeypatch.setenv("WEWARD_TABLES_FILE", str(catalog_file))
    monkeypatch.setenv("WEWARD_PG_URL", scenario.pg_url)

    assert main(["redact", "step_events", "2024-03-30", "--to", "2024-03-31", "--batch-rows", "40"]) == 1
    out = capsys.readouterr().out
    assert "2024-03-30  refused (not_published)" in out
    assert f"2024-03-31  {len(day_rows):>9} {len(day_rows):>9}      0      0  dry_run" in out
    assert "dry run: nothing was written" in out and 'DELETE FROM "public"."step_events"' in out
    assert scenario.pg_ids() == everything

    assert main(["redact", "step_events", "2024-03-31", "--execute", "--pause-s", "0"]) == 0
    assert f"{len(day_rows):>9}      0      0  done" in capsys.readouterr().out
    assert scenario.pg_ids() == everything - day_rows
    assert scenario.lake_ids() == day_rows


def test_the_cli_says_a_refusal_once_per_range_prints_pure_json_and_one_line_for_a_wrong_password(
    scenario, lake_env, tmp_path, monkeypatch, capsys
):
    import json
    import re

    import yaml

    from weward_pipeline.cli import main

    scenario.export()
    catalog_file = tmp_path / "tables.yaml"
    catalog_file.write_text(yaml.safe_dump({"start_date": "2024-01-01", "timezone": TIMEZONE, "tables": [STEP_EVENTS]}))
    monkeypatch.setenv("WEWARD_TABLES_FILE", str(catalog_file))
    monkeypatch.setenv("WEWARD_PG_URL", scenario.pg_url)

    # Ten days inside the retention (the real clock: 2024 is long past, so push the retention out).
    recent = dt.date.today() - dt.timedelta(days=12)
    assert main(["redact", "step_events", recent.isoformat(), "--to", (recent + dt.timedelta(days=9)).isoformat()]) == 1
    out = capsys.readouterr().out
    assert (
        out.count("refused") == 1
        and f"{recent} .. {recent + dt.timedelta(days=9)} (10 days)  refused (inside_retention)" in out
    )

    assert main(["redact", "step_events", "2024-03-30", "--to", "2024-03-31", "--json"]) == 1
    days = json.loads(capsys.readouterr().out)  # nothing but JSON on stdout
    assert [d["day"] for d in days] == ["2024-03-30", "2024-03-31"]
    assert days[0]["status"] == "refused" and days[0]["reason"] == "not_published" and days[1]["status"] == "dry_run"

    assert main(["redact", "step_evnts", "2024-03-31"]) == 2
    assert "did you mean step_events?" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["redact", "step_events", "2024-13-31"])
    assert usage.value.code == 2 and "'2024-13-31' is not a day; write it as YYYY-MM-DD" in capsys.readouterr().err

    wrong = re.sub(r"//[^@/]*@", "//nobody:wrong-password@", scenario.pg_url)
    monkeypatch.setenv("WEWARD_PG_URL", wrong)
    assert main(["redact", "step_events", "2024-03-31", "--to", "2024-04-01"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1
    assert "cannot connect to PostgreSQL" in captured.err and "wrong-password" not in captured.err
