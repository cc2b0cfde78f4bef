"""`weward-pipeline verify TABLE DAY [--to DAY]`: a published day compared with PostgreSQL, row by row.

Reads the day from the lake and from PostgreSQL (as an export does: one read-only snapshot under
the export's limits) and reports, by primary key and a hash of the other columns, the keys missing
from the lake, the extra ones (rows redaction deleted from PostgreSQL are expected there and counted
apart) and the changed ones: counts and a sample. Exit status: 0 every day equal, 1 a day differs
or cannot be compared, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from weward_pipeline.aws import AwsClients
from weward_pipeline.cli import iso_date, one_line
from weward_pipeline.config import ConfigError, Settings, load_catalog
from weward_pipeline.extract import SourceError
from weward_pipeline.restate import compare_rows


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="compare published days with PostgreSQL row by row (missing, extra, changed keys)",
        description=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("table", help="catalog table name")
    parser.add_argument("day", type=iso_date, help="first day, YYYY-MM-DD")
    parser.add_argument("--to", type=iso_date, help="last day (inclusive); default: DAY only")
    parser.add_argument("--sample", type=int, default=10, help="keys listed per kind of difference (default 10)")
    parser.add_argument("--json", action="store_true", help="one JSON object per day")
    parser.set_defaults(handler=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        catalog = load_catalog()
        table = catalog.table(args.table)
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    last = args.to or args.day
    if last < args.day:
        print("error: --to is before DAY", file=sys.stderr)
        return 2
    clients = AwsClients.from_settings(settings)
    ok = True
    day = args.day
    while day <= last:
        try:
            result = compare_rows(settings, catalog, table, day, clients=clients, sample=args.sample)
        except (SourceError, ConfigError) as exc:
            print(f"{table.name} {day}: cannot compare: {one_line(exc)}")
            ok = False
            day += dt.timedelta(days=1)
            continue
        ok &= result.equal
        if args.json:
            print(
                json.dumps(
                    {
                        "table": result.table,
                        "day": str(day),
                        "export_id": result.export_id,
                        "lake_rows": result.lake_rows,
                        "source_rows": result.source_rows,
                        "missing": result.missing,
                        "extra": result.extra,
                        "changed": result.changed,
                        "redacted": result.redacted,
                        "samples": result.samples,
                    },
                    default=str,
                )
            )
        else:
            verdict = "equal" if result.equal else "DIFFERS"
            print(
                f"{table.name} {day}: {verdict} (export {result.export_id}: {result.lake_rows} rows in the lake, "
                f"{result.source_rows} in PostgreSQL; {result.redacted} redacted from PostgreSQL as expected)"
            )
            for kind, meaning in (
                ("missing", "in PostgreSQL, not in the lake"),
                ("extra", "in the lake, gone from PostgreSQL"),
                ("changed", "other values in PostgreSQL"),
            ):
                count = getattr(result, kind)
                if count:
                    print(f"  {count} {kind} ({meaning}), e.g. keys {result.samples[kind]}")
            if not result.equal:
                print(
                    f"  fix: dagster asset materialize -m weward_pipeline.definitions --select lake/{table.name} "
                    f"--partition {day}"
                )
        day += dt.timedelta(days=1)
    return 0 if ok else 1
