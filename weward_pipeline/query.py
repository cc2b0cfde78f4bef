"""Query the lake with SQL: Athena in production, DuckDB over the very same objects locally.

Both engines see one thing: the Glue database. A table is what its Glue entry says (columns,
`dt` partitions, each partition's S3 location), so a query tried on the local stack reads the
Parquet objects Athena would read, with the same names and types:

- `AthenaEngine`: StartQueryExecution in the configured workgroup (WEWARD_ATHENA_WORKGROUP,
  results to WEWARD_ATHENA_OUTPUT or the workgroup's own location), polls with a progress
  callback, reports bytes scanned and their cost, stops the query on Ctrl-C, timeout or a
  client-side scan limit, and turns Athena's failure reasons into errors an analyst can act on.
- `LocalEngine`: DuckDB in-process. One view per Glue table over a pyarrow dataset whose
  fragments are the objects under each partition's location, tagged with their `dt`; DuckDB
  pushes filters into the scan, so `WHERE dt BETWEEN ...` skips whole partitions (no request
  is made for them) and other predicates skip row groups by their statistics. Every byte read
  from S3 is counted: that is the local "data scanned", and the scan limit applies to it.

Snapshot tables (Glue parameter `weward.mode = snapshot`) also get `<name>_latest`: the latest
exported day. Locally it is a view; for Athena, `latest_view_sql` is the CREATE VIEW statement
(`weward-pipeline query --create-latest-views` runs it).

Time semantics follow Athena: Glue `timestamp` columns are UTC wall-clock timestamps without a
time zone, and the session time zone is UTC.
"""

from __future__ import annotations

import datetime as dt
import difflib
import io
import math
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from weward_pipeline import aws
from weward_pipeline.config import DEFAULT_AWS_REGION, DEFAULT_GLUE_DATABASE, ConfigError
from weward_pipeline.config import aws_endpoint_url as endpoint_from_env
from weward_pipeline.config import aws_region as region_from_env
from weward_pipeline.config import glue_database as glue_database_from_env
from weward_pipeline.glue import PARTITION_KEY

# Athena's price in most regions (eu-west-3 included): 5 USD per TB scanned, billed per query
# rounded up to the megabyte with a 10 MB minimum; DDL and failed queries are free.
ATHENA_USD_PER_TB = 5.0
TB = 1024**4
MB = 1024**2
ATHENA_MIN_BILLED_BYTES = 10 * MB
ATHENA_CATALOG = "AwsDataCatalog"
LATEST_SUFFIX = "_latest"
# Catalogs/schemas a query may name besides the Glue database.
SYSTEM_SCHEMAS = {"information_schema", "pg_catalog"}
CLIENT_LIMIT_SOURCE = "--max-bytes-scanned / WEWARD_QUERY_MAX_BYTES_SCANNED"


# --------------------------------------------------------------------------------------------
# Errors: each says what went wrong in the analyst's terms, and what to do about it.
# --------------------------------------------------------------------------------------------


class QueryError(RuntimeError):
    """A query could not run or did not finish. str() is the message to show."""


class UnknownTableError(QueryError):
    def __init__(self, missing: list[str], known: list[str], database: str) -> None:
        self.missing = missing
        self.known = known
        hints = []
        for name in missing:
            close = difflib.get_close_matches(name.split(".")[-1], known, n=2, cutoff=0.6)
            if close:
                hints.append(f"{name}: did you mean {' or '.join(close)}?")
        message = (
            f"unknown table{'s' if len(missing) > 1 else ''} {', '.join(missing)} in Glue database {database}. "
            + (" ".join(hints) + " " if hints else "")
            + f"Known tables: {', '.join(known) if known else '(none yet: export a day first)'}"
        )
        super().__init__(message)


def _render_position(sql: str, line: int, column: int) -> str:
    lines = sql.splitlines() or [""]
    if not 1 <= line <= len(lines):
        return ""
    text = lines[line - 1]
    return f"\n  {text}\n  {' ' * max(column - 1, 0)}^"


class QuerySyntaxError(QueryError):
    def __init__(self, detail: str, sql: str, line: int | None, column: int | None) -> None:
        self.line, self.column, self.detail = line, column, detail
        where = f" at line {line}, column {column}" if line else ""
        super().__init__(f"syntax error{where}: {detail}" + (_render_position(sql, line, column or 1) if line else ""))


class QueryFailedError(QueryError):
    """The engine ran the query and refused it (unknown column, type mismatch, ...)."""

    def __init__(self, detail: str, sql: str = "", line: int | None = None, column: int | None = None) -> None:
        self.line, self.column, self.detail = line, column, detail
        where = f" (line {line}, column {column})" if line else ""
        super().__init__(f"query failed{where}: {detail}" + (_render_position(sql, line, column or 1) if line else ""))


class QueryCancelledError(QueryError):
    def __init__(self, message: str, bytes_scanned: int = 0) -> None:
        self.bytes_scanned = bytes_scanned
        super().__init__(message)


class BytesScannedLimitError(QueryError):
    def __init__(self, limit: int | None, scanned: int, where: str, engine: str) -> None:
        self.limit, self.scanned, self.where = limit, scanned, where
        limit_text = format_bytes(limit) if limit else "its limit"
        super().__init__(
            f"bytes-scanned limit reached: the query was stopped after scanning {format_bytes(scanned)} "
            f"({engine}), over the {limit_text} per query allowed by {where}. Read fewer days "
            "(WHERE dt BETWEEN '2024-03-01' AND '2024-03-07' prunes partitions), select only the "
            "columns you need, or, if the scan is intended, raise the limit"
            + (" (--max-bytes-scanned)" if where.startswith("--") or "WEWARD_" in where else
               " in the workgroup (infra: bytes_scanned_cutoff_per_query) or use another workgroup")
            + "."
        )


# --------------------------------------------------------------------------------------------
# Sizes, cost, settings.
# --------------------------------------------------------------------------------------------

_UNITS = {"": 1, "b": 1, "kb": 1024, "k": 1024, "mb": MB, "m": MB, "gb": 1024**3, "g": 1024**3, "tb": TB, "t": TB}


def parse_size(text: str | int | None) -> int | None:
    """'10GB', '500 MB', '1e9' or an int -> bytes (binary units, as the AWS console)."""
    if text is None or text == "":
        return None
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?(?:e[0-9]+)?)\s*([a-zA-Z]*?)(?:i?b)?\s*", text.strip(), re.I)
    unit = (match.group(2).lower() if match else "")
    if not match or unit not in _UNITS:
        raise ConfigError(f"cannot read the size {text!r}: use bytes or a unit, e.g. 500MB, 10GB, 1TB")
    return int(float(match.group(1)) * _UNITS[unit])


def format_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("TB", TB), ("GB", 1024**3), ("MB", MB), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def format_usd(amount: float) -> str:
    return f"${amount:.2f}" if amount >= 1 else f"${amount:.6f}"


def athena_cost_usd(bytes_scanned: int, usd_per_tb: float = ATHENA_USD_PER_TB) -> float:
    """What Athena bills for a query that scanned this much (0 scanned: nothing billed)."""
    if bytes_scanned <= 0:
        return 0.0
    billed = max(math.ceil(bytes_scanned / MB) * MB, ATHENA_MIN_BILLED_BYTES)
    return billed / TB * usd_per_tb


@dataclass(frozen=True)
class QuerySettings:
    """The query side of the environment contract (no PostgreSQL needed)."""

    glue_database: str = DEFAULT_GLUE_DATABASE
    aws_region: str = DEFAULT_AWS_REGION
    aws_endpoint_url: str | None = None
    athena_workgroup: str = "primary"
    athena_output: str | None = None
    max_bytes_scanned: int | None = None
    engine: str = "auto"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> QuerySettings:
        env = dict(os.environ if env is None else env)
        database = glue_database_from_env(env)
        output = env.get("WEWARD_ATHENA_OUTPUT") or None
        if output and not output.startswith("s3://"):
            raise ConfigError(f"WEWARD_ATHENA_OUTPUT must be an s3://bucket/prefix/ URL, got {output!r}")
        engine = env.get("WEWARD_QUERY_ENGINE") or "auto"
        if engine not in ENGINES:
            raise ConfigError(f"WEWARD_QUERY_ENGINE must be one of {', '.join(ENGINES)}, got {engine!r}")
        return cls(
            glue_database=database,
            aws_region=region_from_env(env),
            aws_endpoint_url=endpoint_from_env(env),
            athena_workgroup=env.get("WEWARD_ATHENA_WORKGROUP") or "primary",
            athena_output=output,
            max_bytes_scanned=parse_size(env.get("WEWARD_QUERY_MAX_BYTES_SCANNED")),
            engine=engine,
        )

    def resolved_engine(self, engine: str | None = None) -> str:
        """auto: the local stack (an AWS_ENDPOINT_URL, i.e. moto) cannot run SQL, so DuckDB; else Athena."""
        engine = engine or self.engine
        if engine == "auto":
            return "local" if self.aws_endpoint_url else "athena"
        return engine


ENGINES = ("auto", "local", "athena")


# --------------------------------------------------------------------------------------------
# Results.
# --------------------------------------------------------------------------------------------


@dataclass
class QueryProgress:
    engine: str
    state: str  # QUEUED, RUNNING (then the final state)
    elapsed_s: float
    bytes_scanned: int
    query_id: str | None = None


@dataclass
class QueryResult:
    sql: str
    engine: str
    table: pa.Table
    bytes_scanned: int
    elapsed_s: float
    query_id: str | None = None
    workgroup: str | None = None
    output_location: str | None = None
    statement_type: str = "DML"
    partitions_listed: dict[str, int] = field(default_factory=dict)
    usd_per_tb: float = ATHENA_USD_PER_TB

    @property
    def columns(self) -> list[str]:
        return self.table.column_names

    @property
    def rows(self) -> list[dict]:
        return self.table.to_pylist()

    @property
    def cost_usd(self) -> float:
        """Athena's bill for this query; for the local engine, what Athena would bill for the same bytes."""
        if self.statement_type != "DML":
            return 0.0
        return athena_cost_usd(self.bytes_scanned, self.usd_per_tb)

    def summary(self) -> str:
        rows = self.table.num_rows
        scanned = f"scanned {format_bytes(self.bytes_scanned)}"
        if self.engine == "athena":
            cost = f"cost {format_usd(self.cost_usd)} at ${self.usd_per_tb:g}/TB (10 MB minimum)"
            ident = f", query {self.query_id} in workgroup {self.workgroup}"
        else:
            cost = f"no charge locally (Athena: about {format_usd(self.cost_usd)})"
            ident = ""
            if self.partitions_listed:
                ident = "; tables: " + ", ".join(f"{t} ({n} day{'s' if n != 1 else ''})" for t, n in sorted(self.partitions_listed.items()))
        return f"{rows} row{'s' if rows != 1 else ''} in {self.elapsed_s:.2f} s, {scanned}, {cost}{ident}"

    def format(self, max_rows: int = 100, max_width: int = 40) -> str:
        return format_table(self.table, max_rows=max_rows, max_width=max_width)

    def write(self, path: str | os.PathLike) -> str:
        """--output: .csv or .parquet by the file's suffix. Returns the format written."""
        return write_table(self.table, path)


def _cell(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def format_table(table: pa.Table, max_rows: int = 100, max_width: int = 40) -> str:
    """A plain, aligned text table (numbers right-aligned, NULL spelled out)."""
    names = table.column_names
    numeric = [
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) for t in table.schema.types
    ]
    shown = table.slice(0, max_rows)
    columns = [[_cell(v) for v in shown.column(i).to_pylist()] for i in range(len(names))]
    columns = [[c if len(c) <= max_width else c[: max_width - 1] + "…" for c in column] for column in columns]
    widths = [max([len(n)] + [len(c) for c in column]) for n, column in zip(names, columns)]

    def line(values: list[str]) -> str:
        return " | ".join(v.rjust(w) if numeric[i] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    out = [line(names), "-+-".join("-" * w for w in widths)]
    out.extend(line([column[r] for column in columns]) for r in range(shown.num_rows))
    if table.num_rows > max_rows:
        out.append(f"... {table.num_rows - max_rows} more row(s); write them all with --output file.csv|file.parquet")
    return "\n".join(out)


def _csv_ready(table: pa.Table) -> pa.Table:
    """CSV has no nested types: lists, maps and structs become their JSON-like text."""
    columns = []
    for column, typ in zip(table.columns, table.schema.types):
        if pa.types.is_nested(typ) or pa.types.is_binary(typ):
            columns.append(pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string()))
        else:
            columns.append(column)
    return pa.table(columns, names=table.column_names)


def write_table(table: pa.Table, path: str | os.PathLike) -> str:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise QueryError(f"--output {path}: the file name must end in .csv or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        pacsv.write_csv(_csv_ready(table), str(path))
        return "csv"
    pq.write_table(table, str(path), compression="zstd")
    return "parquet"


# --------------------------------------------------------------------------------------------
# The Glue side, shared by both engines.
# --------------------------------------------------------------------------------------------


def latest_view_name(table: str) -> str:
    return f"{table}{LATEST_SUFFIX}"


def latest_view_sql(database: str, table: str) -> str:
    """The Athena view giving a snapshot table's latest exported day.

    `SELECT *` in an Athena view freezes the column list: re-create the view (the statement is
    idempotent) after the table gains a column.
    """
    return (
        f'CREATE OR REPLACE VIEW "{database}"."{latest_view_name(table)}" AS\n'
        f'SELECT * FROM "{database}"."{table}"\n'
        f'WHERE dt = (SELECT max(dt) FROM "{database}"."{table}")'
    )


@dataclass
class LakeTable:
    name: str
    columns: list[tuple[str, str]]  # (name, Glue type)
    partition_keys: list[tuple[str, str]]
    location: str
    mode: str | None = None  # weward.mode: append | snapshot (None: not a pipeline table)
    is_view: bool = False


def list_lake_tables(glue_client, database: str) -> dict[str, LakeTable]:
    """Every table (and Athena view) of the Glue database, by name."""
    tables: dict[str, LakeTable] = {}
    try:
        for page in glue_client.get_paginator("get_tables").paginate(DatabaseName=database):
            for entry in page["TableList"]:
                descriptor = entry.get("StorageDescriptor") or {}
                tables[entry["Name"]] = LakeTable(
                    name=entry["Name"],
                    columns=[(c["Name"], c["Type"]) for c in descriptor.get("Columns", [])],
                    partition_keys=[(c["Name"], c["Type"]) for c in entry.get("PartitionKeys", [])],
                    location=descriptor.get("Location", ""),
                    mode=(entry.get("Parameters") or {}).get("weward.mode"),
                    is_view=entry.get("TableType") == "VIRTUAL_VIEW",
                )
    except glue_client.exceptions.EntityNotFoundException:
        raise QueryError(
            f"Glue database {database} does not exist: export a day first (make demo), or set "
            "WEWARD_GLUE_DATABASE to the lake's database"
        ) from None
    return tables


def queryable_names(tables: dict[str, LakeTable]) -> list[str]:
    """What a query may name: tables, Athena views, and the `<name>_latest` views of snapshot tables."""
    names = set(tables)
    names.update(latest_view_name(t.name) for t in tables.values() if t.mode == "snapshot" and not t.is_view)
    return sorted(names)


# --------------------------------------------------------------------------------------------
# Glue type -> Arrow type (the inverse of typemap, for any Hive type Glue may hold).
# --------------------------------------------------------------------------------------------

_SIMPLE_TYPES = {
    "tinyint": pa.int8(), "smallint": pa.int16(), "int": pa.int32(), "integer": pa.int32(),
    "bigint": pa.int64(), "float": pa.float32(), "real": pa.float32(), "double": pa.float64(),
    "boolean": pa.bool_(), "string": pa.string(), "binary": pa.binary(), "date": pa.date32(),
    # Athena reads Parquet timestamps (UTC-adjusted or not) as wall-clock values without zone.
    "timestamp": pa.timestamp("us"),
}


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def glue_type_to_arrow(glue_type: str, where: str = "") -> pa.DataType:
    t = glue_type.strip().lower()
    if t in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[t]
    if re.fullmatch(r"(var)?char\(\d+\)", t):
        return pa.string()
    match = re.fullmatch(r"decimal\((\d+),\s*(\d+)\)", t)
    if match:
        return pa.decimal128(int(match.group(1)), int(match.group(2)))
    if t == "decimal":
        return pa.decimal128(10, 0)  # Hive's default
    if t.startswith("array<") and t.endswith(">"):
        return pa.list_(glue_type_to_arrow(glue_type.strip()[6:-1], where))
    if t.startswith("map<") and t.endswith(">"):
        key, value = _split_top_level(glue_type.strip()[4:-1])
        return pa.map_(glue_type_to_arrow(key, where), glue_type_to_arrow(value, where))
    if t.startswith("struct<") and t.endswith(">"):
        fields = []
        for part in _split_top_level(glue_type.strip()[7:-1]):
            name, _, sub = part.partition(":")
            fields.append(pa.field(name.strip(), glue_type_to_arrow(sub, where)))
        return pa.struct(fields)
    raise QueryError(f"{where}: Glue type {glue_type!r} is not supported by the local engine; query it with Athena")


def _partition_value(value: str, glue_type: str) -> pa.Scalar:
    """Glue stores partition values as text; the dataset compares them in the key's own type."""
    return pa.scalar(value, pa.string()).cast(glue_type_to_arrow(glue_type))


# --------------------------------------------------------------------------------------------
# Local engine: DuckDB over pyarrow datasets, every S3 byte counted.
# --------------------------------------------------------------------------------------------


class _ScanBudget:
    """Bytes read from S3 by one query, and the limit it may not pass.

    Reads run on pyarrow's I/O threads, which take the GIL to run this Python code, so they
    never raise: a Python error aborting a scan that is still starting (pyarrow holds the GIL
    there) deadlocks. Past the limit the query is interrupted through DuckDB instead, and reads
    of an ended query return nothing. `drain` waits, GIL released, until no read is in flight,
    so the next query (or the interpreter's exit) never meets a straggler.
    """

    QUIET_S = 0.05

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.bytes = 0
        self.exceeded = False
        self.closed = False
        self.inflight = 0
        self.last_activity = time.monotonic()
        self.on_exceeded: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def begin_read(self) -> bool:
        with self._lock:
            if self.closed or self.exceeded:
                return False
            self.inflight += 1
            self.last_activity = time.monotonic()
            return True

    def end_read(self, n: int) -> None:
        fire = False
        with self._lock:
            self.inflight -= 1
            self.bytes += n
            self.last_activity = time.monotonic()
            if self.limit is not None and self.bytes > self.limit and not self.exceeded:
                self.exceeded = fire = True
        if fire and self.on_exceeded is not None:
            self.on_exceeded()

    def drain(self, timeout_s: float = 30.0) -> None:
        with self._lock:
            self.closed = True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                idle = self.inflight == 0 and time.monotonic() - self.last_activity > self.QUIET_S
            if idle:
                return
            time.sleep(0.01)


class _CountingFile(io.RawIOBase):
    def __init__(self, inner, budget: _ScanBudget) -> None:
        self._inner = inner
        self._budget = budget

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def size(self) -> int:
        return self._inner.size()

    def read(self, n: int = -1) -> bytes:
        if not self._budget.begin_read():
            return b""  # the query has ended or is being stopped: nothing more is read
        data = b""
        try:
            data = self._inner.read() if n is None or n < 0 else self._inner.read(n)
        finally:
            self._budget.end_read(len(data))
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            super().close()


class _CountingHandler(pafs.FileSystemHandler):
    """Read-only pass-through filesystem that counts the bytes the query engine reads."""

    def __init__(self, inner: pafs.FileSystem, budget: _ScanBudget) -> None:
        self.inner = inner
        self.budget = budget

    def __eq__(self, other) -> bool:
        return isinstance(other, _CountingHandler) and other.inner is self.inner and other.budget is self.budget

    def __ne__(self, other) -> bool:
        return not self == other

    def get_type_name(self) -> str:
        return f"counting+{self.inner.type_name}"

    def normalize_path(self, path: str) -> str:
        return self.inner.normalize_path(path)

    def get_file_info(self, paths):
        return self.inner.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.inner.get_file_info(selector)

    def open_input_file(self, path: str):
        return pa.PythonFile(_CountingFile(self.inner.open_input_file(path), self.budget), mode="r")

    def open_input_stream(self, path: str):
        return self.open_input_file(path)

    def _read_only(self, *args, **kwargs):
        raise PermissionError("the query engine reads the lake; it never writes to it")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = _read_only
    delete_file = move = copy_file = open_output_stream = open_append_stream = _read_only


@dataclass
class _Partition:
    values: dict[str, str]
    files: list[pafs.FileInfo]


def _s3_path(location: str) -> str:
    for scheme in ("s3://", "s3a://", "s3n://"):
        if location.startswith(scheme):
            return location[len(scheme):].rstrip("/")
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

    def _referenced(self, sql: str) -> set[str]:
        import duckdb

        try:
            names = duckdb.get_table_names(sql, qualified=True)
        except duckdb.ParserException as exc:
            line, column = _duckdb_position(str(exc), sql)
            raise QuerySyntaxError(_duckdb_detail(str(exc)), sql, line, column) from None
        referenced = set()
        for name in names:
            name = re.sub(r"\s+AS\s+.*$", "", name, flags=re.I)
            parts = [p.strip('"').lower() for p in name.split(".")]
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

    def _dataset(self, table: LakeTable, filesystem: pafs.FileSystem) -> tuple[ds.Dataset | pa.Table, list[_Partition], list[str]]:
        """The table as one pyarrow dataset (one fragment per object, tagged with its partition
        values), its partitions, and the columns the view must turn into UTC wall-clock time."""
        where = f"table {table.name}"
        fields = [pa.field(name, glue_type_to_arrow(typ, f"{where}, column {name!r}")) for name, typ in table.columns]
        fields += [pa.field(name, glue_type_to_arrow(typ, f"{where}, partition key {name!r}")) for name, typ in table.partition_keys]
        partitions = self._partitions(table)
        paths, expressions = [], []
        for partition in partitions:
            expression = ds.scalar(True)
            for key, typ in table.partition_keys:
                expression = expression & (ds.field(key) == _partition_value(partition.values[key], typ))
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
            paths, schema=schema, format=ds.ParquetFileFormat(), filesystem=filesystem, partitions=expressions,
        )
        return dataset, partitions, to_wall_clock

    # -- running -----------------------------------------------------------------------------

    def run(self, sql: str) -> QueryResult:
        import duckdb

        started = time.monotonic()
        sql = sql.strip()
        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.ParserException as exc:
            line, column = _duckdb_position(str(exc), sql)
            raise QuerySyntaxError(_duckdb_detail(str(exc)), sql, line, column) from None
        if len(statements) != 1:
            raise QueryError(f"one statement per query (as in Athena), got {len(statements)}")
        referenced = self._referenced(sql)
        tables = self.tables()
        real = {n: t for n, t in tables.items() if not t.is_view}
        known = queryable_names(real)
        latest_views = {latest_view_name(n): n for n, t in real.items()
                        if t.mode == "snapshot" and latest_view_name(n) not in real}
        athena_views = sorted(n for n in referenced if n in tables and n not in known)
        if athena_views:
            raise QueryError(
                f"{', '.join(athena_views)}: Athena view(s), which only Athena can run; use --engine athena, "
                "or query the tables they read"
            )
        missing = sorted(name for name in referenced if name not in known)
        if missing:
            raise UnknownTableError(missing, known, self.database)

        budget = _ScanBudget(self.max_bytes_scanned)
        counting = pafs.PyFileSystem(_CountingHandler(self.filesystem, budget))
        config = {"threads": self.threads} if self.threads else {}
        con = duckdb.connect(config=config)
        budget.on_exceeded = con.interrupt
        timer = ticker = None
        stop_ticking = threading.Event()
        cancelled = {"timeout": False}
        partitions_listed: dict[str, int] = {}
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(f"ATTACH ':memory:' AS {ATHENA_CATALOG.lower()}")
            con.execute(f'CREATE SCHEMA {ATHENA_CATALOG.lower()}."{self.database}"')
            needed = {latest_views.get(name, name) for name in referenced}
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
                relation = con.sql(sql)
                result = relation.to_arrow_table() if relation is not None else pa.table({})
                if budget.exceeded:  # the last reads crossed the limit as the query finished
                    raise BytesScannedLimitError(self.max_bytes_scanned, budget.bytes, CLIENT_LIMIT_SOURCE, "local engine")
            except KeyboardInterrupt:
                con.interrupt()
                raise QueryCancelledError(
                    f"query cancelled (Ctrl-C) after {time.monotonic() - started:.1f} s and "
                    f"{format_bytes(budget.bytes)} read", budget.bytes,
                ) from None
            except duckdb.Error as exc:
                if "\nLINE " not in str(exc) and isinstance(exc, (duckdb.BinderException, duckdb.CatalogException)):
                    # A relation's bind error carries no position; the same statement through
                    # execute() fails at the same bind step (nothing runs) and says where.
                    try:
                        con.execute(sql)
                    except duckdb.Error as positioned:
                        exc = positioned
                raise self._translate(exc, sql, budget, cancelled["timeout"], tables) from None
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
            sql=sql, engine=self.name, table=result, bytes_scanned=budget.bytes, elapsed_s=elapsed,
            partitions_listed=partitions_listed,
        )

    def _translate(self, exc, sql: str, budget: _ScanBudget, timed_out: bool, tables) -> QueryError:
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
        line, column = _duckdb_position(message, sql)
        detail = _duckdb_detail(message)
        if isinstance(exc, duckdb.ParserException):
            return QuerySyntaxError(detail, sql, line, column)
        if isinstance(exc, duckdb.CatalogException) and "does not exist" in detail:
            name = re.search(r'with name "?([^"!\s]+)', detail)
            missing = [name.group(1)] if name else [detail]
            return UnknownTableError(missing, queryable_names({n: t for n, t in tables.items() if not t.is_view}), self.database)
        if isinstance(exc, duckdb.PermissionException):
            return QueryFailedError(f"{detail} (the local engine reads only the lake's tables)", sql, line, column)
        return QueryFailedError(detail, sql, line, column)


# --------------------------------------------------------------------------------------------
# Athena engine.
# --------------------------------------------------------------------------------------------

TERMINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")
_ATHENA_POSITION = re.compile(r"line (\d+):(\d+):\s*(.*)", re.S)
_SYNTAX_MARKERS = ("mismatched input", "extraneous input", "no viable alternative", "syntax_error", "missing ")


def _athena_arrow_type(info: dict) -> pa.DataType:
    kind = info.get("Type", "varchar").lower()
    if kind in ("tinyint", "smallint", "integer", "int", "bigint"):
        return {"tinyint": pa.int8(), "smallint": pa.int16(), "integer": pa.int32(), "int": pa.int32()}.get(kind, pa.int64())
    if kind in ("double", "float", "real"):
        return pa.float64() if kind == "double" else pa.float32()
    if kind == "decimal":
        precision = int(info.get("Precision") or 38)
        return pa.decimal128(max(precision, 1), int(info.get("Scale") or 0))
    if kind == "boolean":
        return pa.bool_()
    if kind == "date":
        return pa.date32()
    if kind == "timestamp":
        return pa.timestamp("us")
    return pa.string()  # varchar, char, json, array, map, row, time, interval, varbinary: Athena's text


def athena_rows_to_arrow(column_info: list[dict], rows: list[list[str | None]]) -> pa.Table:
    """Athena returns every value as text (or absent for NULL); type them back by ColumnInfo."""
    arrays = []
    for index, info in enumerate(column_info):
        target = _athena_arrow_type(info)
        texts = pa.array([row[index] if index < len(row) else None for row in rows], pa.string())
        if pa.types.is_string(target):
            arrays.append(texts)
        elif pa.types.is_boolean(target):
            arrays.append(pc.equal(pc.utf8_lower(texts), "true"))
        elif pa.types.is_timestamp(target):
            arrays.append(pa.array([None if t is None else _parse_timestamp(t) for t in texts.to_pylist()], target))
        else:
            arrays.append(texts.cast(target))
    names = [info.get("Label") or info.get("Name") or f"_col{i}" for i, info in enumerate(column_info)]
    return pa.table(arrays, names=names) if arrays else pa.table({})


def _parse_timestamp(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace(" ", "T"))


class AthenaEngine:
    """Athena through boto3: one query execution, polled until it settles."""

    name = "athena"

    def __init__(
        self,
        athena_client,
        glue_client,
        database: str,
        *,
        workgroup: str = "primary",
        output_location: str | None = None,
        max_bytes_scanned: int | None = None,
        timeout_s: float | None = None,
        progress: Callable[[QueryProgress], None] | None = None,
        poll_interval_s: tuple[float, float] = (0.2, 2.0),
        usd_per_tb: float = ATHENA_USD_PER_TB,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.athena = athena_client
        self.glue_client = glue_client
        self.database = database
        self.workgroup = workgroup
        self.output_location = output_location
        self.max_bytes_scanned = max_bytes_scanned
        self.timeout_s = timeout_s
        self.progress = progress
        self.poll_interval_s = poll_interval_s
        self.usd_per_tb = usd_per_tb
        self.sleep = sleep
        self._workgroup_config: dict | None = None

    def workgroup_configuration(self) -> dict:
        if self._workgroup_config is None:
            from botocore.exceptions import ClientError

            try:
                workgroup = self.athena.get_work_group(WorkGroup=self.workgroup).get("WorkGroup")
            except ClientError as exc:
                workgroup = None
                if exc.response.get("Error", {}).get("Code") not in ("InvalidRequestException", "ResourceNotFoundException"):
                    raise QueryError(f"cannot read Athena workgroup {self.workgroup}: {exc}") from None
            if not workgroup:
                raise QueryError(
                    f"Athena workgroup {self.workgroup!r} does not exist (or you may not use it); set "
                    "WEWARD_ATHENA_WORKGROUP to the analysts' workgroup (infra/modules/catalog)"
                )
            if workgroup.get("State", "ENABLED") != "ENABLED":
                raise QueryError(f"Athena workgroup {self.workgroup!r} is disabled; ask the lake owners to enable it")
            self._workgroup_config = workgroup.get("Configuration") or {}
        return self._workgroup_config

    @property
    def workgroup_cutoff(self) -> int | None:
        return self.workgroup_configuration().get("BytesScannedCutoffPerQuery")

    def _result_location(self) -> str | None:
        configured = (self.workgroup_configuration().get("ResultConfiguration") or {}).get("OutputLocation")
        return self.output_location or configured

    def start(self, sql: str) -> str:
        from botocore.exceptions import ClientError

        config = self.workgroup_configuration()
        location = self._result_location()
        if not location:
            raise QueryError(
                f"Athena needs a results location: set WEWARD_ATHENA_OUTPUT=s3://bucket/prefix/ or configure "
                f"one on workgroup {self.workgroup}"
            )
        request = {
            "QueryString": sql,
            "QueryExecutionContext": {"Database": self.database, "Catalog": ATHENA_CATALOG},
            "WorkGroup": self.workgroup,
        }
        if self.output_location and not config.get("EnforceWorkGroupConfiguration"):
            request["ResultConfiguration"] = {"OutputLocation": self.output_location}
        try:
            return self.athena.start_query_execution(**request)["QueryExecutionId"]
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise QueryError(f"Athena refused the query ({error.get('Code')}): {error.get('Message')}") from None

    def _stop(self, query_id: str) -> None:
        try:
            self.athena.stop_query_execution(QueryExecutionId=query_id)
        except Exception:  # noqa: BLE001 - best effort; the caller reports the cancellation anyway
            pass

    def wait(self, query_id: str) -> dict:
        """Poll until the query settles; stop it on timeout, scan limit or Ctrl-C."""
        started = time.monotonic()
        interval = self.poll_interval_s[0]
        scanned = 0
        try:
            while True:
                execution = self.athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
                state = execution["Status"]["State"]
                scanned = int((execution.get("Statistics") or {}).get("DataScannedInBytes") or 0)
                elapsed = time.monotonic() - started
                if self.progress:
                    self.progress(QueryProgress(self.name, state, elapsed, scanned, query_id))
                if state in TERMINAL_STATES:
                    return execution
                if self.max_bytes_scanned is not None and scanned > self.max_bytes_scanned:
                    self._stop(query_id)
                    raise BytesScannedLimitError(self.max_bytes_scanned, scanned, CLIENT_LIMIT_SOURCE, f"Athena query {query_id}")
                if self.timeout_s is not None and elapsed > self.timeout_s:
                    self._stop(query_id)
                    raise QueryCancelledError(
                        f"Athena query {query_id} stopped after the {self.timeout_s:g} s timeout; it had scanned "
                        f"{format_bytes(scanned)} (billed: {format_usd(athena_cost_usd(scanned, self.usd_per_tb))})", scanned,
                    )
                self.sleep(interval)
                interval = min(interval * 1.5, self.poll_interval_s[1])
        except KeyboardInterrupt:
            self._stop(query_id)
            raise QueryCancelledError(
                f"Athena query {query_id} cancelled (Ctrl-C) after {time.monotonic() - started:.1f} s; it had scanned "
                f"{format_bytes(scanned)} (billed: {format_usd(athena_cost_usd(scanned, self.usd_per_tb))})", scanned,
            ) from None

    def failure(self, execution: dict, sql: str) -> QueryError:
        """Athena's FAILED/CANCELLED reasons, in the analyst's terms."""
        status = execution.get("Status", {})
        state = status.get("State")
        athena_error = status.get("AthenaError") or {}
        reason = status.get("StateChangeReason") or athena_error.get("ErrorMessage") or ""
        scanned = int((execution.get("Statistics") or {}).get("DataScannedInBytes") or 0)
        query_id = execution.get("QueryExecutionId")
        lowered = reason.lower()
        if "bytes scanned limit" in lowered:
            return BytesScannedLimitError(self.workgroup_cutoff, scanned, f"Athena workgroup {self.workgroup}",
                                          f"Athena query {query_id}")
        if state == "CANCELLED":
            return QueryCancelledError(
                f"Athena query {query_id} was cancelled{': ' + reason if reason else ' (from the console or another client)'}; "
                f"it had scanned {format_bytes(scanned)}", scanned,
            )
        body = re.sub(r"^[A-Z_]+: ", "", reason)
        position = _ATHENA_POSITION.search(body)
        line = int(position.group(1)) if position else None
        column = int(position.group(2)) if position else None
        detail = position.group(3).strip() if position else body
        if "TABLE_NOT_FOUND" in reason or re.search(r"Table '[^']+' does not exist", reason):
            name = re.search(r"Table '([^']+)' does not exist", reason)
            missing = [name.group(1).split(".")[-1]] if name else [detail]
            try:
                lake = list_lake_tables(self.glue_client, self.database)
                known = sorted(set(queryable_names({n: t for n, t in lake.items() if not t.is_view}))
                               | {n for n, t in lake.items() if t.is_view})
            except Exception:  # noqa: BLE001 - the listing is a hint; the error stands without it
                known = []
            return UnknownTableError(missing, known, self.database)
        if "SCHEMA_NOT_FOUND" in reason or "Schema '" in reason:
            return QueryFailedError(f"{detail} (the lake's Glue database is {self.database}: WEWARD_GLUE_DATABASE)", sql, line, column)
        if any(marker in lowered for marker in _SYNTAX_MARKERS) or athena_error.get("ErrorType") == 1004:
            return QuerySyntaxError(detail, sql, line, column)
        return QueryFailedError(detail or f"Athena query {query_id} {state}", sql, line, column)

    def results(self, query_id: str, statement_type: str) -> pa.Table:
        pages = self.athena.get_paginator("get_query_results").paginate(QueryExecutionId=query_id, PaginationConfig={"PageSize": 1000})
        column_info: list[dict] = []
        rows: list[list[str | None]] = []
        first = True
        for page in pages:
            result_set = page["ResultSet"]
            column_info = column_info or result_set.get("ResultSetMetadata", {}).get("ColumnInfo", [])
            page_rows = [[d.get("VarCharValue") for d in r.get("Data", [])] for r in result_set.get("Rows", [])]
            if first and page_rows and statement_type == "DML":
                labels = [c.get("Label") or c.get("Name") for c in column_info]
                if page_rows[0] == labels:
                    page_rows = page_rows[1:]  # a SELECT's first row repeats the column labels
            first = False
            rows.extend(page_rows)
        return athena_rows_to_arrow(column_info, rows)

    def run(self, sql: str) -> QueryResult:
        started = time.monotonic()
        sql = sql.strip().rstrip(";").strip()
        query_id = self.start(sql)
        execution = self.wait(query_id)
        if execution["Status"]["State"] != "SUCCEEDED":
            raise self.failure(execution, sql)
        statement_type = execution.get("StatementType") or "DML"
        table = self.results(query_id, statement_type)
        stats = execution.get("Statistics") or {}
        return QueryResult(
            sql=sql, engine=self.name, table=table, bytes_scanned=int(stats.get("DataScannedInBytes") or 0),
            elapsed_s=time.monotonic() - started, query_id=query_id, workgroup=self.workgroup,
            output_location=(execution.get("ResultConfiguration") or {}).get("OutputLocation"),
            statement_type=statement_type, usd_per_tb=self.usd_per_tb,
        )

    def create_latest_views(self, tables: list[str] | None = None) -> list[QueryResult]:
        """CREATE OR REPLACE VIEW <t>_latest for every snapshot table (or those named)."""
        lake = list_lake_tables(self.glue_client, self.database)
        snapshot = sorted(t.name for t in lake.values() if t.mode == "snapshot" and not t.is_view)
        chosen = snapshot if not tables else [t for t in tables if t in snapshot]
        unknown = sorted(set(tables or []) - set(snapshot))
        if unknown:
            raise QueryError(f"not snapshot tables of {self.database}: {', '.join(unknown)}; snapshot tables: {', '.join(snapshot) or '(none)'}")
        results = []
        for name in chosen:
            view = latest_view_name(name)
            existing = lake.get(view)
            if existing is not None and not existing.is_view:
                raise QueryError(f"cannot create view {view}: a table of that name exists in {self.database}")
            results.append(self.run(latest_view_sql(self.database, name)))
        return results


# --------------------------------------------------------------------------------------------
# Wiring from the environment.
# --------------------------------------------------------------------------------------------


def _boto_session_clients(settings: QuerySettings, *services: str) -> list:
    return aws.clients(settings, *services)


def build_engine(
    settings: QuerySettings,
    engine: str | None = None,
    *,
    max_bytes_scanned: int | None = None,
    timeout_s: float | None = None,
    progress: Callable[[QueryProgress], None] | None = None,
) -> LocalEngine | AthenaEngine:
    kind = settings.resolved_engine(engine)
    limit = max_bytes_scanned if max_bytes_scanned is not None else settings.max_bytes_scanned
    if kind == "local":
        (glue,) = _boto_session_clients(settings, "glue")
        return LocalEngine(glue, aws.s3_filesystem(settings.aws_region, settings.aws_endpoint_url), settings.glue_database,
                           max_bytes_scanned=limit, timeout_s=timeout_s, progress=progress)
    if kind == "athena":
        athena, glue = _boto_session_clients(settings, "athena", "glue")
        return AthenaEngine(athena, glue, settings.glue_database, workgroup=settings.athena_workgroup,
                            output_location=settings.athena_output, max_bytes_scanned=limit,
                            timeout_s=timeout_s, progress=progress)
    raise ConfigError(f"unknown query engine {kind!r}; use one of {', '.join(ENGINES)}")


# --------------------------------------------------------------------------------------------
# Analyst questions: the demo's epilogue and the README's examples (Athena SQL, runs locally).
# --------------------------------------------------------------------------------------------

ANALYST_QUESTIONS: list[tuple[str, str]] = [
    (
        "Steps per day (dt is the local day, Europe/Paris in the sample catalog)",
        """
SELECT dt AS day, count(*) AS syncs, count(DISTINCT user_id) AS walkers, sum(steps) AS steps
FROM step_events
GROUP BY dt
ORDER BY dt
""",
    ),
    (
        "Wards earned per country (ledger joined to the latest users snapshot)",
        """
SELECT u.country, count(DISTINCT w.user_id) AS earners, sum(w.amount) AS wards_earned
FROM ward_transactions w
JOIN users_latest u ON u.id = w.user_id
WHERE w.amount > 0
GROUP BY u.country
ORDER BY wards_earned DESC, u.country
""",
    ),
    (
        "Top 5 rewards bought (not cancelled), with their partner",
        """
SELECT o.partner, o.title, count(*) AS purchases, sum(p.wards_spent) AS wards_spent
FROM reward_purchases p
JOIN reward_offers_latest o ON o.id = p.offer_id
WHERE p.status <> 'cancelled'
GROUP BY o.partner, o.title
ORDER BY purchases DESC, wards_spent DESC, o.title
LIMIT 5
""",
    ),
]
