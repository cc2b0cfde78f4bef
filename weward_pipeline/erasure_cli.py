"""`weward-pipeline erase`: the right to erasure from the command line; `weward-pipeline roles-sql`:
the least-privilege grants for a DBA.

    weward-pipeline erase --ids-file request-1234.txt --dry-run      # what would go, changes nothing
    weward-pipeline erase --ids-file request-1234.txt --postgres     # lake and PostgreSQL
    weward-pipeline erase --ids-file - < ids.txt                     # ids on standard input
    weward-pipeline roles-sql > grants.sql

Ids are read from a file (one per line, # comments allowed), never printed. Exit status: 0 done,
1 incomplete (re-run to finish; the report says which days), 2 the request or configuration is wrong.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import urlsplit

from weward_pipeline.config import ConfigError, Settings, load_catalog
from weward_pipeline.erasure import ErasureLimits
from weward_pipeline.secret_store import scrub


def register(subparsers: argparse._SubParsersAction) -> None:
    erase = subparsers.add_parser(
        "erase",
        help="GDPR erasure: remove users' rows from every exported day of the lake (and PostgreSQL)",
        description="Remove the given users' rows from every lake table with a `user_column`: rewrites the "
        "affected Parquet objects, verifies, publishes atomically, deletes superseded objects and object "
        "versions, and writes an audit record without identifiers (s3://<lake>/_audit/erasure/).",
    )
    erase.add_argument("--ids-file", required=True,
                       help="file with one user id per line ('-' for standard input); keep it out of shell history")
    erase.add_argument("--tables", default="", help="comma-separated subset of the catalog's tables (default: all with user_column)")
    erase.add_argument("--postgres", action="store_true",
                       help="also delete the users' rows from PostgreSQL (redaction role, WEWARD_PG_REDACT_URL), first")
    erase.add_argument("--dry-run", action="store_true", help="report what would be erased; change and write nothing")
    erase.add_argument("--batch-rows", type=int, default=ErasureLimits.batch_rows,
                       help="PostgreSQL rows deleted per transaction")
    erase.set_defaults(handler=cmd_erase)

    roles = subparsers.add_parser(
        "roles-sql",
        help="print the GRANTs of the least-privilege export and redaction roles for the catalog",
    )
    roles.add_argument("--database", help="database name (default: the one in WEWARD_PG_URL)")
    roles.add_argument("--export-role", default="weward_export")
    roles.add_argument("--redact-role", default="weward_redact")
    roles.add_argument("--offline", action="store_true",
                       help="do not connect to WEWARD_PG_URL to list columns (table-level SELECT instead)")
    roles.set_defaults(handler=cmd_roles_sql)


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
        report = erase_users(settings, catalog, request, tables=tables, delete_from_postgres=args.postgres,
                             dry_run=args.dry_run, limits=ErasureLimits(batch_rows=args.batch_rows),
                             on_progress=lambda message: print(message, file=sys.stderr))
    except (ConfigError, ErasureError) as exc:
        print(f"weward-pipeline erase: {scrub(str(exc))}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0 if report.ok else 1


def cmd_roles_sql(args: argparse.Namespace) -> int:
    import os

    import psycopg

    from weward_pipeline.devstack.roles import PipelineRoles, print_sql, table_columns

    catalog = load_catalog()
    url = os.environ.get("WEWARD_PG_URL", "")
    database = args.database or urlsplit(url).path.lstrip("/") or "weward_app"
    roles = PipelineRoles(export_role=args.export_role, redact_role=args.redact_role,
                          export_password="", redact_password="")
    if args.offline or not url:
        print(print_sql(catalog, database, roles))
        return 0
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            print(print_sql(catalog, database, roles, lambda t: table_columns(conn, t)))
    except psycopg.Error as exc:
        print(f"weward-pipeline roles-sql: cannot list columns through WEWARD_PG_URL ({scrub(str(exc))}); "
              "use --offline for table-level grants", file=sys.stderr)
        return 2
    return 0
