"""Restatement through Dagster: the daily comparison of exported days with PostgreSQL, the re-export
runs it requests, and the check on days beyond the window.

`daily_restatement_schedule` ticks with the daily export (same cron, catalog time zone). For the day D
that tick exports, it compares D-1 .. D-restate_days of each append table with PostgreSQL
(weward_pipeline.restate: counts on indexes, read only) and requests one run per changed day,
re-exporting the tables whose day changed, tagged with why (`weward/restated_because`, which the
export's metadata repeats next to the rows it added, changed and deleted). Each run is an ordinary
export: blocking checks, atomic switch per (table, day), redaction automation downstream.

The day leaving the window (D-restate_days-1) gets one more look: a check-only run of
`source_unchanged`, which fails with the command that re-exports it when it no longer matches
PostgreSQL. Inside the window the check passes (the daily comparison restates the day).

A table whose comparison fails (PostgreSQL unreachable, a timeout) is skipped with a warning in
the tick's log; the next tick compares its window again, and the export of D is not held up (it
is another schedule).
"""

import datetime as dt
import json
from collections import defaultdict

import dagster as dg

from weward_pipeline import redaction_audit, restate
from weward_pipeline.config import Catalog, ConfigError, TableConfig
from weward_pipeline.defs.assets import daily_partitions, lake_key
from weward_pipeline.defs.resources import LakeResource
from weward_pipeline.defs.schedules import ScheduleSettings, day_to_export
from weward_pipeline.extract import SourceError
from weward_pipeline.verify import published_manifest

RESTATEMENT_JOB = "daily_restatement"
RESTATEMENT_SCHEDULE = "daily_restatement_schedule"
RESTATED_BECAUSE_TAG = "weward/restated_because"
SOURCE_CHECK = "source_unchanged"


def restated_because(tags: dict, table: str) -> str | None:
    """The reason the schedule gave for re-exporting `table` in this run, if it did."""
    raw = tags.get(RESTATED_BECAUSE_TAG)
    if not raw:
        return None
    try:
        return json.loads(raw).get(table)
    except (ValueError, AttributeError):
        return None


def reexport_command(table: str, day: str) -> str:
    return f"dagster asset materialize -m weward_pipeline.definitions --select lake/{table} --partition {day}"


def restated_tables(catalog: Catalog) -> list[TableConfig]:
    return [t for t in catalog.tables if t.mode == "append" and t.restate_days > 0]


def _pipeline_deletions(lake: LakeResource, table: TableConfig):
    settings = lake.settings()

    def count(manifest) -> int:
        clients = lake.clients()
        return redaction_audit.count_deleted_since(
            clients.s3, settings.lake, table.name, manifest.day, manifest.export_id
        )

    return count if table.retention_days is not None else None


def changed_days(
    catalog: Catalog, day: dt.date, lake: LakeResource, log
) -> dict[dt.date, dict[str, restate.DayStatus]]:
    """{day: {table: status}} for the days of the window that changed since their export."""
    changed: dict[dt.date, dict[str, restate.DayStatus]] = defaultdict(dict)
    settings = lake.settings()
    clients = None
    for table in restated_tables(catalog):
        days = restate.restatement_days(catalog, table, day)
        try:
            clients = clients or lake.clients()
            statuses, unpublished = restate.compare_days(
                settings,
                catalog,
                table,
                days,
                clients=clients,
                limits=lake.limits(),
                deleted_by_pipeline=_pipeline_deletions(lake, table),
            )
        except (SourceError, ConfigError, OSError) as exc:
            log.warning(f"restatement: {table.name}: days {days[-1]} .. {days[0]} not compared this time: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - S3/Glue errors: one table's window waits for the next tick
            log.warning(f"restatement: {table.name}: days not compared this time ({exc.__class__.__name__}: {exc})")
            continue
        if unpublished:
            log.info(f"restatement: {table.name}: never exported, not compared: {', '.join(map(str, unpublished))}")
        for status in statuses:
            if status.changed:
                changed[status.day][table.name] = status
    return dict(changed)


def restatement_requests(catalog: Catalog, tick: dt.datetime, lake: LakeResource, log) -> list[dg.RunRequest]:
    day = day_to_export(catalog, tick)
    requests = []
    for changed_day, statuses in sorted(changed_days(catalog, day, lake, log).items()):
        why = {name: status.why() for name, status in sorted(statuses.items())}
        requests.append(
            dg.RunRequest(
                run_key=f"restate:{changed_day}:after:{day}",
                partition_key=changed_day.isoformat(),
                asset_selection=[lake_key(name) for name in sorted(statuses)],
                tags={
                    "weward/trigger": "restatement",
                    "weward/day": changed_day.isoformat(),
                    RESTATED_BECAUSE_TAG: json.dumps(why, sort_keys=True),
                },
            )
        )
    beyond: dict[dt.date, list[str]] = defaultdict(list)
    for table in restated_tables(catalog):
        leaving = restate.first_day_beyond(table, day)
        if leaving >= catalog.start_date:
            beyond[leaving].append(table.name)
    for leaving, names in sorted(beyond.items()):
        requests.append(
            dg.RunRequest(
                run_key=f"source-check:{leaving}:after:{day}",
                partition_key=leaving.isoformat(),
                asset_selection=[],
                asset_check_keys=[dg.AssetCheckKey(lake_key(n), SOURCE_CHECK) for n in sorted(names)],
                tags={"weward/trigger": "restatement", "weward/day": leaving.isoformat()},
            )
        )
    return requests


def restatement_job(catalog: Catalog):
    tables = restated_tables(catalog)
    return dg.define_asset_job(
        RESTATEMENT_JOB,
        selection=dg.AssetSelection.assets(*(lake_key(t.name) for t in tables)),
        description="Re-exports the days of the restatement window that changed in PostgreSQL since their export, "
        "one run per day; checks the day leaving the window.",
        tags={"weward/job": RESTATEMENT_JOB},
    )


def restatement_schedule(catalog: Catalog, settings: ScheduleSettings, job) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=RESTATEMENT_SCHEDULE,
        job=job,
        cron_schedule=settings.cron,
        execution_timezone=catalog.timezone,
        default_status=(
            dg.DefaultScheduleStatus.RUNNING if settings.running_by_default else dg.DefaultScheduleStatus.STOPPED
        ),
        description="Compares the restatement window of each append table with PostgreSQL and re-exports the "
        "days that changed (one run per day, tagged with why).",
        tags={"weward/trigger": "restatement"},
    )
    def _restate(context: dg.ScheduleEvaluationContext, lake: LakeResource):
        requests = restatement_requests(catalog, context.scheduled_execution_time, lake, context.log)
        if not requests:
            return dg.SkipReason("no table has a restatement window yet")
        return requests

    return _restate


def source_check(table: TableConfig, catalog: Catalog) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=lake_key(table.name),
        name=SOURCE_CHECK,
        partitions_def=daily_partitions(catalog),
        blocking=False,
        description=(
            f"Day D still matches PostgreSQL (row count{', rows updated since the export' if table.updated_column else ''}). "
            f"Inside the {table.restate_days}-day restatement window it passes: the daily run re-exports changed days. "
            "Beyond it, a failure gives the command that re-exports D."
        ),
    )
    def _check(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        day = dt.date.fromisoformat(context.partition_key)
        last_day = dt.datetime.now(catalog.zone).date() - dt.timedelta(days=1)
        if day > restate.first_day_beyond(table, last_day):
            return dg.AssetCheckResult(
                passed=True,
                metadata={
                    "status": f"inside the {table.restate_days}-day restatement window (re-exported by the daily run "
                    "when it changes)"
                },
            )
        settings, clients = lake.settings(), lake.clients()
        _, manifest = published_manifest(lake.glue(clients), clients.s3, table.name, day.isoformat())
        if manifest is None:
            return dg.AssetCheckResult(
                passed=False,
                metadata={
                    "problem": f"{day} has no published export",
                    "fix": reexport_command(table.name, day.isoformat()),
                },
            )
        [status], _ = restate.compare_days(
            settings,
            catalog,
            table,
            [day],
            clients=clients,
            limits=lake.limits(),
            deleted_by_pipeline=_pipeline_deletions(lake, table),
        )
        metadata = {key: dg.MetadataValue.text(str(value)) for key, value in status.as_metadata().items()}
        if status.changed:
            metadata["fix"] = dg.MetadataValue.text(
                f"{reexport_command(table.name, day.isoformat())}   (see which keys: weward-pipeline verify "
                f"{table.name} {day})"
            )
        return dg.AssetCheckResult(
            passed=not status.changed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=metadata,
            description=(
                f"{table.name} {day} no longer matches PostgreSQL ({status.why()}); re-export it: "
                f"{reexport_command(table.name, day.isoformat())}"
            )
            if status.changed
            else None,
        )

    return _check


def restatement_definitions(catalog: Catalog, settings: ScheduleSettings | None = None) -> dg.Definitions:
    tables = restated_tables(catalog)
    if not tables:
        return dg.Definitions()
    settings = settings or ScheduleSettings.from_env()
    job = restatement_job(catalog)
    return dg.Definitions(
        jobs=[job],
        schedules=[restatement_schedule(catalog, settings, job)],
        asset_checks=[source_check(t, catalog) for t in tables],
    )
