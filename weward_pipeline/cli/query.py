"""`weward-pipeline query "SELECT ..."`: the analyst's command line on the lake.

    weward-pipeline query "SELECT dt, sum(steps) FROM step_events WHERE dt >= '2024-03-01' GROUP BY dt"
    weward-pipeline query -f question.sql --output answer.parquet
    weward-pipeline query --tables                 # what can be queried, and which days
    weward-pipeline query --show-sql "SELECT ..."  # also print what ran (locally: the DuckDB translation)
    weward-pipeline query --create-latest-views    # Athena: CREATE OR REPLACE VIEW <t>_latest

Exit status: 0 answered, 1 the query failed (message on stderr), 2 bad usage, 130 cancelled.
"""

from __future__ import annotations

import argparse
import sys

from weward_pipeline import aws
from weward_pipeline.config import ConfigError
from weward_pipeline.query import (
    ENGINES,
    AthenaEngine,
    LocalEngine,
    QueryCancelledError,
    QueryError,
    QueryProgress,
    QuerySettings,
    build_engine,
    format_bytes,
    latest_view_name,
    latest_view_sql,
    list_lake_tables,
    parse_size,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    query = subparsers.add_parser(
        "query",
        help="run SQL on the lake (Athena in production, DuckDB on the local stack)",
        description="Run one SQL statement against the Glue database: through Athena (workgroup "
        "WEWARD_ATHENA_WORKGROUP, results in WEWARD_ATHENA_OUTPUT) or locally with DuckDB over the "
        "same Parquet objects. Write Athena SQL; snapshot tables also have <name>_latest.",
    )
    query.add_argument("sql", nargs="?", help="the SQL statement ('-' reads it from standard input)")
    query.add_argument("-f", "--file", help="read the SQL from this file")
    query.add_argument(
        "--engine",
        choices=ENGINES,
        default=None,
        help="auto (default, WEWARD_QUERY_ENGINE): local when AWS_ENDPOINT_URL points at the local stack, else athena",
    )
    query.add_argument("-o", "--output", help="write all rows to this .csv or .parquet file instead of printing them")
    query.add_argument("--max-rows", type=int, default=100, help="rows to print (default 100)")
    query.add_argument(
        "--max-bytes-scanned",
        default=None,
        help="stop the query past this scan, e.g. 500MB, 20GB (default: WEWARD_QUERY_MAX_BYTES_SCANNED; "
        "Athena's workgroup cutoff applies too)",
    )
    query.add_argument("--timeout", type=float, default=None, help="cancel the query after this many seconds")
    query.add_argument(
        "--show-sql",
        action="store_true",
        help="print the statement the engine ran on stderr: locally, the DuckDB translation of your Athena SQL",
    )
    query.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary on stderr")
    query.add_argument(
        "--tables", action="store_true", help="list the tables and views a query can use, with their days"
    )
    query.add_argument(
        "--create-latest-views",
        action="store_true",
        help="Athena: create or replace the <name>_latest view of every snapshot table",
    )
    query.add_argument(
        "--print-latest-views",
        action="store_true",
        help="print the CREATE VIEW statements of the <name>_latest views instead of running them",
    )
    query.set_defaults(handler=cmd_query)


class ProgressLine:
    """A one-line progress indicator on stderr: rewritten in place on a terminal, one line per
    state change otherwise (CI logs, pipes)."""

    SPINNER = "|/-\\"

    def __init__(self, stream=None, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last_state: str | None = None
        self.ticks = 0
        self.drawn = False

    def __call__(self, progress: QueryProgress) -> None:
        if not self.enabled:
            return
        ident = f" {progress.query_id}" if progress.query_id else ""
        text = (
            f"[{progress.engine}{ident}] {progress.state:<9} {progress.elapsed_s:6.1f} s  "
            f"{format_bytes(progress.bytes_scanned)} scanned"
        )
        if self.tty:
            self.ticks += 1
            self.stream.write(f"\r{self.SPINNER[self.ticks % 4]} {text}\x1b[K")
            self.drawn = True
        elif progress.state != self.last_state:
            self.stream.write(text + "\n")
        self.last_state = progress.state
        self.stream.flush()

    def clear(self) -> None:
        if self.tty and self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.drawn = False


def _read_sql(args: argparse.Namespace) -> str | None:
    if args.file:
        with open(args.file, encoding="utf-8") as handle:
            return handle.read()
    if args.sql == "-":
        return sys.stdin.read()
    return args.sql


def _print_tables(settings: QuerySettings) -> int:
    glue = aws.client(settings, "glue")
    tables = list_lake_tables(glue, settings.glue_database)
    print(f"Glue database {settings.glue_database}:")
    for name, table in sorted(tables.items()):
        if table.is_view:
            print(f"  {name:<28} view (Athena)")
            continue
        days = []
        for page in glue.get_paginator("get_partitions").paginate(DatabaseName=settings.glue_database, TableName=name):
            days.extend(p["Values"][0] for p in page["Partitions"])
        span = (
            f"{min(days)} .. {max(days)} ({len(days)} day{'s' if len(days) != 1 else ''})"
            if days
            else "no day published yet"
        )
        print(f"  {name:<28} {table.mode or 'table':<8} {span}; columns: {', '.join(c for c, _ in table.columns)}, dt")
        if table.mode == "snapshot" and latest_view_name(name) not in tables:
            print(
                f"  {latest_view_name(name):<28} view     the latest day of {name}"
                + (f" (dt = '{max(days)}')" if days else "")
            )
    return 0


def _show_sql(engine, sql: str, rewrites: list[str]) -> None:
    if isinstance(engine, LocalEngine):
        kept = f"; Athena semantics kept: {', '.join(rewrites)}" if rewrites else ""
        print(f"-- ran on DuckDB, translated from your Athena SQL{kept}", file=sys.stderr)
    else:
        print(f"-- ran in Athena workgroup {engine.workgroup}", file=sys.stderr)
    print(sql.strip() + ";", file=sys.stderr)


def cmd_query(args: argparse.Namespace) -> int:
    try:
        settings = QuerySettings.from_env()
        if args.tables:
            return _print_tables(settings)
        if args.print_latest_views:
            glue = aws.client(settings, "glue")
            snapshot = sorted(
                t.name
                for t in list_lake_tables(glue, settings.glue_database).values()
                if t.mode == "snapshot" and not t.is_view
            )
            for name in snapshot:
                print(latest_view_sql(settings.glue_database, name) + ";\n")
            return 0
        progress = ProgressLine(enabled=not args.quiet)
        engine = build_engine(
            settings,
            args.engine,
            max_bytes_scanned=parse_size(args.max_bytes_scanned),
            timeout_s=args.timeout,
            progress=progress,
        )
        if args.create_latest_views:
            if not isinstance(engine, AthenaEngine):
                print(
                    "--create-latest-views creates Athena views; the local engine defines <name>_latest itself. "
                    "Use --engine athena (with permission to create tables in the Glue database).",
                    file=sys.stderr,
                )
                return 2
            try:
                results = engine.create_latest_views()
            finally:
                progress.clear()
            for result in results:
                print(
                    f"created {result.sql.splitlines()[0].removeprefix('CREATE OR REPLACE VIEW ').removesuffix(' AS')} "
                    f"(query {result.query_id})"
                )
            if not results:
                print("no snapshot table in the Glue database yet: nothing to create")
            return 0
        sql = _read_sql(args)
        if not sql or not sql.strip():
            print(
                'weward-pipeline query: give the SQL as an argument, with -f FILE or on stdin ("-"); '
                "--tables lists what can be queried",
                file=sys.stderr,
            )
            return 2
        if isinstance(engine, LocalEngine) and not args.quiet:
            print(f"[local] DuckDB over the objects Glue database {settings.glue_database} points at", file=sys.stderr)
        try:
            result = engine.run(sql)
        except QueryError as exc:
            if args.show_sql and exc.executed_sql:
                _show_sql(engine, exc.executed_sql, [])
            raise
        finally:
            progress.clear()
        if args.show_sql:
            _show_sql(engine, result.executed_sql or result.sql, result.rewrites)
    except QueryCancelledError as exc:
        print(f"cancelled: {exc}", file=sys.stderr)
        return 130
    except (QueryError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. --output into a directory that cannot be written
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.output:
        try:
            kind = result.write(args.output)
        except (QueryError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {result.table.num_rows} rows to {args.output} ({kind})")
    else:
        print(result.format(max_rows=args.max_rows))
    if not args.quiet:
        print(result.summary(), file=sys.stderr)
    return 0
