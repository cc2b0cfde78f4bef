"""Pacing (pacing.py): batch size towards a target duration, a duty cycle, back-offs and stops on the
database's signals; then the same through redaction and the export against the real server, where
the signals are real (sessions running, a session waiting for the export's lock)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from weward_pipeline.config import ConfigError
from weward_pipeline.export import export_day
from weward_pipeline.extract import ExtractLimits
from weward_pipeline.failures import transient_reason
from weward_pipeline.pacing import Pacer, PacingLimits, PacingStopped, Signals
from weward_pipeline.redact import RedactionLimits
from weward_pipeline_tests.conftest import make_catalog
from weward_pipeline_tests.test_redaction import DAY, STEP_EVENTS, Scenario, app_db  # noqa: F401 - fixture

QUIET = Signals(canary_ms=1.0, active_backends=1, lock_waiters=0, replica_lag_s=None)


class Clock:
    """Time that moves only when the pacer sleeps or a batch "works": the control loop, exactly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def pacer(limits: PacingLimits, signals=lambda: QUIET, **kwargs) -> tuple[Pacer, Clock]:
    clock = Clock()
    return Pacer(limits, signals, sleep=clock.sleep, clock=clock, what="t 2024-03-31", **kwargs), clock


def test_the_batch_size_follows_the_target_duration_at_most_doubling_or_halving_a_step():
    paced, clock = pacer(PacingLimits(target_batch_s=0.1, duty_cycle=1.0), start_rows=1000)
    sizes = []
    for _ in range(8):  # the server deletes 20,000 rows a second: 2,000 rows make the 0.1 s target
        rows = paced.rows()
        sizes.append(rows)
        clock.now += rows / 20_000
        paced.done(rows, rows / 20_000)
    assert sizes[:3] == [1000, 2000, 2000] and sizes[-1] == 2000
    slow, clock = pacer(PacingLimits(target_batch_s=0.1, duty_cycle=1.0), start_rows=1000)
    slow.done(1000, 1.0)  # 10x too slow: halved, not cut tenfold
    assert slow.rows() == 500


def test_the_pause_keeps_the_work_to_the_duty_cycle():
    paced, clock = pacer(PacingLimits(duty_cycle=0.25))
    assert paced.done(500, 0.2) == pytest.approx(0.6)  # 0.2 s of work, then 0.6 s of rest
    report = paced.report.as_dict(paced.limits)
    assert report["work_s"] == 0.2 and report["sleep_s"] == 0.6 and report["duty_cycle_measured"] == 0.25


def test_a_pinned_batch_size_and_pause_are_kept_when_the_database_is_quiet():
    paced, clock = pacer(PacingLimits(), fixed_rows=25, fixed_pause_s=0)
    paced.done(25, 5.0)
    assert paced.rows() == 25 and clock.slept == []


def test_a_busy_server_doubles_the_pause_and_halves_the_batch_until_it_is_quiet_again():
    busy = Signals(canary_ms=80.0, active_backends=3, lock_waiters=0, replica_lag_s=None)
    seen = iter([busy, busy, QUIET, QUIET, QUIET])
    messages = []
    paced, clock = pacer(
        PacingLimits(duty_cycle=0.5, check_every_s=0, max_canary_ms=25),
        lambda: next(seen),
        start_rows=1000,
        say=messages.append,
    )
    pauses = [paced.done(1000, 0.1) for _ in range(5)]
    assert pauses[0] == pytest.approx(0.2) and pauses[1] == pytest.approx(0.4)  # 0.1 s at 50%, doubled, doubled
    assert pauses[2] == pytest.approx(0.1)  # quiet again: one step back ...
    assert pauses[-1] == pytest.approx(0.1)  # ... then the duty cycle alone
    assert paced.report.back_offs == {"canary_ms": 2}
    assert paced.report.back_off_events[0]["signals"]["canary_ms"] == 80.0
    assert paced.report.worst["canary_ms"] == 80.0
    assert any("`SELECT 1` took 80 ms" in m for m in messages)


def test_a_critical_level_that_lasts_stops_the_run_naming_the_signal_and_the_knob():
    critical = Signals(canary_ms=2000.0, active_backends=1, lock_waiters=0, replica_lag_s=None)
    paced, clock = pacer(PacingLimits(check_every_s=0, critical_for_s=3), lambda: critical)
    with pytest.raises(PacingStopped) as stopped:
        for _ in range(100):
            clock.now += 1
            paced.done(100, 0.05)
    assert clock.now >= 3
    assert "critical_canary_ms" in str(stopped.value) and "`pacing:`" in str(stopped.value)
    assert transient_reason(stopped.value) is not None  # retried later by Dagster


def test_a_session_waiting_for_the_exports_lock_stops_it_at_once():
    blocked = Signals(canary_ms=1.0, active_backends=1, lock_waiters=1, replica_lag_s=None)
    paced, _ = pacer(PacingLimits(check_every_s=0, critical_lock_waiters=0, critical_for_s=600), lambda: blocked)
    with pytest.raises(PacingStopped, match="waited for a lock the pipeline holds"):
        paced.done(100, 0.05)


def test_run_settings_override_the_tables_which_override_the_defaults_and_typos_are_refused():
    limits = PacingLimits().merged({"duty_cycle": 0.2, "max_canary_ms": 40}, {"duty_cycle": 0.8})
    assert (limits.duty_cycle, limits.max_canary_ms) == (0.8, 40)
    with pytest.raises(ConfigError, match="unknown pacing setting 'duty'"):
        PacingLimits().merged({"duty": 0.5})
    with pytest.raises(ConfigError, match="duty_cycle must be in"):
        PacingLimits().merged({"duty_cycle": 0})


def test_a_tables_pacing_in_the_catalog_is_validated_with_the_table_named():
    table = make_catalog({**STEP_EVENTS, "pacing": {"duty_cycle": 0.3}}).tables[0]
    assert table.pacing == {"duty_cycle": 0.3}
    with pytest.raises(ConfigError, match="table 'step_events': `pacing`: .*critical_canary_ms"):
        make_catalog({**STEP_EVENTS, "pacing": {"max_canary_ms": 50, "critical_canary_ms": 10}})


# -- against the real server ---------------------------------------------------------------------


@pytest.fixture
def scenario(app_db, lake_env, clients):
    return Scenario(lake_env, clients, app_db)


def busy_sessions(url: str, count: int, seconds: float) -> list[threading.Thread]:
    """`count` application sessions running a statement (state 'active') for `seconds`."""

    def run():
        with psycopg.connect(url, autocommit=True, application_name="app") as conn:
            conn.execute("SELECT pg_sleep(%s)", (seconds,))

    threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def test_a_redaction_at_default_settings_sizes_its_batches_rests_and_says_so_in_its_report(scenario):
    day_rows = scenario.pg_ids(DAY)
    scenario.export()
    report = scenario.redact(
        limits=RedactionLimits(pacing={"target_batch_s": 0.02, "min_batch_rows": 10, "duty_cycle": 0.5})
    )
    assert report.status == "done" and report.rows_deleted == len(day_rows)
    pacing = report.pacing
    assert pacing["batches"] == report.batches and pacing["rows"] == len(day_rows)
    assert pacing["sleep_s"] > 0 and pacing["checks"] >= 1
    assert 0.2 < pacing["duty_cycle_measured"] <= 0.75  # ~50%, with the probes' own time around it
    assert pacing["limits"]["duty_cycle"] == 0.5


def test_a_redaction_backs_off_while_the_app_keeps_the_server_busy_and_stops_when_it_stays_critical(scenario):
    scenario.export()
    threads = busy_sessions(scenario.pg_url, 3, 6)
    wait_for_active(scenario.pg_url, 3)
    report = scenario.redact(
        limits=RedactionLimits(
            batch_rows=10,
            pause_s=0,
            pacing={
                "check_every_s": 0.01,
                "max_active_backends": 1,
                "critical_active_backends": 2,
                "critical_for_s": 0.5,
            },
        )
    )
    for thread in threads:
        thread.join()
    assert report.status == "stopped"
    assert "3 application queries were running at once" in report.why_quit
    assert "critical_active_backends" in report.why_quit
    assert report.pacing["back_offs"]["active_backends"] >= 1
    assert report.rows_deleted < report.rows_in_export  # it stopped early; a re-run goes on


def wait_for_active(url: str, count: int) -> None:
    deadline = time.monotonic() + 10
    with psycopg.connect(url, autocommit=True) as conn:
        while (
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'app' AND state = 'active'"
            ).fetchone()[0]
            < count
        ):
            assert time.monotonic() < deadline, "the app sessions did not start"
            time.sleep(0.02)


def test_an_export_stops_at_once_when_a_migration_waits_for_its_lock_and_publishes_nothing(scenario):
    """A DDL waiting for the export's ACCESS SHARE lock would hold the whole application behind it."""
    migration_error: list[BaseException] = []

    def migrate():
        wait_for_export(scenario.pg_url)
        try:
            with psycopg.connect(scenario.pg_url, autocommit=True, application_name="migration") as conn:
                conn.execute("SET lock_timeout = '20s'")
                conn.execute("ALTER TABLE step_events ADD COLUMN note text")
        except BaseException as exc:  # noqa: BLE001 - reported below
            migration_error.append(exc)

    migration = threading.Thread(target=migrate, daemon=True)
    migration.start()
    started = time.monotonic()
    # Slow reading (small batches, 200 rows/s) keeps the export's snapshot, and its lock, for a while.
    limits = ExtractLimits(batch_bytes=2048, max_rows_per_second=200, pacing={"check_every_s": 0.01})
    with pytest.raises(PacingStopped, match="waited for a lock the pipeline holds"):
        export_day(scenario.settings, scenario.catalog, scenario.table, DAY, clients=scenario.clients, limits=limits)
    migration.join(30)
    assert not migration_error and time.monotonic() - started < 15  # the migration went through, soon
    assert scenario.glue.get_partition("step_events", DAY.isoformat()) is None


def wait_for_export(url: str) -> None:
    deadline = time.monotonic() + 20
    with psycopg.connect(url, autocommit=True) as conn:
        while not conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE a.application_name LIKE 'weward-export%' AND l.relation = 'step_events'::regclass"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the export did not start reading"
            time.sleep(0.01)


def test_the_redact_command_takes_the_runs_pacing_over_the_tables(scenario, tmp_path, monkeypatch, capsys):
    import json

    import yaml

    from weward_pipeline.cli import main

    scenario.export()
    table = {**STEP_EVENTS, "pacing": {"duty_cycle": 0.3, "max_canary_ms": 40}}
    catalog_file = tmp_path / "tables.yaml"
    catalog_file.write_text(yaml.safe_dump({"start_date": "2024-01-01", "timezone": "Europe/Paris", "tables": [table]}))
    monkeypatch.setenv("WEWARD_TABLES_FILE", str(catalog_file))
    monkeypatch.setenv("WEWARD_PG_URL", scenario.pg_url)
    assert (
        main(["redact", "step_events", DAY.isoformat(), "--duty-cycle", "0.9", "--target-batch-s", "0.05", "--json"])
        == 0
    )
    (report,) = json.loads(capsys.readouterr().out)
    limits = report["pacing"]["limits"]
    assert (limits["duty_cycle"], limits["target_batch_s"], limits["max_canary_ms"]) == (0.9, 0.05, 40)
    assert main(["redact", "step_events", DAY.isoformat(), "--duty-cycle", "2"]) == 2
    assert "duty_cycle must be in (0, 1]" in capsys.readouterr().err
