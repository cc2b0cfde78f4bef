"""`weward-pipeline roles-sql`: the least-privilege GRANTs of the export and redaction roles, for a DBA.

    weward-pipeline roles-sql > grants.sql            # per column, through WEWARD_PG_URL
    weward-pipeline roles-sql --offline > grants.sql  # table-level, without connecting
"""

from __future__ import annotations

import argparse
import sys
from urllib.parse import urlsplit

from weward_pipeline.config import load_catalog
from weward_pipeline.secret_store import scrub


def register(subparsers: argparse._SubParsersAction) -> None:
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


def cmd_roles_sql(args: argparse.Namespace) -> int:
    import os

    import psycopg

    from weward_pipeline.roles import PipelineRoles, print_sql, table_columns

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
