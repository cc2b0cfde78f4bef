"""A killed export frees its `postgres_source` pool slots within a bounded time, with or without the
Dagster daemon (issue 11, defect 6), on the production deploy/dagster.yaml and the local PostgreSQL.

The rule is weward_pipeline/defs/liveness.py's: runs beat; a run holding slots whose beat is older
than STALE_AFTER_BEATS beats is failed and its slots freed, by the next run or entry point, by any
run waiting for a slot, or by the daemon's sensor. The end-to-end tests SIGKILL a real
`dagster asset materialize` (the production export command) while its two export steps hold both
slots, with WEWARD_RUN_HEARTBEAT_SECONDS=1 so that the bound is seconds, not minutes.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import dagster as dg
import psycopg
import pytest
from psycopg import sql

from weward_pipeline.config import ConfigError
from weward_pipeline.defs import liveness
from weward_pipeline.defs.assets import SOURCE_POOL
from weward_pipeline_tests.conftest import materialize_command
from weward_pipeline_tests.test_production_dagster_storage import production_dagster_home

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BEAT = 1  # seconds, in the end-to-end tests
BOUND = (liveness.STALE_AFTER_BEATS + 1) * BEAT  # a killed run's slots are free within this of its death
SAMPLE_TABLES = (
    "users",
    "step_events",
    "ward_transactions",
    "reward_offers",
    "reward_purchases",
    "contest_participations",
)


@pytest.fixture
def instance(fresh_database, tmp_path, monkeypatch):
    home = production_dagster_home(fresh_database, tmp_path, monkeypatch)
    instance = dg.DagsterInstance.from_config(str(home))
    instance.event_log_storage.initialize_concurrency_limit_to_default(SOURCE_POOL)  # as a run's first claim does
    yield instance
    instance.dispose()


def holding_a_slot(instance, *, status=dg.DagsterRunStatus.STARTED, tags=None, step="lake__step_events") -> str:
    """A run as a killed worker leaves it: `status`, `tags`, one postgres_source slot claimed."""
    run_id = str(uuid.uuid4())
    instance.add_run(dg.DagsterRun(job_name="__ASSET_JOB", run_id=run_id, status=status, tags=tags or {}))
    assert instance.event_log_storage.claim_concurrency_slot(SOURCE_POOL, run_id, step).is_claimed
    return run_id


def claimed(instance) -> list[str]:
    return sorted(slot.run_id for slot in instance.event_log_storage.get_concurrency_info(SOURCE_POOL).claimed_slots)


def beat_tags(seconds_ago: float, interval: int = 30) -> dict[str, str]:
    at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds_ago)
    return {liveness.HEARTBEAT_TAG: at.isoformat(timespec="seconds"), liveness.HEARTBEAT_SECONDS_TAG: str(interval)}


# -- Dagster's behaviour the rule relies on (the calls are the run-monitoring daemon's, not @public) --


def test_dagster_keeps_a_failed_runs_slot_until_freed_and_lists_its_run(instance):
    run_id = holding_a_slot(instance)
    storage = instance.event_log_storage
    assert run_id in storage.get_concurrency_run_ids()
    instance.report_run_failed(instance.get_run_by_id(run_id), message="killed")
    assert claimed(instance) == [run_id]  # a failed mark alone keeps the slot (defect 6)
    storage.free_concurrency_slots_for_run(run_id)
    assert claimed(instance) == [] and run_id not in storage.get_concurrency_run_ids()
    assert storage.get_concurrency_info(SOURCE_POOL).slot_count == 2  # deploy/dagster.yaml's limit, intact


# -- The rule --------------------------------------------------------------------------------------


def test_a_run_whose_beat_is_stale_is_failed_and_its_slot_freed_a_live_one_is_left_alone(instance):
    live = holding_a_slot(instance, tags=beat_tags(seconds_ago=60))  # 2 beats missed: a slow database, alive
    dead = holding_a_slot(instance, tags=beat_tags(seconds_ago=400), step="lake__users")  # 13 beats missed
    reaped = liveness.reap_dead_runs(instance)
    assert [r.run_id for r in reaped] == [dead]
    assert claimed(instance) == [live]
    assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(live).status == dg.DagsterRunStatus.STARTED
    assert re.fullmatch(
        rf"run {dead[:8]} \(STARTED\): its worker stopped beating 40\d s ago \(last beat \S+, one every "
        r"30 s; dead after 10 missed\): killed or stopped; pool slots freed",
        str(reaped[0]),
    ), str(reaped[0])
    failure = instance.all_logs(dead, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert [e.message for e in failure] == [
        f"Marked failed by weward_pipeline: {reaped[0].reason}. Its pool slots were freed."
    ]


def test_each_run_is_judged_by_its_own_beat_interval(instance):
    slow = holding_a_slot(instance, tags=beat_tags(seconds_ago=400, interval=60))  # 6.7 of its beats: alive
    fast = holding_a_slot(instance, tags=beat_tags(seconds_ago=20, interval=1), step="lake__users")  # 20 beats: dead
    assert [r.run_id for r in liveness.reap_dead_runs(instance)] == [fast]
    assert claimed(instance) == [slow]


def test_an_ended_run_is_freed_once_its_beat_stops_a_run_without_beat_after_a_day(instance):
    ended_silent = holding_a_slot(instance, status=dg.DagsterRunStatus.FAILURE)
    # Marked failed (the UI, the daemon's run monitoring) while its worker still beats: its steps still read.
    ended_beating = holding_a_slot(instance, status=dg.DagsterRunStatus.FAILURE, tags=beat_tags(5), step="lake__users")
    assert [r.run_id for r in liveness.reap_dead_runs(instance)] == [ended_silent]
    assert claimed(instance) == [ended_beating]
    unbeating = holding_a_slot(instance, step="lake__reward_offers")  # an older version's run, in the freed slot
    assert liveness.reap_dead_runs(instance) == []

    a_day_later = time.time() + liveness.UNBEATING_MAX_AGE.total_seconds() + 60
    reaped = liveness.reap_dead_runs(instance, now=a_day_later)
    assert {r.run_id for r in reaped} == {ended_beating, unbeating}
    assert instance.get_run_by_id(unbeating).status == dg.DagsterRunStatus.FAILURE
    assert claimed(instance) == []


def test_a_run_being_canceled_when_its_worker_died_ends_canceled(instance):
    run_id = holding_a_slot(instance, status=dg.DagsterRunStatus.CANCELING, tags=beat_tags(400))
    assert len(liveness.reap_dead_runs(instance)) == 1
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED and claimed(instance) == []


def test_a_bad_heartbeat_interval_is_one_clear_error():
    assert liveness.heartbeat_seconds({}) == 30
    assert liveness.heartbeat_seconds({"WEWARD_RUN_HEARTBEAT_SECONDS": "5"}) == 5
    with pytest.raises(
        ConfigError, match=r"WEWARD_RUN_HEARTBEAT_SECONDS must be a whole number of seconds, at least 1 \(got '0s'\)"
    ):
        liveness.heartbeat_seconds({"WEWARD_RUN_HEARTBEAT_SECONDS": "0s"})


# -- End to end: a real export SIGKILLed while it holds both slots ----------------------------------


@pytest.fixture
def production(sample_database, lake_env, fresh_database, tmp_path, monkeypatch):
    """Environment of `dagster asset materialize` on the production instance (deploy/dagster.yaml,
    default run launcher), the sample database, a fresh lake; heartbeat every BEAT second."""
    bucket = lake_env["WEWARD_LAKE_URL"].removeprefix("s3://").split("/")[0]
    home = production_dagster_home(fresh_database, tmp_path, monkeypatch, compute_log_bucket=bucket)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WEWARD_PG_URL": sample_database,
        "WEWARD_PII_KEY": "k" * 48,
        liveness.HEARTBEAT_ENV: str(BEAT),
        "WEWARD_SCHEDULE_DEFAULT_STATUS": "stopped",
        "DAGSTER_HOME": str(home),
    }
    instance = dg.DagsterInstance.from_config(str(home))
    yield env, instance, tmp_path
    instance.dispose()


def materialize(env, selection: str, day: str, log: Path) -> subprocess.Popen:
    """The export task's command (infra: dagster asset materialize ... --partition <day>), in its own session."""
    with log.open("w") as out:
        return subprocess.Popen(
            materialize_command(selection, day),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for(condition, timeout: float, what: str, *, logs: tuple[Path, ...] = ()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    tails = "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text().splitlines()[-30:]) for p in logs if p.exists())
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tails}")


def kill_an_export_holding_both_slots(env, instance, tmp_path, sample_database) -> tuple[str, float]:
    """Start the scheduled export (every table) while the source tables are locked, so its first two
    steps claim both slots and wait on the lock; SIGKILL its whole process group (a task stopped or
    OOM-killed); returns the dead run's id and the time of death."""
    log = tmp_path / "killed-export.log"
    with psycopg.connect(sample_database) as lock, psycopg.connect(sample_database, autocommit=True) as watch:
        lock.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in SAMPLE_TABLES)
            )
        )
        # Two tables read from PostgreSQL (the scheduled `key:lake/*` adds steps that change nothing here).
        export = materialize(env, "key:lake/step_events or key:lake/ward_transactions", "2024-03-30", log)
        try:

            def both_slots_held_and_reading():
                holders = set(claimed(instance))
                waiting = watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND application_name LIKE 'weward-export %'"
                ).fetchone()[0]
                return len(claimed(instance)) == 2 and len(holders) == 1 and waiting == 2 and holders.pop()

            run_id = wait_for(
                both_slots_held_and_reading, 120, "the export's two steps to hold both slots", logs=(log,)
            )
        finally:
            os.killpg(export.pid, signal.SIGKILL)
            export.wait()
            died = time.time()
        lock.rollback()
    # What Dagster leaves: the run STARTED, both slots held by it, for good.
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
    assert claimed(instance) == [run_id, run_id]
    return run_id, died


def failed_at(instance, run_id: str, died: float) -> float:
    """When the dead run was marked failed; never before STALE_AFTER_BEATS beats of silence."""
    (event,) = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert event.message.startswith("Marked failed by weward_pipeline: its worker stopped beating"), event.message
    last_beat = dt.datetime.fromisoformat(instance.get_run_by_id(run_id).tags[liveness.HEARTBEAT_TAG]).timestamp()
    assert last_beat <= died
    # Never while the dead run could still be alive: a live run beats again within one beat.
    assert event.timestamp - last_beat > liveness.STALE_AFTER_BEATS * BEAT, event.timestamp - last_beat
    return event.timestamp


def test_without_the_daemon_the_next_export_frees_a_killed_exports_slots_within_the_bound(production, sample_database):
    env, instance, tmp_path = production
    dead, died = kill_an_export_holding_both_slots(env, instance, tmp_path, sample_database)

    # The next scheduled task: without the rule it would wait forever for a slot.
    log = tmp_path / "next-export.log"
    proc = materialize(env, "key:lake/step_events", "2024-03-31", log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]

    run = instance.get_run_records(filters=dg.RunsFilter(tags={"dagster/partition": "2024-03-31"}))[0]
    assert run.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    freed = failed_at(instance, dead, died)
    # Within the bound once the next run was up.
    assert freed <= max(died + BOUND, run.start_time + BEAT) + 2, (freed - died, run.start_time - died)
    assert claimed(instance) == []
    # deploy/dagster.yaml's compute logs: the step logs of the run are in S3 under the production prefix.
    bucket = env["DAGSTER_COMPUTE_LOG_BUCKET"]
    keys = [
        o["Key"]
        for o in boto3.client("s3").list_objects_v2(
            Bucket=bucket, Prefix=f"_dagster/compute-logs/storage/{run.dagster_run.run_id}/"
        )["Contents"]
    ]
    assert any(k.endswith(".err") for k in keys), keys


def test_with_the_daemon_its_sensor_frees_a_killed_exports_slots_within_the_bound(production, sample_database):
    env, instance, tmp_path = production
    daemon_log = tmp_path / "daemon.log"
    with daemon_log.open("w") as out:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-m", "weward_pipeline.definitions"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: f"Checking for new runs for sensor: {liveness.DEAD_RUN_SENSOR}" in daemon_log.read_text(),
            180,
            "the daemon to evaluate the dead-run sensor",
            logs=(daemon_log,),
        )
        dead, died = kill_an_export_holding_both_slots(env, instance, tmp_path, sample_database)
        wait_for(lambda: claimed(instance) == [], 60, "the sensor to free the slots", logs=(daemon_log,))
        freed = failed_at(instance, dead, died)
        # The sensor evaluates every 2 beats; the daemon's sensor loop adds a few seconds.
        assert freed - died <= BOUND + 2 * BEAT + 5, freed - died
        assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        finally:
            # The daemon's code server (`dagster api grpc`, same process group) outlives a SIGTERMed
            # daemon: nothing of the test may keep running after it.
            try:
                os.killpg(daemon.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            daemon.wait()


def test_every_job_of_the_code_location_beats_and_the_sensor_runs_by_default():
    """The scheduled export (`dagster asset materialize`: the asset job), the daemon's daily_export and
    the erasure task (`dagster job execute -j gdpr_erasure`) all run on the beating executor."""
    from weward_pipeline.definitions import defs
    from weward_pipeline.defs.factory import STEP_EXECUTOR

    jobs = [
        defs.resolve_implicit_global_asset_job_def(),
        defs.resolve_job_def("daily_export"),
        defs.resolve_job_def("gdpr_erasure"),
    ]
    assert [job.executor_def.executor_creation_fn for job in jobs] == [STEP_EXECUTOR.executor_creation_fn] * 3
    sensor = defs.resolve_sensor_def(liveness.DEAD_RUN_SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING and sensor.minimum_interval_seconds == 60
