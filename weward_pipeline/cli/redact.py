"""Redaction from a shell.

`weward-pipeline redact TABLE DAY [--to DAY]`: what redaction would delete, day by day; or do it.
A dry run unless `--execute`, like pt-archiver's --dry-run turned around: deleting is the
deliberate act. It bypasses Dagster (no check history, no audit in the event log): for operators
and benchmarks; it re-verifies the lake itself before every day.

`weward-pipeline redact-due [--tables ...] [--lookback-days N] [--dry-run]`: the scheduled path
where no Dagster daemon runs the `redaction_automation` sensor (infra: EventBridge starts it as an
ECS task every morning). It selects the days the sensor's automation condition selects (retention
passed in calendar days, exported, the export's checks passed, not redacted since its last export,
the last attempt did not fail, nothing in progress), from the production instance's state read
through Dagster's public API only (`DagsterInstance.get_status_by_partition`, `fetch_materializations`,
`fetch_observations`, `get_run_records`): no automation cursor, no evaluation tree, nothing a Dagster
upgrade changes silently (test_redact_due pins each call it relies on). It materializes
`redaction/<table>` for each due day, one run per day, so the audit lands in Dagster's event log
exactly as with the sensor.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import uuid
from dataclasses import dataclass

import psycopg

from weward_pipeline.aws import AwsClients
from weward_pipeline.cli import iso_date, one_line
from weward_pipeline.config import Catalog, ConfigError, Settings, TableConfig, load_catalog
from weward_pipeline.pacing import PacingLimits
from weward_pipeline.redact import RedactionFailed, RedactionLimits, RedactionRefused, redact_day, retention_ends

# redact-due imports Dagster (and the code location) when it runs, not when the CLI starts.


def register(subparsers: argparse._SubParsersAction) -> None:
    register_redact(subparsers)
    register_due(subparsers)


def register_redact(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "redact",
        help="dry-run (or --execute) the redaction of a table's exported days from PostgreSQL",
        description="Per day: verify the published export, then count (dry run) or delete, in short batches, "
        "the rows it holds unchanged. Rows inserted or changed after the export stay. Exit status: "
        "0 every day done (or dry-run), 1 a day refused or failed, 2 bad usage or configuration.",
    )
    parser.add_argument("table", help="catalog table name (it needs retention_days)")
    parser.add_argument("day", type=iso_date, help="first day, YYYY-MM-DD")
    parser.add_argument("--to", type=iso_date, help="last day (inclusive); default: DAY only")
    parser.add_argument("--execute", action="store_true", help="really delete (default: dry run, writes nothing)")
    defaults = RedactionLimits()
    parser.add_argument(
        "--batch-rows",
        type=int,
        default=defaults.batch_rows,
        help="pin the keys per DELETE, each batch its own short transaction (default: sized by --target-batch-s)",
    )
    parser.add_argument(
        "--pause-s",
        type=float,
        default=defaults.pause_s,
        help="pin the sleep between batches, seconds (default: by --duty-cycle and the database's signals)",
    )
    parser.add_argument("--duty-cycle", type=float, help="share of the time spent deleting (pacing; default 0.5)")
    parser.add_argument("--target-batch-s", type=float, help="duration batches are sized for (pacing; default 0.02)")
    parser.add_argument(
        "--max-canary-ms", type=float, help="back off while `SELECT 1` takes longer (pacing; default 25)"
    )
    parser.add_argument(
        "--lock-timeout-s",
        type=float,
        default=defaults.lock_timeout_s,
        help="give up a batch that waits longer than this for a lock, seconds; it is retried, then "
        f"kept back (default {defaults.lock_timeout_s:g})",
    )
    parser.add_argument(
        "--max-replica-lag-s",
        type=float,
        default=None,
        help="pause while a standby replays more than this many seconds behind (needs pg_monitor)",
    )
    parser.add_argument(
        "--max-runtime-s", type=float, default=None, help="stop cleanly after this many seconds; a re-run continues"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print only a JSON list on stdout, one object per day (its full report, or why it was refused)",
    )
    parser.set_defaults(handler=cmd_redact)


@dataclass
class _Refusals:
    """Consecutive days refused for the same reason, printed as one line."""

    reason: str
    message: str
    first: dt.date
    last: dt.date

    def line(self) -> str:
        days = (
            f"{self.first}"
            if self.first == self.last
            else f"{self.first} .. {self.last} ({(self.last - self.first).days + 1} days)"
        )
        return f"{days}  refused ({self.reason}): {self.message}"


def cmd_redact(args: argparse.Namespace) -> int:
    from weward_pipeline.extract import SourceError
    from weward_pipeline.redact import INSIDE_RETENTION

    try:
        catalog = load_catalog()
        table = catalog.table(args.table)
        settings = Settings.from_env()
        pacing = {
            name: value
            for name, value in (
                ("duty_cycle", args.duty_cycle),
                ("target_batch_s", args.target_batch_s),
                ("max_canary_ms", args.max_canary_ms),
            )
            if value is not None
        }
        limits = RedactionLimits(
            batch_rows=args.batch_rows,
            pause_s=args.pause_s,
            lock_timeout_s=args.lock_timeout_s,
            max_replica_lag_s=args.max_replica_lag_s,
            max_runtime_s=args.max_runtime_s,
            pacing=pacing,
        )
        limits.validate()
        PacingLimits().merged(table.pacing, pacing)
    except ConfigError as exc:
        print(f"weward-pipeline redact: {exc}", file=sys.stderr)
        return 2
    last = args.to or args.day
    if last < args.day:
        print(f"weward-pipeline redact: --to {last} is before DAY {args.day}", file=sys.stderr)
        return 2
    clients = AwsClients.from_settings(settings)
    dry_run = not args.execute
    ok = True
    statement = ""
    results: list[dict] = []  # --json
    refused: _Refusals | None = None
    header = f"{'day':<10} {'exported':>9} {'would go' if dry_run else 'deleted':>9} {'gone':>6} {'kept':>6}  status"

    def say(line: str) -> None:
        nonlocal header
        if args.json:
            return
        if header:
            print(header)
            header = ""
        print(line, flush=True)

    def flush_refusals() -> None:
        nonlocal refused
        if refused is not None:
            say(refused.line())
            refused = None

    day = args.day
    while day <= last:
        try:
            report = redact_day(
                settings,
                catalog,
                table,
                day,
                clients=clients,
                limits=limits,
                dry_run=dry_run,
                on_progress=lambda message: None,
            )
        except RedactionRefused as exc:
            ok = False
            results.append({"day": day.isoformat(), "status": "refused", "reason": exc.reason, "message": str(exc)})
            if refused is not None and refused.reason == exc.reason and refused.last + dt.timedelta(days=1) == day:
                refused.last = day
            else:
                flush_refusals()
                refused = _Refusals(exc.reason, str(exc), day, day)
            if exc.reason == INSIDE_RETENTION:  # so is every later day: one line for the rest of the range
                results.extend(
                    {
                        "day": (day + dt.timedelta(days=n)).isoformat(),
                        "status": "refused",
                        "reason": exc.reason,
                        "message": "inside its retention, as the day before",
                    }
                    for n in range(1, (last - day).days + 1)
                )
                refused.last = last
                break
        except RedactionFailed as exc:
            ok = False
            flush_refusals()
            results.append(
                {"day": day.isoformat(), "status": "failed", "message": str(exc), "report": exc.report.as_dict()}
            )
            say(f"{day}  FAILED after {exc.report.rows_deleted} deleted rows: {exc}")
        except (SourceError, psycopg.Error) as exc:  # wrong password, server down: every day would say the same
            flush_refusals()
            print(f"weward-pipeline redact: {one_line(str(exc))}", file=sys.stderr)
            if args.json:
                print(json.dumps(results, indent=1))
            return 1
        else:
            flush_refusals()
            results.append(report.as_dict())
            rows = report.rows_would_delete if dry_run else report.rows_deleted
            kept = ", ".join(f"{n} {reason}" for reason, n in report.kept_back.items() if n)
            say(
                f"{day}  {report.rows_in_export:>9} {rows:>9} {report.rows_already_gone:>6} "
                f"{report.rows_kept_back:>6}  {report.status}{' - ' + kept if kept else ''}"
                f"{' - ' + report.why_quit if report.why_quit else ''}"
            )
            ok &= report.status in ("done", "dry_run")
            statement = statement or report.delete_sql
        day += dt.timedelta(days=1)
    flush_refusals()
    if args.json:
        print(json.dumps(results, indent=1, default=str))
    elif dry_run and statement:
        size = f"{limits.batch_rows} keys" if limits.batch_rows else "keys (sized by pacing)"
        print(f"\ndry run: nothing was written. Each batch of {size} would run, in its own transaction:\n{statement}")
    return 0 if ok else 1


# -- redact-due: the daily redaction for deployments without the Dagster daemon --------------------

LOOKBACK_ENV = "WEWARD_REDACT_LOOKBACK_DAYS"
DEFAULT_LOOKBACK_DAYS = 30
# Without the daemon nothing marks a run failed when its process is killed (OOM, task stopped):
# it would stay "in progress" and block its day forever. A run of this command still going after
# this long belongs to a task that is gone (they start 24 h apart).
DEFAULT_ABANDONED_AFTER_HOURS = 20.0
LAUNCHED_BY_TAG = "weward/launched_by"
LAUNCHED_BY = "redact-due"
MAX_ROUNDS = 3  # evaluate, run what is due, evaluate again... until nothing new is due


def register_due(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "redact-due",
        help="redact, through Dagster, every day whose retention has passed (for schedulers without the daemon)",
        description=(
            "For each table with retention_days: evaluate the redaction/<table> automation condition that the "
            "redaction_automation sensor evaluates (retention passed, export checks passed, not redacted since its "
            "last export, nothing in progress) on the Dagster instance of $DAGSTER_HOME, and materialize each day "
            "it selects, one run per day, on that instance (its event log keeps the audit). Days missed by earlier "
            "runs are caught up within the lookback. Exit status 1 if a day failed; nothing due is success."
        ),
    )
    parser.add_argument(
        "--tables", default="", help="comma-separated subset of the catalog's tables (default: all with retention_days)"
    )
    parser.add_argument(
        "--lookback-days",
        type=int,
        default=None,
        help=f"consider days whose retention ended within this many days (default ${LOOKBACK_ENV} "
        f"or {DEFAULT_LOOKBACK_DAYS}); older days are listed, not redacted",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="run each due day as a Dagster dry run (tag weward/dry_run=true): PostgreSQL only read, "
        "nothing materialized, the automation state left as it was",
    )
    parser.add_argument(
        "--abandoned-after-hours",
        type=float,
        default=DEFAULT_ABANDONED_AFTER_HOURS,
        help="mark runs of this command still in progress after this long as failed "
        f"(their process is gone; default {DEFAULT_ABANDONED_AFTER_HOURS:g})",
    )
    parser.add_argument(
        "--now",
        type=_timestamp,
        default=None,
        help="evaluate as of this past instant (ISO 8601 with offset), e.g. to replay a missed day",
    )
    parser.set_defaults(handler=cmd_redact_due)


def _timestamp(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; write e.g. 2024-05-01T06:00:00+02:00")
    return value


@dataclass
class TablePlan:
    """What the instance says about one table's days, within the lookback window."""

    table: TableConfig
    due: list[str]
    not_due: dict[str, str]  # day -> why, for days of the window that are not due
    redacted_before: int  # days of the window redacted and unchanged since
    older: list[str]  # due days that ended before the lookback window


def lookback_window(catalog: Catalog, table: TableConfig, now: dt.datetime, lookback_days: int) -> list[str]:
    """Days whose retention ended in (now - lookback_days, now], oldest first (redact.retention_ends)."""
    last = now.astimezone(catalog.zone).date()
    day = max(catalog.start_date, last - dt.timedelta(days=table.retention_days + lookback_days + 2))
    since = now - dt.timedelta(days=lookback_days)
    days = []
    while day <= last:
        if since < retention_ends(catalog, table, day) <= now:
            days.append(day.isoformat())
        day += dt.timedelta(days=1)
    return days


ALREADY_REDACTED = "redacted; the export has not changed since"


class DayState:
    """One table's days as the Dagster instance records them, read with its public API only."""

    def __init__(self, instance, catalog: Catalog, table: TableConfig, published) -> None:
        import dagster as dg

        from weward_pipeline.defs.assets import daily_partitions, lake_key
        from weward_pipeline.defs.redaction import DRY_RUN_TAG, redaction_key

        self.dg, self.instance, self.table = dg, instance, table
        self.lake, self.redaction = lake_key(table.name), redaction_key(table.name)
        self.partitions = daily_partitions(catalog)
        self.dry_run_tag = DRY_RUN_TAG
        self.published = published  # day -> export id published now (Glue), or None

    def statuses(self, key, days: list[str]) -> dict:
        # None (not an empty dict) while the asset has no event at all.
        return (self.instance.get_status_by_partition(key, days, self.partitions) or {}) if days else {}

    def _latest(self, key, day: str):
        records = self.instance.fetch_materializations(
            self.dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1
        ).records
        return records[0] if records else None

    def _last_attempt(self, day: str):
        """The newest redaction run of the day that was not a dry run."""
        records = self.instance.get_run_records(filters=self.dg.RunsFilter(tags={"dagster/partition": day}), limit=50)
        for record in records:  # newest first
            run = record.dagster_run
            if self.redaction in (run.asset_selection or set()) and not run.tags.get(self.dry_run_tag):
                return record
        return None

    def why_not(self, day: str, lake_status, redaction_status) -> str | None:
        """Why `day` (retention passed) is not due; None when it is. The automation condition's terms, in order."""
        from weward_pipeline.defs.checks import CHECK_NAMES, latest_verdicts

        in_progress = self.dg.AssetPartitionStatus.IN_PROGRESS
        export = self._latest(self.lake, day)
        if lake_status == in_progress:
            return "its export is in progress"
        if export is None:
            return f"never exported (materialize lake/{self.table.name} first)"
        if redaction_status == in_progress:
            return "a redaction of it is in progress"
        redacted = self._latest(self.redaction, day)
        if redacted is not None and redacted.storage_id > export.storage_id:
            return ALREADY_REDACTED
        # The asset's status says whether its latest attempt failed; its run (with the redaction in its
        # asset selection) says when. A failure before the latest export no longer counts.
        attempt = self._last_attempt(day) if redaction_status == self.dg.AssetPartitionStatus.FAILED else None
        if redaction_status == self.dg.AssetPartitionStatus.FAILED and (
            attempt is None or attempt.create_timestamp.timestamp() > export.timestamp
        ):
            return (
                f"its last redaction failed; fix the cause (see that run), then: dagster asset materialize "
                f"-m weward_pipeline.definitions --select key:redaction/{self.table.name} --partition {day}"
            )
        verdicts = latest_verdicts(self.instance, self.table.name, day)
        if not verdicts:
            return None  # checked before verdicts were recorded: the redaction verifies the day itself
        published = self.published(day)
        for name in CHECK_NAMES.values():
            passed, checked, _ = verdicts.get(name, (False, "", ""))
            if not passed or (published is not None and checked != published):
                return (
                    f"the export's checks have not passed on the published export (run the checks of "
                    f"lake/{self.table.name} for {day} again, or re-export)"
                )
        return None


def plan_table(
    instance, catalog: Catalog, table: TableConfig, now: dt.datetime, lookback_days: int, published
) -> TablePlan:
    """The due days of the lookback window, why the others are not, and due days older than it."""
    state = DayState(instance, catalog, table, published)
    window = lookback_window(catalog, table, now, lookback_days)
    lake_status, redaction_status = state.statuses(state.lake, window), state.statuses(state.redaction, window)
    due, not_due, redacted_before = [], {}, 0
    for day in window:
        why = state.why_not(day, lake_status.get(day), redaction_status.get(day))
        if why is None:
            due.append(day)
        elif why == ALREADY_REDACTED:
            redacted_before += 1
        else:
            not_due[day] = why
    # Older days: only those exported and never redacted nor attempted are candidates (one query each way).
    first = window[0] if window else now.astimezone(catalog.zone).date().isoformat()
    older_days = [
        k
        for k in state.partitions.get_partition_keys(current_time=now)
        if k < first and retention_ends(catalog, table, dt.date.fromisoformat(k)) <= now
    ]
    materialized = state.dg.AssetPartitionStatus.MATERIALIZED
    older_lake, older_redaction = state.statuses(state.lake, older_days), state.statuses(state.redaction, older_days)
    older = [
        d
        for d in older_days
        if older_lake.get(d) == materialized
        and older_redaction.get(d) is None
        and state.why_not(d, older_lake.get(d), None) is None
    ]
    return TablePlan(table=table, due=due, not_due=not_due, redacted_before=redacted_before, older=older)


@dataclass
class DayOutcome:
    ok: bool
    text: str


def _failure_text(result) -> str:
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            data = event.event_specific_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                reason = data.user_failure_data.metadata.get("reason")
                return data.user_failure_data.description + (f" [{reason.value}]" if reason else "")
            if data.error is not None:
                return data.error.message.strip().splitlines()[-1]
    for event in result.all_events:
        if event.event_type_value == "RUN_FAILURE":
            return event.message or "run failed"
    return "run failed"


def redact_one_day(defs, instance, table: TableConfig, day: str, dry_run: bool) -> DayOutcome:
    """One Dagster run of redaction/<table> for `day` (with its check), on `instance`, in this process."""
    from weward_pipeline.defs.liveness import Heartbeat
    from weward_pipeline.defs.redaction import DRY_RUN_TAG, redaction_key

    key = redaction_key(table.name)
    # The run beats while this process runs it, so that if this task is killed, the next entry point
    # (or the next run) sees its worker gone and frees its pool slot (defs/liveness.py).
    heartbeat = Heartbeat(instance, str(uuid.uuid4()), first_beat=False)  # a Dagster run id
    tags = {LAUNCHED_BY_TAG: LAUNCHED_BY, **heartbeat.tags()}
    if dry_run:
        tags[DRY_RUN_TAG] = "true"
    job = defs.resolve_implicit_global_asset_job_def()
    with heartbeat:
        result = job.execute_in_process(
            instance=instance,
            partition_key=day,
            asset_selection=[key],
            tags=tags,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
            run_id=heartbeat.run_id,
        )
    run = result.run_id[:8]
    metadata = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            metadata = event.event_specific_data.materialization.metadata
        elif event.event_type_value == "ASSET_OBSERVATION" and dry_run:
            metadata = event.event_specific_data.asset_observation.metadata
    value = {k: v.value for k, v in metadata.items()}
    if not result.success:
        done = f" after deleting {value['rows_deleted']} rows" if value.get("rows_deleted") else ""
        return DayOutcome(False, f"FAILED{done}: {_failure_text(result)} (run {run})")
    if not value:
        return DayOutcome(False, f"FAILED: the run recorded no redaction (run {run})")
    kept = ", ".join(f"{n} {reason}" for reason, n in value.get("kept_back", {}).items() if n)
    if dry_run:
        text = f"dry run: would delete {value['rows_would_delete']} of {value['rows_in_export']} exported rows"
    else:
        text = (
            f"redacted: {value['rows_deleted']} of {value['rows_in_export']} exported rows deleted, "
            f"{value['rows_already_gone']} already gone"
        )
    text += f"; kept back: {kept}" if kept else "; kept back: none"
    if value.get("needs_reexport"):
        text += f" (re-export lake/{table.name} for {day}; it is redacted again after)"
    return DayOutcome(True, f"{text} (run {run})")


def fail_abandoned_runs(instance, older_than: dt.timedelta) -> list[str]:
    """Marks failed the runs of this command still in progress after `older_than`; their days then show
    as "last redaction failed", as the daemon's run monitoring would have left them; their pool slots are freed."""
    import dagster as dg

    from weward_pipeline.defs.liveness import free_run

    in_progress = [
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    ]
    cutoff = dt.datetime.now(dt.UTC) - older_than
    lines = []
    for run in instance.get_runs(
        filters=dg.RunsFilter(tags={LAUNCHED_BY_TAG: LAUNCHED_BY}, statuses=in_progress, created_before=cutoff)
    ):
        free_run(
            instance,
            run,
            f"abandoned: still {run.status.value} after {older_than}; the redact-due process "
            "running it is gone (killed or stopped)",
        )
        lines.append(
            f"run {run.run_id[:8]} ({run.tags.get('dagster/partition', '?')}) was still "
            f"{run.status.value} after {older_than}: marked failed"
        )
    return lines


def cmd_redact_due(args: argparse.Namespace) -> int:
    import dagster as dg

    from weward_pipeline.defs.factory import build_definitions
    from weward_pipeline.defs.liveness import reap_dead_runs

    try:
        catalog = load_catalog()
        tables = _tables_with_retention(catalog, args.tables)
        lookback = (
            args.lookback_days if args.lookback_days is not None else _env_int(LOOKBACK_ENV, DEFAULT_LOOKBACK_DAYS)
        )
        if lookback < 1:
            raise ConfigError(f"--lookback-days (or ${LOOKBACK_ENV}) must be at least 1, got {lookback}")
        if args.abandoned_after_hours < 0:
            raise ConfigError("--abandoned-after-hours must be 0 or more")
        real_now = dt.datetime.now(dt.UTC)
        now = args.now or real_now
        if now > real_now + dt.timedelta(minutes=1):
            raise ConfigError(
                f"--now {now.isoformat()} is in the future: redaction itself checks the retention "
                "against the real clock"
            )
        defs = build_definitions(catalog)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not tables:
        print(f"no table of {catalog.path or 'the catalog'} has retention_days: nothing is ever redacted")
        return 0
    if not os.environ.get("DAGSTER_HOME"):
        print(
            "error: DAGSTER_HOME is not set. redact-due records every redaction in the Dagster instance of "
            "$DAGSTER_HOME/dagster.yaml (in production deploy/dagster.yaml, PostgreSQL storage); set it to that "
            "directory",
            file=sys.stderr,
        )
        return 2
    instance = dg.DagsterInstance.get()

    failed = 0
    width = max(len(t.name) for t in tables)
    mode = "dry run" if args.dry_run else "redacting"
    with instance:
        print(
            f"redact-due ({mode}) as of {now.isoformat(timespec='seconds')}, lookback {lookback} days, "
            f"Dagster instance {instance.root_directory} ({type(instance.run_storage).__name__})"
        )
        if not args.dry_run:
            # Runs (any, e.g. a killed export) whose worker is gone free their pool slots first: the
            # redactions below claim postgres_source slots too (defs/liveness.py).
            for reaped in reap_dead_runs(instance):
                print(f"freed: {reaped}")
            abandoned = fail_abandoned_runs(instance, dt.timedelta(hours=args.abandoned_after_hours))
            for line in abandoned:
                print(f"FAILED: {line}")
            failed += len(abandoned)
        for table in tables:
            failed += redact_table(defs, instance, catalog, table, now, lookback, args.dry_run, width)
    if failed:
        print(f"{failed} day(s) failed", file=sys.stderr)
    return 1 if failed else 0


def redact_table(
    defs, instance, catalog: Catalog, table: TableConfig, now: dt.datetime, lookback: int, dry_run: bool, width: int
) -> int:
    """Prints why days are not due, redacts the due ones; returns how many failed."""
    published = _published_export_ids(table)
    plan = plan_table(instance, catalog, table, now, lookback, published)
    for first, last, why in _runs_of_days(plan.not_due):
        days = first if first == last else f"{first} .. {last}"
        print(f"{table.name:<{width}}  {days}  not due: {why}")
    failed, attempted, latest = 0, set(), plan
    for _ in range(MAX_ROUNDS):
        todo = [day for day in latest.due if day not in attempted]
        if not todo:
            break
        for day in todo:
            outcome = redact_one_day(defs, instance, table, day, dry_run)
            attempted.add(day)
            failed += not outcome.ok
            print(f"{table.name:<{width}}  {day}  {outcome.text}", flush=True)
        if dry_run:
            break
        # Evaluate again, as the sensor's next tick would: this evaluation sees the runs just made
        # (otherwise tomorrow's would see them together with a re-export made in between, and the
        # re-export would go unnoticed), and a day re-exported meanwhile is due now.
        latest = plan_table(instance, catalog, table, now, lookback, published)
    left = [day for day in latest.due if day not in attempted]
    if left and not dry_run:
        print(
            f"{table.name}: still due after {MAX_ROUNDS} rounds (exports changing meanwhile?): "
            f"{', '.join(left)}; the next run takes them"
        )
    summary = (
        f"{table.name}: {len(attempted)} due, {plan.redacted_before} redacted before, "
        f"{len(plan.not_due)} not due in the last {lookback} days past its {table.retention_days}-day retention"
    )
    if plan.older:
        summary += (
            f"; {len(plan.older)} older day(s) not redacted ({plan.older[0]} .. {plan.older[-1]}): "
            f"--lookback-days {_days_to_cover(catalog, table, now, plan.older[0])} or a backfill of "
            f"redaction/{table.name}"
        )
    print(summary)
    return failed


def _published_export_ids(table: TableConfig):
    """day -> the export id Glue publishes now (the one the checks must have passed on)."""
    from weward_pipeline.glue import GlueCatalog

    settings = Settings.from_env()
    glue = GlueCatalog(AwsClients.from_settings(settings).glue, settings.glue_database)

    def published(day: str) -> str | None:
        partition = glue.get_partition(table.name, day)
        return (partition or {}).get("Parameters", {}).get("weward.export_id")

    return published


def _runs_of_days(reasons: dict[str, str]) -> list[tuple[str, str, str]]:
    """Consecutive days with the same reason as (first, last, reason)."""
    runs: list[list[str]] = []
    for day in sorted(reasons):
        previous = runs[-1] if runs else None
        if (
            previous
            and reasons[previous[1]] == reasons[day]
            and dt.date.fromisoformat(previous[1]) + dt.timedelta(days=1) == dt.date.fromisoformat(day)
        ):
            previous[1] = day
        else:
            runs.append([day, day])
    return [(first, last, reasons[first]) for first, last in runs]


def _days_to_cover(catalog: Catalog, table: TableConfig, now: dt.datetime, day: str) -> int:
    ends = retention_ends(catalog, table, dt.date.fromisoformat(day))
    return (now - ends).days + 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"${name} must be a whole number of days, got {raw!r}") from None


def _tables_with_retention(catalog: Catalog, names: str) -> list[TableConfig]:
    with_retention = [t for t in catalog.tables if t.retention_days is not None]
    if not names.strip():
        return with_retention
    chosen = []
    for name in (n.strip() for n in names.split(",")):
        if not name:
            continue
        table = catalog.table(name)  # ConfigError naming the known tables
        if table.retention_days is None:
            known = ", ".join(t.name for t in with_retention) or "none"
            raise ConfigError(
                f"table {name} has no retention_days in {catalog.path or 'the catalog'}, so it is never "
                f"redacted; tables with a retention: {known}"
            )
        if table not in chosen:
            chosen.append(table)
    return chosen
