"""Least-privilege PostgreSQL roles for the pipeline, created by the local stack and printed for DBAs.

    export role     (WEWARD_PG_URL)         SELECT on the catalog's tables, minus the columns the
                                            catalog drops as personal data (never read, so never
                                            granted). Nothing else: no INSERT/UPDATE/DELETE/TRUNCATE,
                                            owns nothing (so no ALTER/DROP), no CREATE. Defaults to
                                            read-only transactions.
    redaction role  (WEWARD_PG_REDACT_URL)  DELETE on the catalog's tables that are redacted
                                            (`retention_days`) or erasable (`user_column`), and only
                                            the SELECT those deletes need. No INSERT/UPDATE/TRUNCATE/DDL.
                                            (Erasable tables too: a deployment without an erasure DSN
                                            erases through this role.)
    erasure role    (WEWARD_PG_ERASE_URL)   DELETE on the catalog's erasable tables (`user_column`),
                                            and SELECT on their primary key and user columns only.
                                            Never any other column, not even on redacted tables; no
                                            INSERT/UPDATE/TRUNCATE/DDL.

Column grants are computed from the table as it is when granting: a column added later by an app
migration is not readable until it is granted (re-run the grants, `weward-pipeline roles-sql`),
which is also when someone decides whether it is personal data.

What "read only keys and fingerprints" can mean in PostgreSQL:
  - Column privileges are exact for erasure: `DELETE ... WHERE pk IN (SELECT pk ... WHERE
    user_col = ANY(...))` (erasure.py's batches; its dry run's `count(*) ... WHERE user_col`
    needs no more) reads the key and user columns only, so the erasure role gets
    `GRANT SELECT (pk, user_column)` on every erasable table and cannot read any other column; so
    does the redaction role on an erasable table without retention.
  - Redaction deletes a row only if its fingerprint, md5 of the exported columns, is unchanged, and
    it must evaluate that *inside* the DELETE (a concurrent UPDATE is then re-checked by PostgreSQL
    on the new row version). That needs SELECT on every exported column, so a redacted table gets
    SELECT on the columns the export reads (not the dropped personal ones): the role could read
    what the lake already holds, but can change nothing except deleting.
  - The alternatives, and why not: a view exposing (pk, fingerprint) moves the fingerprint check
    out of the DELETE's own row re-check, so a row updated between the check and the delete could
    go; a SECURITY DEFINER function per table (`delete_if_unchanged(pks, fingerprints)`) would give
    the strictest reading (no SELECT at all) but puts the deletion logic into database migrations
    owned by the DBA, versioned apart from the code that plans it. Revisit if the DBA prefers that.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from weward_pipeline import pii
from weward_pipeline.config import Catalog, TableConfig

EXPORT_ROLE = "weward_export"
REDACT_ROLE = "weward_redact"
ERASE_ROLE = "weward_erase"
# A backfill goes through the `postgres_source` pool (2 by default); a few more for checks and humans.
EXPORT_CONNECTION_LIMIT = 10
REDACT_CONNECTION_LIMIT = 4
# An erasure (CLI or the single-op gdpr_erasure job) holds one connection at a time: the request's
# validation, then each table in turn. One spare: a re-run while a killed run's backend is still
# being reaped, or a DBA checking; more concurrent erasures would only contend for the same rows.
ERASE_CONNECTION_LIMIT = 2
CONNECTION_LIMITS = (
    EXPORT_CONNECTION_LIMIT,
    REDACT_CONNECTION_LIMIT,
    ERASE_CONNECTION_LIMIT,
)  # in PipelineRoles.names order


@dataclass
class PipelineRoles:
    export_role: str = EXPORT_ROLE
    redact_role: str = REDACT_ROLE
    erase_role: str = ERASE_ROLE
    export_password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    redact_password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    erase_password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)

    def export_url(self, admin_url: str) -> str:
        return role_url(admin_url, self.export_role, self.export_password)

    def redact_url(self, admin_url: str) -> str:
        return role_url(admin_url, self.redact_role, self.redact_password)

    def erase_url(self, admin_url: str) -> str:
        return role_url(admin_url, self.erase_role, self.erase_password)

    @property
    def names(self) -> list[str]:
        return [self.export_role, self.redact_role, self.erase_role]


def role_url(admin_url: str, user: str, password: str) -> str:
    """`admin_url` with another user and password (same host, port, database and options)."""
    parts = urlsplit(admin_url)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def _table(table: TableConfig) -> sql.Composable:
    return sql.SQL("{}.{}").format(sql.Identifier(table.schema), sql.Identifier(table.source))


def redaction_access(table: TableConfig) -> str | None:
    """'row' (whole-row SELECT + DELETE), 'keys' (key and user columns + DELETE) or None."""
    if table.retention_days:
        return "row"
    if table.user_column:
        return "keys"
    return None


def grant_statements(
    catalog: Catalog, roles: PipelineRoles, database: str, columns_of: Callable[[TableConfig], list[str]] | None = None
) -> list[sql.Composable]:
    """The GRANTs for the catalog's tables (idempotent). Roles must exist; run as the tables' owner.

    `columns_of(table)` lists the table's columns; with it, SELECT is granted per column, leaving out
    the ones the catalog drops. Without it (printing offline), table-level SELECT.
    """
    export, redact, erase = (sql.Identifier(name) for name in roles.names)
    erasable_schemas = {t.schema for t in catalog.tables if t.user_column}
    statements: list[sql.Composable] = [
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(database), sql.SQL(", ").join([export, redact, *([erase] if erasable_schemas else [])])
        ),
    ]
    for schema in sorted({t.schema for t in catalog.tables}):
        grantees = [export, redact, *([erase] if schema in erasable_schemas else [])]
        statements.append(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), sql.SQL(", ").join(grantees))
        )

    def select(table: TableConfig, columns: list[str] | None, role: sql.Identifier) -> sql.Composable:
        if columns is None:
            return sql.SQL("GRANT SELECT ON {} TO {}").format(_table(table), role)
        return sql.SQL("GRANT SELECT ({}) ON {} TO {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), _table(table), role
        )

    for table in catalog.tables:
        exported = None
        if columns_of is not None:
            exported = [c for c in columns_of(table) if pii.is_exported(table, c)]
        statements.append(select(table, exported, export))
        access = redaction_access(table)
        if access == "row":
            statements.append(select(table, exported, redact))
        elif access == "keys":
            statements.append(select(table, erasure_columns(table), redact))
        if access:
            statements.append(sql.SQL("GRANT DELETE ON {} TO {}").format(_table(table), redact))
        if table.user_column:  # erasure: exactly what its key-bounded DELETE reads, whatever the retention
            statements.append(select(table, erasure_columns(table), erase))
            statements.append(sql.SQL("GRANT DELETE ON {} TO {}").format(_table(table), erase))
    return statements


def erasure_columns(table: TableConfig) -> list[str]:
    """What erasure's `DELETE ... WHERE (pk) IN (SELECT pk ... WHERE user_column = ANY(...))` reads."""
    return list(dict.fromkeys([*table.primary_key, table.user_column]))


def role_statements(conn: psycopg.Connection, roles: PipelineRoles) -> list[sql.Composable]:
    """CREATE/ALTER ROLE with SCRAM verifiers computed client-side: the password never reaches the server."""
    out: list[sql.Composable] = []
    for name, password, limit, read_only in (
        (roles.export_role, roles.export_password, EXPORT_CONNECTION_LIMIT, True),
        (roles.redact_role, roles.redact_password, REDACT_CONNECTION_LIMIT, False),
        (roles.erase_role, roles.erase_password, ERASE_CONNECTION_LIMIT, False),
    ):
        verifier = conn.pgconn.encrypt_password(password.encode(), name.encode(), b"scram-sha-256").decode()
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        verb = sql.SQL("ALTER ROLE" if exists else "CREATE ROLE")
        out.append(
            sql.SQL(
                "{} {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT "
                "CONNECTION LIMIT {} PASSWORD {}"
            ).format(verb, sql.Identifier(name), sql.Literal(limit), sql.Literal(verifier))
        )
        # Belt and braces: the export also asks for read-only transactions itself.
        out.append(
            sql.SQL("ALTER ROLE {} SET default_transaction_read_only = {}").format(
                sql.Identifier(name), sql.Literal("on" if read_only else "off")
            )
        )
    return out


def ensure_roles(admin_url: str, roles: PipelineRoles) -> None:
    """Create (or reset the password of) the three roles. Roles belong to the server, not a database."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for statement in role_statements(conn, roles):
            conn.execute(statement)


def table_columns(conn: psycopg.Connection, table: TableConfig) -> list[str]:
    return [
        row[0]
        for row in conn.execute(
            "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (table.schema, table.source),
        )
    ]


def existing_tables(conn: psycopg.Connection, catalog: Catalog) -> tuple[list[TableConfig], list[TableConfig]]:
    present, missing = [], []
    for table in catalog.tables:
        found = conn.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (table.schema, table.source),
        ).fetchone()
        (present if found else missing).append(table)
    return present, missing


def grant_catalog(admin_url: str, catalog: Catalog, roles: PipelineRoles) -> list[str]:
    """Grant what the catalog's existing tables need; returns the tables not (yet) in the database."""
    database = urlsplit(admin_url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        present, missing = existing_tables(conn, catalog)
        subset = Catalog(
            start_date=catalog.start_date, timezone=catalog.timezone, tables=tuple(present), path=catalog.path
        )
        with conn.transaction():
            # Start from nothing, so a column newly declared `drop` loses its grant too.
            for table in present:
                conn.execute(
                    sql.SQL("REVOKE ALL ON {} FROM {}").format(
                        _table(table), sql.SQL(", ").join(map(sql.Identifier, roles.names))
                    )
                )
            for statement in grant_statements(subset, roles, database, lambda t: table_columns(conn, t)):
                conn.execute(statement)
    return [t.qualified_source for t in missing]


def drop_roles(admin_url: str, roles: PipelineRoles, databases: list[str]) -> None:
    """Revoke everything the roles were granted in `databases`, then drop them."""
    names = roles.names
    for database in databases:
        url = urlunsplit(urlsplit(admin_url)._replace(path="/" + database))
        with psycopg.connect(url, autocommit=True) as conn:
            for name in names:
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def print_sql(
    catalog: Catalog,
    database: str,
    roles: PipelineRoles | None = None,
    columns_of: Callable[[TableConfig], list[str]] | None = None,
) -> str:
    """The GRANTs for a DBA to review and run in production (roles created separately, with their secrets)."""
    roles = roles or PipelineRoles(export_password="", redact_password="", erase_password="")
    lines = [
        f"-- Least-privilege grants for the weward_pipeline catalog {catalog.path or ''}".rstrip(),
        "-- Create the roles first (passwords from the secrets): "
        + " ".join(
            f"CREATE ROLE {sql.Identifier(name).as_string(None)} LOGIN NOINHERIT CONNECTION LIMIT {limit};"
            for name, limit in zip(roles.names, CONNECTION_LIMITS)
        ),
        f"-- {roles.erase_role} is the user of WEWARD_PG_ERASE_URL; a deployment without that DSN erases "
        f"through {roles.redact_role} (WEWARD_PG_REDACT_URL), whose grants below cover erasure too.",
        f"ALTER ROLE {sql.Identifier(roles.export_role).as_string(None)} SET default_transaction_read_only = on;",
    ]
    if columns_of is None:
        lines.append(
            "-- Table-level SELECT below: run `weward-pipeline roles-sql` with WEWARD_PG_URL set to grant per column, "
            "leaving out the columns the catalog drops."
        )
    lines += [statement.as_string(None) + ";" for statement in grant_statements(catalog, roles, database, columns_of)]
    return "\n".join(lines)
