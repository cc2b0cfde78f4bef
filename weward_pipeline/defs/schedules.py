"""When exports run: the daily job and its schedule, and the freshness checks that say when they did not.

The schedule runs through the Dagster daemon, in the catalog's time zone, a little after local
midnight: at 02:00 (WEWARD_SCHEDULE_HOUR) it requests yesterday's partition of every `lake/*`
asset. Each tick maps to exactly one day (run key and tag `weward/day`); after daemon downtime the
scheduler replays up to 5 missed ticks (Dagster's max_catchup_runs), i.e. exports the missed days.
On DST days the tick still comes once: 03:00 when 02:00 does not exist, the later 02:00 when it
happens twice. Older gaps are a backfill from the UI.

Freshness is checked per table with Dagster's time-partition freshness checks: from the deadline
(08:00 local by default, WEWARD_FRESHNESS_DEADLINE_HOUR) the check of `lake/<t>` fails (red in
the UI) while yesterday's partition of that table has not been exported; i.e. the table's
newest day is a day behind. A sensor re-evaluates the checks when they can turn stale.
"""

import datetime as dt
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster._utils.schedules import is_valid_cron_string

from weward_pipeline.config import Catalog, ConfigError
from weward_pipeline.defs.assets import lake_key

DAILY_EXPORT_JOB = "daily_export"
DAILY_EXPORT_SCHEDULE = "daily_export_schedule"
FRESHNESS_SENSOR = "lake_freshness_sensor"

DEFAULT_HOUR = 2
# 6 h after the 02:00 run: room for the longest table and three retries with backoff, and still
# red before analysts start their day.
DEFAULT_FRESHNESS_DEADLINE_HOUR = 8


@dataclass(frozen=True)
class ScheduleSettings:
    """When the daily export runs and when a missing day turns red, in the catalog's time zone."""

    cron: str = f"0 {DEFAULT_HOUR} * * *"
    freshness_deadline_cron: str = f"0 {DEFAULT_FRESHNESS_DEADLINE_HOUR} * * *"
    running_by_default: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ScheduleSettings":
        env = os.environ if env is None else env
        cron = env.get("WEWARD_SCHEDULE_CRON", "").strip()
        hour = _hour(env, "WEWARD_SCHEDULE_HOUR", DEFAULT_HOUR)
        if cron and env.get("WEWARD_SCHEDULE_HOUR"):
            raise ConfigError("set WEWARD_SCHEDULE_CRON or WEWARD_SCHEDULE_HOUR, not both")
        if cron and not is_valid_cron_string(cron):
            raise ConfigError(
                f'WEWARD_SCHEDULE_CRON {cron!r} is not a cron expression; use five fields, e.g. "30 1 * * *" '
                "(01:30 every day, in the catalog's time zone)"
            )
        deadline = _hour(env, "WEWARD_FRESHNESS_DEADLINE_HOUR", DEFAULT_FRESHNESS_DEADLINE_HOUR)
        status = env.get("WEWARD_SCHEDULE_DEFAULT_STATUS", "running").strip().lower()
        if status not in ("running", "stopped"):
            raise ConfigError(f"WEWARD_SCHEDULE_DEFAULT_STATUS must be running or stopped, got {status!r}")
        return cls(
            cron=cron or f"0 {hour} * * *",
            freshness_deadline_cron=f"0 {deadline} * * *",
            running_by_default=status == "running",
        )


def _hour(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= 23:
        raise ConfigError(f"{name} must be an hour of the day, 0 to 23 (local time of the catalog), got {raw!r}")
    return int(raw)


def day_to_export(catalog: Catalog, tick: dt.datetime) -> dt.date:
    """The last local day that had ended at `tick`: yesterday for a tick after midnight."""
    return tick.astimezone(ZoneInfo(catalog.timezone)).date() - dt.timedelta(days=1)


def daily_export_job(catalog: Catalog) -> UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        DAILY_EXPORT_JOB,
        selection=dg.AssetSelection.assets(*(lake_key(t.name) for t in catalog.tables)),
        description=(
            "Every table of the catalog for one day: export to S3, register in Glue, verify. "
            "Steps share the `postgres_source` pool, so at most its limit read PostgreSQL at once."
        ),
        tags={"weward/job": DAILY_EXPORT_JOB},
    )


def daily_export_schedule(
    catalog: Catalog, settings: ScheduleSettings, job: UnresolvedAssetJobDefinition
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=DAILY_EXPORT_SCHEDULE,
        job=job,
        cron_schedule=settings.cron,
        execution_timezone=catalog.timezone,
        default_status=(
            dg.DefaultScheduleStatus.RUNNING if settings.running_by_default else dg.DefaultScheduleStatus.STOPPED
        ),
        description=(
            f"Exports yesterday ({catalog.timezone}) of every table, at `{settings.cron}` local time. "
            "One run per tick, for the day before it."
        ),
        tags={"weward/trigger": "schedule"},
    )
    def _daily(context: dg.ScheduleEvaluationContext):
        day = day_to_export(catalog, context.scheduled_execution_time)
        if day < catalog.start_date:
            return dg.SkipReason(f"{day} is before the catalog's start_date {catalog.start_date}; nothing to export")
        return dg.RunRequest(
            run_key=day.isoformat(),
            partition_key=day.isoformat(),
            tags={"weward/trigger": "schedule", "weward/day": day.isoformat()},
        )

    return _daily


# Dagster marks these factories "superseded" by FreshnessPolicy, but a FreshnessPolicy looks at the
# newest materialization of any partition: re-exporting an old day in a backfill would make a table
# look fresh while yesterday is missing. The time-partition check asks for yesterday's partition.
def freshness_checks(catalog: Catalog, settings: ScheduleSettings) -> list[dg.AssetChecksDefinition]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        return list(
            dg.build_time_partition_freshness_checks(
                assets=[lake_key(t.name) for t in catalog.tables],
                deadline_cron=settings.freshness_deadline_cron,
                timezone=catalog.timezone,
                severity=dg.AssetCheckSeverity.ERROR,
            )
        )


def freshness_sensor(checks: list[dg.AssetChecksDefinition]) -> dg.SensorDefinition:
    # Evaluates a check only when it can have turned stale (after a deadline), not every tick; a
    # failed check turns green again with the run that exports the missing day (it runs the check).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        return dg.build_sensor_for_freshness_checks(
            freshness_checks=checks,
            name=FRESHNESS_SENSOR,
            minimum_interval_seconds=300,
            default_status=dg.DefaultSensorStatus.RUNNING,
            tags={"weward/trigger": "freshness"},
        )


def schedule_definitions(catalog: Catalog, settings: ScheduleSettings | None = None) -> dg.Definitions:
    settings = settings or ScheduleSettings.from_env()
    checks = freshness_checks(catalog, settings)
    job = daily_export_job(catalog)
    return dg.Definitions(
        jobs=[job],
        schedules=[daily_export_schedule(catalog, settings, job)],
        asset_checks=checks,
        sensors=[freshness_sensor(checks)],
    )
