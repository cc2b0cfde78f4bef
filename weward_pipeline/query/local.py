"""The local engine: DuckDB over pyarrow datasets of the objects Glue points at, every S3 byte counted.

One view per Glue table over a pyarrow dataset whose fragments are the objects under each
partition's location, tagged with their `dt`; DuckDB pushes filters into the scan, so
`WHERE dt BETWEEN ...` skips whole partitions (no request is made for them) and other predicates
skip row groups by their statistics. Every byte read from S3 is counted (`scan.py`): that is the
local "data scanned", and the scan limit applies to it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from weward_pipeline.glue import PARTITION_KEY
from weward_pipeline.query import dialect
from weward_pipeline.query.catalog import (
    ATHENA_CATALOG,
    SYSTEM_SCHEMAS,
    LakeTable,
    glue_type_to_arrow,
    latest_view_name,
    list_lake_tables,
    partition_value,
    queryable_names,
)
from weward_pipeline.query.errors import (
    BytesScannedLimitError,
    QueryCancelledError,
    QueryError,
    QueryFailedError,
    UnknownTableError,
)
from weward_pipeline.query.output import QueryProgress, QueryResult
from weward_pipeline.query.scan import CountingHandler, ScanBudget, days_read
from weward_pipeline.query.settings import CLIENT_LIMIT_SOURCE, format_bytes


@dataclass
class _Partition:
    values: dict[str, str]
    files: list[pafs.FileInfo]


def _s3_path(location: str) -> str:
    for scheme in ("s3://", "s3a://", "s3n://"):
        if location.startswith(scheme):
            return location[len(scheme) :].rstrip("/")
    raise QueryError(f"location {location!r} is not on S3; the local engine reads s3:// locations only")


def _is_data_file(info: pafs.FileInfo) -> bool:
    # Athena (Hive) ignores objects whose name starts with _ or . (markers, _SUCCESS, ...).
    base = info.base_name
    return bool(info.is_file and info.size) and not base.startswith(("_", "."))


_LINE_CARET = re.compile(r"LINE (\d+): (.*)\n(\s*)\^")


def _duckdb_position(message: str, sql: str) -> tuple[int | None, int | None]:
    """DuckDB prints 'LINE n: <excerpt>' and a caret under the error; turn that into line, column."""
    match = _LINE_CARET.search(message)
    if not match:
        return None, None
    line = int(match.group(1))
    excerpt = match.group(2)
    caret = len(match.group(3)) - len(f"LINE {line}: ")
    lines = sql.splitlines() or [""]
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    offset = 0
    if excerpt.startswith("..."):
        found = text.find(excerpt[3:].rstrip(".")[:40])
        offset = max(found, 0) - 3
    return line, max(caret + offset, 0) + 1


def _duckdb_detail(message: str) -> str:
    first = message.split("\n\nLINE ")[0].strip()
    first = first.replace("temp.main.__lake_", "").replace("__lake_", "")
    return re.sub(r"^[A-Za-z ]+ Error: ", "", first)


class LocalEngine:
    """Runs Athena-style SQL on the lake with DuckDB, reading the objects Glue points at.

    Only the tables a query names are loaded; each partition is listed once per query (in
    parallel). A fresh in-memory DuckDB per query: no state, no files, no external access.
    """

    name = "local"

    def __init__(
        self,
        glue_client,
        filesystem: pafs.FileSystem,
        database: str,
        *,
        max_bytes_scanned: int | None = None,
        timeout_s: float | None = None,
        threads: int | None = None,
        progress: Callable[[QueryProgress], None] | None = None,
        listing_threads: int = 8,
    ) -> None:
        self.glue_client = glue_client
        self.filesystem = filesystem
        self.database = database
        self.max_bytes_scanned = max_bytes_scanned
        self.timeout_s = timeout_s
        self.threads = threads
        self.progress = progress
        self.listing_threads = listing_threads

    def tables(self) -> dict[str, LakeTable]:
        return list_lake_tables(self.glue_client, self.database)

    # -- name resolution ---------------------------------------------------------------------

    def _referenced(self, statement) -> set[str]:
        referenced = set()
        for parts in dialect.referenced_tables(statement):
            if len(parts) >= 2 and parts[-2] in SYSTEM_SCHEMAS:
                continue
            if len(parts) == 3 and parts[0] != ATHENA_CATALOG.lower():
                referenced.add(".".join(parts))
            elif len(parts) >= 2 and parts[-2] != self.database:
                referenced.add(".".join(parts))
            else:
                referenced.add(parts[-1])
        return referenced

    # -- building the views ------------------------------------------------------------------

    def _partitions(self, table: LakeTable) -> list[_Partition]:
        keys = [k for k, _ in table.partition_keys]
        entries = []
        paginator = self.glue_client.get_paginator("get_partitions")
        for page in paginator.paginate(DatabaseName=self.database, TableName=table.name):
            for partition in page["Partitions"]:
                entries.append((dict(zip(keys, partition["Values"])), partition["StorageDescriptor"]["Location"]))
        if not keys:
            entries = [({}, table.location)]

        def listing(entry):
            values, location = entry
            selector = pafs.FileSelector(_s3_path(location), recursive=True, allow_not_found=True)
            files = [info for info in self.filesystem.get_file_info(selector) if _is_data_file(info)]
            return _Partition(values, sorted(files, key=lambda i: i.path))

        with ThreadPoolExecutor(max_workers=self.listing_threads) as pool:
            return list(pool.map(listing, entries))

    def _dataset(
        self, table: LakeTable, filesystem: pafs.FileSystem
    ) -> tuple[ds.Dataset | pa.Table, list[_Partition], list[str]]:
        """The table as one pyarrow dataset (one fragment per object, tagged with its partition
        values), its partitions, and the columns the view must turn into UTC wall-clock time."""
        where = f"table {table.name}"
        fields = [pa.field(name, glue_type_to_arrow(typ, f"{where}, column {name!r}")) for name, typ in table.columns]
        fields += [
            pa.field(name, glue_type_to_arrow(typ, f"{where}, partition key {name!r}"))
            for name, typ in table.partition_keys
        ]
        partitions = self._partitions(table)
        paths, expressions = [], []
        for partition in partitions:
            expression = ds.scalar(True)
            for key, typ in table.partition_keys:
                expression = expression & (ds.field(key) == partition_value(partition.values[key], typ))
            for info in partition.files:
                paths.append(info.path)
                expressions.append(expression)
        # A timestamptz column is stored UTC-adjusted (timestamp[us, tz=UTC]); the dataset keeps
        # the stored type so that filters pushed into the scan compare like with like, and the
        # view presents it as Athena does (a timestamp without zone, in UTC).
        to_wall_clock: list[str] = []
        timestamps = {f.name for f in fields if pa.types.is_timestamp(f.type)}
        if paths and timestamps:
            stored = pq.read_schema(paths[-1], filesystem=self.filesystem)
            for i, f in enumerate(fields):
                if f.name in timestamps and f.name in stored.names:
                    kind = stored.field(f.name).type
                    if pa.types.is_timestamp(kind) and kind.tz is not None:
                        fields[i] = pa.field(f.name, pa.timestamp(f.type.unit, tz="UTC"))
                        to_wall_clock.append(f.name)
        schema = pa.schema(fields)
        if not paths:
            return schema.empty_table(), partitions, to_wall_clock
        dataset = ds.FileSystemDataset.from_paths(
            paths,
            schema=schema,
            format=ds.ParquetFileFormat(),
            filesystem=filesystem,
            partitions=expressions,
        )
        return dataset, partitions, to_wall_clock

    # -- running -----------------------------------------------------------------------------

    def run(self, sql: str) -> QueryResult:
        import duckdb

        started = time.monotonic()
        sql = sql.strip()
        statement = dialect.parse(sql)  # Athena SQL, or a QueryError before anything is read
        referenced = self._referenced(statement)
        tables = self.tables()
        real = {n: t for n, t in tables.items() if not t.is_view}
        known = queryable_names(real)
        latest_views = {
            latest_view_name(n): n for n, t in real.items() if t.mode == "snapshot" and latest_view_name(n) not in real
        }
        athena_views = sorted(n for n in referenced if n in tables and n not in known)
        if athena_views:
            raise QueryError(
                f"{', '.join(athena_views)}: Athena view(s), which only Athena can run; use --engine athena, "
                "or query the tables they read"
            )
        missing = sorted(name for name in referenced if name not in known)
        if missing:
            raise UnknownTableError(missing, known, self.database)

        needed = {latest_views.get(name, name) for name in referenced}
        columns = {name: real[name].columns + real[name].partition_keys for name in needed}
        columns.update({view: columns[base] for view, base in latest_views.items() if base in columns})
        translation = dialect.to_duckdb(statement, sql, columns, catalog=ATHENA_CATALOG.lower(), database=self.database)
        executed = translation.duckdb_sql

        budget = ScanBudget(self.max_bytes_scanned)
        handler = CountingHandler(self.filesystem, budget)
        counting = pafs.PyFileSystem(handler)
        config = {"threads": self.threads} if self.threads else {}
        con = duckdb.connect(config=config)
        budget.on_exceeded = con.interrupt
        timer = ticker = None
        stop_ticking = threading.Event()
        cancelled = {"timeout": False}
        partitions_listed: dict[str, int] = {}
        try:
            con.execute("SET TimeZone = 'UTC'")
            _set_if_known(con, "error_on_division_by_zero", "true")  # Athena fails integer division by zero
            con.execute(f"ATTACH ':memory:' AS {ATHENA_CATALOG.lower()}")
            con.execute(f'CREATE SCHEMA {ATHENA_CATALOG.lower()}."{self.database}"')
            for name in sorted(needed):
                table = real[name]
                dataset, partitions, to_wall_clock = self._dataset(table, counting)
                partitions_listed[name] = len(partitions)
                con.register(f"__lake_{name}", dataset)
                select = ", ".join(
                    f'CAST("{column}" AS TIMESTAMP) AS "{column}"' if column in to_wall_clock else f'"{column}"'
                    for column in dataset.schema.names
                )
                con.execute(
                    f'CREATE VIEW {ATHENA_CATALOG.lower()}."{self.database}"."{name}" AS '
                    f'SELECT {select} FROM temp.main."__lake_{name}"'
                )
                view = latest_view_name(name)
                if view in referenced and latest_views.get(view) == name:
                    # The latest day is read from Glue now, so the view is a plain partition filter.
                    days = [p.values.get(PARTITION_KEY) for p in partitions if p.values.get(PARTITION_KEY)]
                    day = "NULL" if not days else "'" + max(days).replace("'", "''") + "'"
                    con.execute(
                        f'CREATE VIEW {ATHENA_CATALOG.lower()}."{self.database}"."{view}" AS '
                        f'SELECT * FROM {ATHENA_CATALOG.lower()}."{self.database}"."{name}" WHERE dt = {day}'
                    )
            con.execute(f'USE {ATHENA_CATALOG.lower()}."{self.database}"')
            # The query reads the lake and nothing else: no local files, no settings changes.
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")

            if self.timeout_s:

                def _timeout():
                    cancelled["timeout"] = True
                    con.interrupt()

                timer = threading.Timer(self.timeout_s, _timeout)
                timer.daemon = True
                timer.start()
            if self.progress:

                def _tick():
                    while not stop_ticking.wait(0.5):
                        self.progress(QueryProgress(self.name, "RUNNING", time.monotonic() - started, budget.bytes))

                ticker = threading.Thread(target=_tick, daemon=True)
                ticker.start()
            try:
                relation = con.sql(executed)
                result = relation.to_arrow_table() if relation is not None else pa.table({})
                if budget.exceeded:  # the last reads crossed the limit as the query finished
                    raise BytesScannedLimitError(
                        self.max_bytes_scanned, budget.bytes, CLIENT_LIMIT_SOURCE, "local engine"
                    )
            except KeyboardInterrupt:
                con.interrupt()
                raise QueryCancelledError(
                    f"query cancelled (Ctrl-C) after {time.monotonic() - started:.1f} s and "
                    f"{format_bytes(budget.bytes)} read",
                    budget.bytes,
                ) from None
            except duckdb.Error as exc:
                if "\nLINE " not in str(exc) and isinstance(exc, (duckdb.BinderException, duckdb.CatalogException)):
                    # A relation's bind error carries no position; the same statement through
                    # execute() fails at the same bind step (nothing runs) and says where.
                    try:
                        con.execute(executed)
                    except duckdb.Error as positioned:
                        exc = positioned
                error = self._translate(exc, sql, executed, budget, cancelled["timeout"], tables)
                error.executed_sql = executed
                raise error from None
        finally:
            budget.drain()
            stop_ticking.set()
            if timer is not None:
                timer.cancel()
            if ticker is not None:
                ticker.join()
            con.close()
        elapsed = time.monotonic() - started
        if self.progress:
            self.progress(QueryProgress(self.name, "SUCCEEDED", elapsed, budget.bytes))
        return QueryResult(
            sql=sql,
            engine=self.name,
            table=result,
            bytes_scanned=budget.bytes,
            elapsed_s=elapsed,
            executed_sql=executed,
            rewrites=translation.rewrites,
            partitions_listed=partitions_listed,
            days_read=days_read(handler.opened, list(partitions_listed)),
        )

    def _translate(self, exc, sql: str, executed: str, budget: ScanBudget, timed_out: bool, tables) -> QueryError:
        """DuckDB's error on the translated statement, in terms of the analyst's own SQL."""
        import duckdb

        message = str(exc)
        if budget.exceeded:
            return BytesScannedLimitError(self.max_bytes_scanned, budget.bytes, CLIENT_LIMIT_SOURCE, "local engine")
        if isinstance(exc, duckdb.InterruptException):
            reason = f"timeout of {self.timeout_s:g} s" if timed_out else "interrupted"
            return QueryCancelledError(
                f"query cancelled ({reason}) after {format_bytes(budget.bytes)} read; nothing was returned",
                budget.bytes,
            )
        detail = _duckdb_detail(message)
        line, column = _original_position(message, executed, sql, detail)
        function = re.search(
            r"(?:Scalar|Aggregate|Table) Function with name \"?([A-Za-z_0-9]+)\"? does not exist", message
        )
        if function and dialect.untranslatable_function(function.group(1)):
            name = function.group(1).lower()
            line, column = dialect.locate(sql, name)
            return QueryFailedError(
                f"{name}: an Athena function the local engine cannot translate (DuckDB has none like it); "
                "run this query with --engine athena",
                sql,
                line,
                column,
            )
        if isinstance(exc, duckdb.ParserException):
            return QueryFailedError(
                f"the DuckDB translation of this Athena SQL does not parse ({detail}); see it with --show-sql "
                "and run the query with --engine athena",
                sql,
            )
        if isinstance(exc, duckdb.CatalogException) and "does not exist" in detail and not function:
            name = re.search(r'with name "?([^"!\s]+)', detail)
            missing = [name.group(1)] if name else [detail]
            return UnknownTableError(
                missing, queryable_names({n: t for n, t in tables.items() if not t.is_view}), self.database
            )
        if isinstance(exc, duckdb.PermissionException):
            return QueryFailedError(f"{detail} (the local engine reads only the lake's tables)", sql, line, column)
        return QueryFailedError(detail, sql, line, column)


def _set_if_known(con, setting: str, value: str) -> None:
    """A DuckDB setting newer releases have; older ones keep their behaviour."""
    import duckdb

    try:
        con.execute(f"SET {setting} = {value}")
    except duckdb.Error:
        pass


def _original_position(message: str, executed: str, sql: str, detail: str) -> tuple[int | None, int | None]:
    """Where in the analyst's SQL the word DuckDB points at (in the translation) is written."""
    line, column = _duckdb_position(message, executed)
    word = None
    if line and column:
        lines = executed.splitlines()
        text = lines[line - 1] if 0 < line <= len(lines) else ""
        match = re.match(r'"?([A-Za-z_][A-Za-z0-9_]*)"?(?:\."?([A-Za-z_][A-Za-z0-9_]*)"?)?', text[column - 1 :])
        if match:
            word = match.group(2) or match.group(1)
    if word is None:
        quoted = re.search(r'"([A-Za-z_][A-Za-z0-9_]*)"', detail)
        word = quoted.group(1) if quoted else None
    return dialect.locate(sql, word) if word else (None, None)
