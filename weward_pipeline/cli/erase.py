"""`weward-pipeline erase`: the right to erasure from the command line.

    weward-pipeline erase --ids-file request-1234.txt --dry-run      # what would go, changes nothing
    weward-pipeline erase --ids-file request-1234.txt --postgres     # lake and PostgreSQL
    weward-pipeline erase --ids-file - < ids.txt                     # ids on standard input

Ids are read from a file (one per line, # comments allowed), never printed. The whole request is
validated first (every id a value of every user column's type; with --postgres, PostgreSQL reachable).
Progress goes to stderr, the report once to stdout (--json: as JSON). Exit status: 0 done,
1 incomplete (re-run to finish; the report says which days), 2 the request or configuration is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from weward_pipeline.cli import one_line
from weward_pipeline.config import ConfigError, Settings, load_catalog
from weward_pipeline.erasure import ErasureLimits


def register(subparsers: argparse._SubParsersAction) -> None:
    erase = subparsers.add_parser(
        "erase",
        help="GDPR erasure: remove users' rows from every exported day of the lake (and PostgreSQL)",
        description="Remove the given users' rows from every lake table with a `user_column`: rewrites the "
        "affected Parquet objects, verifies, publishes atomically, deletes superseded objects and object "
        "versions, and writes an audit record without identifiers (s3://<lake>/_audit/erasure/).",
    )
    erase.add_argument(
        "--ids-file",
        required=True,
        help="file with one user id per line ('-' for standard input); keep it out of shell history",
    )
    erase.add_argument(
        "--tables", default="", help="comma-separated subset of the catalog's tables (default: all with user_column)"
    )
    erase.add_argument(
        "--postgres",
        action="store_true",
        help="also delete the users' rows from PostgreSQL (WEWARD_PG_ERASE_URL, else WEWARD_PG_REDACT_URL), first",
    )
    erase.add_argument("--dry-run", action="store_true", help="report what would be erased; change and write nothing")
    erase.add_argument(
        "--batch-rows",
        type=int,
        default=ErasureLimits.batch_rows,
        help=f"PostgreSQL rows deleted per transaction (default {ErasureLimits.batch_rows})",
    )
    erase.add_argument(
        "--json",
        action="store_true",
        help="print the report as JSON on stdout (the audit record's content), progress on stderr",
    )
    erase.set_defaults(handler=cmd_erase)


def _read_ids(path: str) -> list[str]:
    if path == "-":
        return sys.stdin.read().splitlines()
    try:
        return Path(path).read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the erasure request {path}: {exc.strerror}") from None


def cmd_erase(args: argparse.Namespace) -> int:
    from weward_pipeline.erasure import ErasureError, ErasureRequest, erase_users

    try:
        request = ErasureRequest.parse(_read_ids(args.ids_file))
        settings = Settings.from_env()
        catalog = load_catalog()
        tables = [t.strip() for t in args.tables.split(",") if t.strip()] or None
        report = erase_users(
            settings,
            catalog,
            request,
            tables=tables,
            delete_from_postgres=args.postgres,
            dry_run=args.dry_run,
            limits=ErasureLimits(batch_rows=args.batch_rows),
            on_progress=lambda message: print(message, file=sys.stderr),
        )
    except (ConfigError, ErasureError) as exc:
        print(f"weward-pipeline erase: {one_line(str(exc))}", file=sys.stderr)
        return 2
    # The report once, on stdout (progress went to stderr): what a script or a ticket keeps.
    print(json.dumps(report.as_audit(), indent=1, sort_keys=True, default=str) if args.json else report.summary())
    return 0 if report.ok else 1
