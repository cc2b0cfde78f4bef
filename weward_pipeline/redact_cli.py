"""`weward-pipeline redact TABLE DAY [--to DAY]`: what redaction would delete, day by day; or do it.

A dry run unless `--execute`, like pt-archiver's --dry-run turned around: deleting is the
deliberate act. The scheduled path is Dagster (`redaction/<table>`, which also requires the
export's checks to have passed); this command is for operators and benchmarks, and re-verifies
the lake itself before every day.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from weward_pipeline.config import ConfigError, Settings, load_catalog
from weward_pipeline.export import AwsClients
from weward_pipeline.redact import RedactionFailed, RedactionLimits, RedactionRefused, redact_day


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "redact", help="dry-run (or --execute) the redaction of a table's exported days from PostgreSQL",
        description="Per day: verify the published export, then count (dry run) or delete, in short batches, "
                    "the rows it holds unchanged. Rows inserted or changed after the export stay.",
    )
    parser.add_argument("table", help="catalog table name (it needs retention_days)")
    parser.add_argument("day", type=dt.date.fromisoformat, help="first day, YYYY-MM-DD")
    parser.add_argument("--to", type=dt.date.fromisoformat, help="last day (inclusive); default: DAY only")
    parser.add_argument("--execute", action="store_true", help="really delete (default: dry run, writes nothing)")
    defaults = RedactionLimits()
    parser.add_argument("--batch-rows", type=int, default=defaults.batch_rows)
    parser.add_argument("--pause-s", type=float, default=defaults.pause_s, help="sleep between batches")
    parser.add_argument("--lock-timeout-s", type=float, default=defaults.lock_timeout_s)
    parser.add_argument("--max-replica-lag-s", type=float, default=None, help="pause while a standby lags more")
    parser.add_argument("--max-runtime-s", type=float, default=None, help="stop cleanly after this long")
    parser.add_argument("--json", action="store_true", help="print each day's full report as JSON")
    parser.set_defaults(handler=cmd_redact)


def cmd_redact(args: argparse.Namespace) -> int:
    try:
        catalog = load_catalog()
        table = catalog.table(args.table)
        settings = Settings.from_env()
        limits = RedactionLimits(batch_rows=args.batch_rows, pause_s=args.pause_s, lock_timeout_s=args.lock_timeout_s,
                                 max_replica_lag_s=args.max_replica_lag_s, max_runtime_s=args.max_runtime_s)
        limits.validate()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    last = args.to or args.day
    if last < args.day:
        print("error: --to is before DAY", file=sys.stderr)
        return 2
    clients = AwsClients.from_settings(settings)
    dry_run = not args.execute
    ok = True
    statement = ""
    day = args.day
    print(f"{'day':<10} {'exported':>9} {'would go' if dry_run else 'deleted':>9} {'gone':>6} {'kept':>6}  status")
    while day <= last:
        try:
            report = redact_day(settings, catalog, table, day, clients=clients, limits=limits, dry_run=dry_run,
                                on_progress=lambda message: None)
        except RedactionRefused as exc:
            print(f"{day}  refused ({exc.reason}): {exc}")
            ok = False
        except RedactionFailed as exc:
            print(f"{day}  FAILED after {exc.report.rows_deleted} deleted rows: {exc}")
            ok = False
        else:
            rows = report.rows_would_delete if dry_run else report.rows_deleted
            kept = ", ".join(f"{n} {reason}" for reason, n in report.kept_back.items() if n)
            print(f"{day}  {report.rows_in_export:>9} {rows:>9} {report.rows_already_gone:>6} "
                  f"{report.rows_kept_back:>6}  {report.status}{' - ' + kept if kept else ''}"
                  f"{' - ' + report.why_quit if report.why_quit else ''}")
            ok &= report.status in ("done", "dry_run")
            if args.json:
                print(json.dumps(report.as_dict(), indent=1))
            statement = statement or report.delete_sql
        day += dt.timedelta(days=1)
    if dry_run and statement:
        print(f"\ndry run: nothing was written. Each batch of {limits.batch_rows} keys would run, in its own "
              f"transaction:\n{statement}")
    return 0 if ok else 1
