"""`weward-pipeline roles-sql`: the least-privilege GRANTs of the export, redaction and erasure roles, for a DBA.

weward-pipeline roles-sql > grants.sql            # per column, through WEWARD_PG_URL
weward-pipeline roles-sql --offline > grants.sql  # table-level, without connecting
"""

from __future__ import annotations

import argparse
import sys
from urllib.parse import urlsplit

from weward_pipeline.config import load_catalog
from weward_pipeline.roles import ERASE_ROLE, EXPORT_ROLE, REDACT_ROLE
from weward_pipeline.secret_store import scrub


def register(subparsers: argparse._SubParsersAction) -> None:
    roles = subparsers.add_parser(
        "roles-sql",
        help="print the GRANTs of the least-privilege export, redaction and erasure roles for the catalog",
        description="Prints, for a DBA to review and run as the tables' owner, the GRANTs the export role "
        "(SELECT on the exported columns), the redaction role (DELETE, and the SELECT those "
        "deletes need) and the erasure role (DELETE on the tables with a user_column, SELECT on "
        "their key and user columns only) require for the catalog's tables (WEWARD_TABLES_FILE). "
        "With WEWARD_PG_URL, "
        "SELECT is granted per column, leaving out the columns the catalog drops; create the roles "
        "first, with their passwords from the secrets. Prints SQL only; changes nothing.",
    )
    roles.add_argument("--database", help="database name (default: the one in WEWARD_PG_URL)")
    roles.add_argument(
        "--export-role",
        default=EXPORT_ROLE,
        help=f"the export role's name, the user of WEWARD_PG_URL (default {EXPORT_ROLE})",
    )
    roles.add_argument(
        "--redact-role",
        default=REDACT_ROLE,
        help=f"the redaction role's name, the user of WEWARD_PG_REDACT_URL (default {REDACT_ROLE})",
    )
    roles.add_argument(
        "--erase-role",
        default=ERASE_ROLE,
        help=f"the erasure role's name, the user of WEWARD_PG_ERASE_URL (default {ERASE_ROLE}); "
        "without that DSN erasure deletes through the redaction role, whose grants cover it too",
    )
    roles.add_argument(
        "--offline",
        action="store_true",
        help="do not connect to WEWARD_PG_URL to list columns (table-level SELECT instead)",
    )
    roles.set_defaults(handler=cmd_roles_sql)


def cmd_roles_sql(args: argparse.Namespace) -> int:
    import os

    import psycopg

    from weward_pipeline.roles import PipelineRoles, print_sql, table_columns

    catalog = load_catalog()
    url = os.environ.get("WEWARD_PG_URL", "")
    database = args.database or urlsplit(url).path.lstrip("/") or "weward_app"
    roles = PipelineRoles(
        export_role=args.export_role,
        redact_role=args.redact_role,
        erase_role=args.erase_role,
        export_password="",
        redact_password="",
        erase_password="",
    )
    if args.offline or not url:
        print(print_sql(catalog, database, roles))
        return 0
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            print(print_sql(catalog, database, roles, lambda t: table_columns(conn, t)))
    except psycopg.Error as exc:
        print(
            f"weward-pipeline roles-sql: cannot list columns through WEWARD_PG_URL ({scrub(str(exc))}); "
            "use --offline for table-level grants",
            file=sys.stderr,
        )
        return 2
    return 0
