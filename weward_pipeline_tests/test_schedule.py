"""The daily schedule, evaluated for given ticks (DST days included), its settings, and freshness."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster._core.test_utils import freeze_time
from dagster._utils.schedules import cron_string_iterator

from weward_pipeline.config import ConfigError
from weward_pipeline.defs.assets import lake_key
from weward_pipeline.defs.factory import build_definitions
from weward_pipeline.defs.schedules import (
    DAILY_EXPORT_JOB,
    DAILY_EXPORT_SCHEDULE,
    FRESHNESS_SENSOR,
    ScheduleSettings,
)
from weward_pipeline_tests.conftest import make_catalog

PARIS = ZoneInfo("Europe/Paris")
PLACEHOLDER_ENV = {"WEWARD_PG_URL": "postgresql://u:p@localhost:1/db", "WEWARD_LAKE_URL": "s3://bucket/prefix"}
TABLES = (
    {"name": "step_events", "mode": "append", "partition_column": "created_at", "primary_key": ["id"]},
    {"name": "users", "mode": "snapshot", "primary_key": ["id"]},
)


@pytest.fixture
def defs(monkeypatch):
    for key, value in PLACEHOLDER_ENV.items():
        monkeypatch.setenv(key, value)
    return build_definitions(make_catalog(*TABLES, start_date="2024-01-01"), schedules=ScheduleSettings())


def evaluate(defs: dg.Definitions, tick: dt.datetime):
    schedule = defs.resolve_schedule_def(DAILY_EXPORT_SCHEDULE)
    context = dg.build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def())
    return schedule.evaluate_tick(context)


def ticks(cron: str, after: dt.datetime, count: int) -> list[dt.datetime]:
    """The schedule's next ticks as the daemon computes them (Dagster's own cron iterator)."""
    iterator = cron_string_iterator(after.timestamp(), cron, "Europe/Paris")
    return [next(iterator) for _ in range(count)]


def test_the_schedule_exports_yesterday_of_every_table_at_2am_paris_time(defs):
    schedule = defs.resolve_schedule_def(DAILY_EXPORT_SCHEDULE)
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "Europe/Paris"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == DAILY_EXPORT_JOB

    result = evaluate(defs, dt.datetime(2024, 3, 20, 2, 0, tzinfo=PARIS))
    [request] = result.run_requests
    assert request.partition_key == "2024-03-19"
    assert request.run_key == "2024-03-19"  # a daemon catching up never exports a day twice
    job = defs.resolve_job_def(DAILY_EXPORT_JOB)
    assert set(job.asset_layer.executable_asset_keys) == {lake_key("step_events"), lake_key("users")}


def test_around_the_spring_dst_change_every_day_is_exported_once(defs):
    # 2024-03-31: 02:00 does not exist in Paris (clocks jump 02:00 -> 03:00); the tick moves to 03:00.
    schedule_ticks = ticks("0 2 * * *", dt.datetime(2024, 3, 29, 12, tzinfo=PARIS), 4)
    assert [t.isoformat() for t in schedule_ticks] == [
        "2024-03-30T02:00:00+01:00",
        "2024-03-31T03:00:00+02:00",
        "2024-04-01T02:00:00+02:00",
        "2024-04-02T02:00:00+02:00",
    ]
    days = [evaluate(defs, t).run_requests[0].partition_key for t in schedule_ticks]
    assert days == ["2024-03-29", "2024-03-30", "2024-03-31", "2024-04-01"]  # 03-31 (23 h) included


def test_around_the_autumn_dst_change_the_repeated_hour_gives_one_run(defs):
    # 2024-10-27: 02:00-03:00 happens twice in Paris; the daemon ticks once.
    schedule_ticks = ticks("0 2 * * *", dt.datetime(2024, 10, 25, 12, tzinfo=PARIS), 3)
    assert [t.date().isoformat() for t in schedule_ticks] == ["2024-10-26", "2024-10-27", "2024-10-28"]
    days = [evaluate(defs, t).run_requests[0].partition_key for t in schedule_ticks]
    assert days == ["2024-10-25", "2024-10-26", "2024-10-27"]  # 10-27 has 25 hours, exported once


def test_a_tick_just_after_utc_midnight_uses_the_paris_date(defs):
    # 00:30 UTC on March 20 is 01:30 in Paris: yesterday is March 19 either way, but 23:30 UTC on
    # March 19 is already 00:30 on March 20 in Paris, whose yesterday is March 19 (not March 18).
    tick = dt.datetime(2024, 3, 19, 23, 30, tzinfo=dt.UTC)
    assert evaluate(defs, tick).run_requests[0].partition_key == "2024-03-19"


def test_no_run_is_requested_for_days_before_the_catalog_start(defs):
    result = evaluate(defs, dt.datetime(2024, 1, 1, 2, 0, tzinfo=PARIS))
    assert not result.run_requests
    assert "before the catalog's start_date" in result.skip_message


def test_the_hour_or_the_whole_cron_come_from_the_environment():
    assert ScheduleSettings.from_env({"WEWARD_SCHEDULE_HOUR": "5"}).cron == "0 5 * * *"
    assert ScheduleSettings.from_env({"WEWARD_SCHEDULE_CRON": "30 1 * * 1-5"}).cron == "30 1 * * 1-5"
    assert ScheduleSettings.from_env({}).cron == "0 2 * * *"
    assert not ScheduleSettings.from_env({"WEWARD_SCHEDULE_DEFAULT_STATUS": "stopped"}).running_by_default
    assert ScheduleSettings.from_env({"WEWARD_FRESHNESS_DEADLINE_HOUR": "10"}).freshness_deadline_cron == "0 10 * * *"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WEWARD_SCHEDULE_HOUR": "25"}, "WEWARD_SCHEDULE_HOUR must be an hour of the day, 0 to 23"),
        ({"WEWARD_SCHEDULE_HOUR": "2am"}, "WEWARD_SCHEDULE_HOUR must be an hour of the day"),
        ({"WEWARD_SCHEDULE_CRON": "every day"}, "WEWARD_SCHEDULE_CRON 'every day' is not a cron expression"),
        ({"WEWARD_SCHEDULE_CRON": "0 2 * * *", "WEWARD_SCHEDULE_HOUR": "3"}, "not both"),
        ({"WEWARD_FRESHNESS_DEADLINE_HOUR": "-1"}, "WEWARD_FRESHNESS_DEADLINE_HOUR must be an hour"),
        ({"WEWARD_SCHEDULE_DEFAULT_STATUS": "paused"}, "running or stopped"),
    ],
)
def test_bad_schedule_settings_are_refused_with_the_variable_and_the_fix(env, message):
    with pytest.raises(ConfigError, match=message):
        ScheduleSettings.from_env(env)


def test_the_configured_hour_reaches_the_schedule(monkeypatch):
    for key, value in PLACEHOLDER_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WEWARD_SCHEDULE_HOUR", "4")
    defs = build_definitions(make_catalog(*TABLES))
    assert defs.resolve_schedule_def(DAILY_EXPORT_SCHEDULE).cron_schedule == "0 4 * * *"


def run_freshness(
    defs: dg.Definitions, instance: dg.DagsterInstance, now: dt.datetime
) -> dict[str, dg.AssetCheckEvaluation]:
    job = defs.resolve_implicit_global_asset_job_def()
    checks = [key for key in defs.resolve_asset_graph().asset_check_keys if key.name == "freshness_check"]
    with freeze_time(now):
        result = job.get_subset(asset_selection=set(), asset_check_selection=set(checks)).execute_in_process(
            instance=instance
        )
    return {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}


def test_freshness_turns_red_when_yesterday_is_still_missing_after_the_deadline(defs):
    assert defs.resolve_sensor_def(FRESHNESS_SENSOR).default_status == dg.DefaultSensorStatus.RUNNING
    with dg.DagsterInstance.ephemeral() as instance:
        for day in ("2024-03-30", "2024-03-31"):
            instance.report_runless_asset_event(dg.AssetMaterialization(lake_key("step_events"), partition=day))

        # April 2, 07:00 Paris: before the 08:00 deadline, March 31 is the newest day expected.
        early = run_freshness(defs, instance, dt.datetime(2024, 4, 2, 7, 0, tzinfo=PARIS))
        assert early["step_events"].passed
        assert not early["users"].passed  # never exported at all
        # 09:00: April 1 should be there by now; step_events' newest day is a day behind: red.
        late = run_freshness(defs, instance, dt.datetime(2024, 4, 2, 9, 0, tzinfo=PARIS))
        assert not late["step_events"].passed
        assert late["step_events"].severity == dg.AssetCheckSeverity.ERROR
        assert "2024-04-01" in late["step_events"].description

        # The export of April 1 lands (e.g. a backfill): green again.
        instance.report_runless_asset_event(dg.AssetMaterialization(lake_key("step_events"), partition="2024-04-01"))
        again = run_freshness(defs, instance, dt.datetime(2024, 4, 2, 9, 5, tzinfo=PARIS))
        assert again["step_events"].passed
