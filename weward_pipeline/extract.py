"""Read one day of one PostgreSQL table as a stream of Arrow record batches, gently.

One connection, one READ ONLY REPEATABLE READ transaction: the row count and the rows come from
the same snapshot, so "rows written == rows in the source window" is an exact check. The server
settings are set at connect time (libpq `options`), so they hold for every statement, and
`application_name` says which table and day this is in pg_stat_activity.

Transport is ADBC's PostgreSQL driver: COPY BINARY decoded straight into Arrow, batch by batch,
so memory depends on the batch size, not on the size of the day.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from weward_pipeline import pg
from weward_pipeline.config import TableConfig
from weward_pipeline.pg import mask_error
from weward_pipeline.typemap import (
    PARTITION_COLUMN_TYPES,
    ColumnMapping,
    UnsupportedTypeError,
    arrow_schema,
    map_column,
)

log = logging.getLogger(__name__)

# `updated_column` (restate.py): the time the app last changed the row.
UPDATED_COLUMN_TYPES = ("timestamptz", "timestamp")


class SourceError(RuntimeError):
    """The source table cannot be exported as configured. The message names table, column and fix."""


# Redaction keys (tables with `retention_days`): next to each row, the export selects a fingerprint
# of the row computed by PostgreSQL in the same snapshot, so redaction can later delete a row only
# if it is unchanged since it was exported. The text form of a row depends on these settings; the
# export records their values and redaction recomputes fingerprints under the same ones.
FINGERPRINT_SETTINGS = ("TimeZone", "DateStyle", "IntervalStyle", "extra_float_digits", "bytea_output", "lc_monetary")
FINGERPRINT_COLUMN = "_weward_fingerprint"
FINGERPRINT_FUNCTION = "decode(md5(ROW(<columns>)::text), 'hex')"


def row_fingerprint_sql(columns: list[str], qualifier: str | None = None) -> sql.Composable:
    """16 bytes: md5 of the row's text form over `columns` (in this order)."""
    refs = [sql.Identifier(qualifier, c) if qualifier else sql.Identifier(c) for c in columns]
    return sql.SQL("decode(md5(ROW({})::text), 'hex')").format(sql.SQL(", ").join(refs))


@dataclass(frozen=True)
class ExtractLimits:
    """What the export may cost the production database."""

    statement_timeout_s: int = 1800
    lock_timeout_s: int = 5
    idle_in_transaction_timeout_s: int = 300
    connect_timeout_s: int = 15
    # ADBC's hint for the size of each Arrow batch; one batch is also one Parquet row group.
    # 16 MB: ~100k step_events rows a row group (DuckDB writes 122,880) and a peak RSS of ~215 MB
    # whatever the day's size; 32 MB: ~260 MB, and the same file size (bench/).
    batch_bytes: int = 16 * 1024 * 1024
    # Optional throttle: stop reading (the server then waits on its socket) above this rate.
    max_rows_per_second: float | None = None

    def session(self) -> pg.SessionLimits:
        """One READ ONLY REPEATABLE READ snapshot, with text forms pinned (fingerprints depend on them)."""
        return pg.SessionLimits(
            statement_timeout_s=self.statement_timeout_s, lock_timeout_s=self.lock_timeout_s,
            idle_in_transaction_timeout_s=self.idle_in_transaction_timeout_s, connect_timeout_s=self.connect_timeout_s,
            read_only=True, isolation="repeatable read", settings=pg.PINNED_TEXT_FORMS,
        )


@dataclass(frozen=True)
class DayWindow:
    """Day D of the catalog's time zone: [start, end) as local midnights (23 or 25 h on DST days)."""

    day: dt.date
    timezone: str

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.day, dt.time(), tzinfo=ZoneInfo(self.timezone))

    @property
    def end(self) -> dt.datetime:
        return dt.datetime.combine(self.day + dt.timedelta(days=1), dt.time(), tzinfo=ZoneInfo(self.timezone))

    @property
    def hours(self) -> float:
        # Same-tzinfo subtraction is wall-clock in Python; compare instants in UTC instead.
        utc = dt.timezone.utc
        return (self.end.astimezone(utc) - self.start.astimezone(utc)).total_seconds() / 3600

    def bounds_for(self, base_type: str) -> tuple[object, object]:
        """Literal bounds matching the partition column's type, so the index on it is usable."""
        if base_type == "timestamptz":
            return self.start, self.end
        if base_type == "timestamp":  # local wall-clock time, as the app stores it
            return self.start.replace(tzinfo=None), self.end.replace(tzinfo=None)
        return self.day, self.day + dt.timedelta(days=1)

    def as_metadata(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "timezone": self.timezone}


@dataclass
class SourceTable:
    table: TableConfig
    columns: list[ColumnMapping]
    partition_type: str | None = None
    estimated_rows: int | None = None

    @property
    def arrow_schema(self) -> pa.Schema:
        return arrow_schema(self.columns)

    def column(self, name: str) -> ColumnMapping:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)


DESCRIBE_SQL = """
SELECT a.attname,
       format_type(a.atttypid, a.atttypmod),
       coalesce(elem_base.typname, base.typname),
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
       base.typcategory = 'A' OR t.typcategory = 'A',
       NOT a.attnotnull,
       base.typtype,
       elem_base.typtype
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type base ON base.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_type elem ON elem.oid = base.typelem AND base.typcategory = 'A'
LEFT JOIN pg_type elem_base ON elem_base.oid = CASE WHEN elem.typtype = 'd' THEN elem.typbasetype ELSE elem.oid END
WHERE n.nspname = {schema} AND c.relname = {table} AND a.attnum > 0 AND NOT a.attisdropped
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
ORDER BY a.attnum
"""


class Extraction:
    """One day of one table: `with Extraction(...) as ex: ex.source_rows; for b in ex.batches(): ...`."""

    def __init__(
        self,
        pg_url: str,
        table: TableConfig,
        window: DayWindow | None,
        limits: ExtractLimits = ExtractLimits(),
        application_name: str | None = None,
        skip_columns: frozenset[str] = frozenset(),
        fingerprint: bool | None = None,
    ) -> None:
        if table.mode == "append" and window is None:
            raise ValueError("append tables are read one day window at a time")
        self.pg_url = pg_url
        self.table = table
        self.window = window if table.mode == "append" else None
        self.limits = limits
        # Never selected (personal data the catalog drops): the values never leave PostgreSQL.
        self.skip_columns = frozenset(skip_columns)
        # Primary key + row fingerprint for redaction; by default for tables that have a retention.
        self.fingerprint = (table.mode == "append" and table.retention_days is not None) if fingerprint is None else fingerprint
        self.fingerprint_settings: dict[str, str] = {}
        label = window.day.isoformat() if window else "snapshot"
        self.application_name = application_name or f"weward-export {table.name} {label}"
        self._conn = None
        self.source: SourceTable | None = None
        self.described_columns: list[ColumnMapping] = []  # all of them, skipped ones included
        self.source_rows: int | None = None
        self.snapshot_at: dt.datetime | None = None
        self.rows_read = 0
        self.batches_read = 0

    # -- connection -----------------------------------------------------------------------
    def __enter__(self) -> Extraction:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        import adbc_driver_postgresql.dbapi as adbc

        uri = pg.session_uri(self.pg_url, self.application_name, self.limits.session())
        try:
            self._conn = adbc.connect(uri)
        except Exception as exc:  # noqa: BLE001 - ADBC raises its own hierarchy
            raise SourceError(
                f"table {self.table.name}: {pg.connect_error(self.pg_url, exc)}. Check WEWARD_PG_URL, the network "
                "path and that the server is up."
            ) from None
        try:
            self.snapshot_at = self._scalar("SELECT now()")  # transaction start == snapshot time
            self.source = describe(self._query_rows, self.table)
            self.described_columns = list(self.source.columns)
            self.source.columns = [c for c in self.source.columns if c.name not in self.skip_columns]
            if self.fingerprint:
                names = sql.SQL(", ").join(sql.SQL("current_setting({})").format(sql.Literal(n)) for n in FINGERPRINT_SETTINGS)
                values = self._query_rows(sql.SQL("SELECT {}").format(names).as_string(None))[0]
                self.fingerprint_settings = dict(zip(FINGERPRINT_SETTINGS, values))
            self.source_rows = self._scalar(self._count_sql())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.rollback()  # read-only: nothing to commit; ends the snapshot now
            except Exception:  # noqa: BLE001
                pass
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _query_rows(self, query: str) -> list[tuple]:
        with self._conn.cursor() as cur:
            try:
                cur.execute(query)
                return cur.fetchall()
            except Exception as exc:  # noqa: BLE001
                raise SourceError(
                    f"table {self.table.name}: query on {self.table.qualified_source} failed: "
                    f"{mask_error(str(exc), self.pg_url).strip()}"
                ) from None

    def row(self, query: sql.Composable) -> tuple:
        """One more query in the export's snapshot (e.g. restate.updated_counts_sql); its first row."""
        return self._query_rows(query.as_string(None))[0]

    def _scalar(self, query: str | sql.Composable):
        text = query if isinstance(query, str) else query.as_string(None)
        return self._query_rows(text)[0][0]

    # -- SQL ------------------------------------------------------------------------------
    def _where(self) -> sql.Composable:
        if self.window is None:
            return sql.SQL("")
        lower, upper = self.window.bounds_for(self.source.partition_type)
        column = sql.Identifier(self.table.partition_column)
        return sql.SQL(" WHERE {c} >= {lo} AND {c} < {hi}").format(c=column, lo=sql.Literal(lower), hi=sql.Literal(upper))

    def _from(self) -> sql.Composable:
        return sql.SQL("{}.{}").format(sql.Identifier(self.table.schema), sql.Identifier(self.table.source))

    def _count_sql(self) -> sql.Composable:
        return sql.SQL("SELECT count(*) FROM {}{}").format(self._from(), self._where())

    def select_sql(self) -> str:
        items = []
        for column in self.source.columns:
            ident = sql.Identifier(column.name)
            if column.as_text:
                cast = sql.SQL("::text[]") if column.is_array else sql.SQL("::text")
                items.append(sql.SQL("{}{} AS {}").format(ident, cast, ident))
            else:
                items.append(ident)
        if self.fingerprint:  # last column, taken off before the batch reaches the lake schema
            fingerprint = row_fingerprint_sql(self.fingerprint_columns)
            items.append(sql.SQL("{} AS {}").format(fingerprint, sql.Identifier(FINGERPRINT_COLUMN)))
        query = sql.SQL("SELECT {} FROM {}{}").format(sql.SQL(", ").join(items), self._from(), self._where())
        return query.as_string(None)

    @property
    def fingerprint_columns(self) -> list[str]:
        """The columns the fingerprint covers: every column the export reads (dropped PII is not read)."""
        return [c.name for c in self.source.columns]

    # -- rows -----------------------------------------------------------------------------
    def batches(self, keys_sink: Callable[[pa.RecordBatch], None] | None = None) -> Iterator[pa.RecordBatch]:
        """Record batches in the lake's Arrow schema; raises SourceError on a value that does not fit.

        With `fingerprint`, `keys_sink` receives, before each batch is yielded, the batch's redaction
        keys: the primary key columns (lake types) and the row fingerprint, row for row.
        """
        target = self.source.arrow_schema
        started = time.monotonic()
        with self._conn.cursor() as cur:
            cur.adbc_statement.set_options(
                **{"adbc.postgresql.batch_size_hint_bytes": str(self.limits.batch_bytes)}
            )
            try:
                cur.execute(self.select_sql())
                reader = cur.fetch_record_batch()
            except Exception as exc:  # noqa: BLE001
                raise SourceError(
                    f"table {self.table.name}: reading {self.table.qualified_source} failed: "
                    f"{mask_error(str(exc), self.pg_url).strip()}"
                ) from None
            for batch in reader:
                converted = convert_batch(batch, target, self.table.name)
                if self.fingerprint and keys_sink is not None:
                    keys_sink(redaction_keys_batch(converted, batch.column(batch.num_columns - 1), self.table.primary_key))
                self.rows_read += converted.num_rows
                self.batches_read += 1
                yield converted
                self._throttle(started)

    def _throttle(self, started: float) -> None:
        rate = self.limits.max_rows_per_second
        if rate:
            ahead = self.rows_read / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)


def describe(query_rows, table: TableConfig) -> SourceTable:
    """Columns of the source table, mapped; validates the catalog's column names against it."""
    query = sql.SQL(DESCRIBE_SQL).format(schema=sql.Literal(table.schema), table=sql.Literal(table.source))
    rows = query_rows(query.as_string(None))
    if not rows:
        raise SourceError(
            f"table {table.name}: PostgreSQL has no table {table.qualified_source} (or the export role "
            "cannot see it); fix `schema`/`source_table` in the catalog or grant SELECT on it"
        )
    columns: list[ColumnMapping] = []
    problems: list[str] = []
    for name, pg_type, base_type, typmod, is_array, nullable, base_typtype, elem_typtype in rows:
        if (elem_typtype or base_typtype) == "e":
            base_type = "enum"
        try:
            columns.append(
                map_column(name=name, pg_type=pg_type, base_type=base_type, typmod=typmod,
                           is_array=bool(is_array), nullable=bool(nullable), table=table.name)
            )
        except UnsupportedTypeError as exc:
            problems.append(str(exc))
    source = SourceTable(table=table, columns=columns)
    names = {c.name for c in columns}
    known = ", ".join(sorted(names))
    for key in table.primary_key:
        if key not in names:
            problems.append(f"table {table.name}: primary_key column {key!r} does not exist in {table.qualified_source} (columns: {known})")
    for key in (table.user_column, *table.pii):
        if key is not None and key not in names:
            problems.append(f"table {table.name}: column {key!r} named in the catalog does not exist in {table.qualified_source} (columns: {known})")
    if table.partition_column is not None:
        if table.partition_column not in names:
            problems.append(
                f"table {table.name}: partition_column {table.partition_column!r} does not exist in "
                f"{table.qualified_source} (columns: {known})"
            )
        else:
            column = source.column(table.partition_column)
            if column.base_type not in PARTITION_COLUMN_TYPES or column.is_array:
                problems.append(
                    f"table {table.name}: partition_column {table.partition_column!r} is {column.pg_type}; "
                    f"it must be one of {', '.join(PARTITION_COLUMN_TYPES)}"
                )
            source.partition_type = column.base_type
    if table.updated_column is not None:
        if table.updated_column not in names:
            problems.append(f"table {table.name}: updated_column {table.updated_column!r} does not exist in "
                            f"{table.qualified_source} (columns: {known})")
        elif source.column(table.updated_column).base_type not in UPDATED_COLUMN_TYPES:
            problems.append(f"table {table.name}: updated_column {table.updated_column!r} is "
                            f"{source.column(table.updated_column).pg_type}; it must be one of "
                            f"{', '.join(UPDATED_COLUMN_TYPES)} (the time of the row's last change)")
    if problems:
        raise SourceError("\n".join(problems))
    return source


def redaction_keys_batch(converted: pa.RecordBatch, fingerprints: pa.Array, primary_key: tuple[str, ...]) -> pa.RecordBatch:
    if isinstance(fingerprints.type, pa.BaseExtensionType):
        fingerprints = fingerprints.storage
    arrays = [converted.column(name) for name in primary_key] + [fingerprints.cast(pa.binary())]
    return pa.RecordBatch.from_arrays(arrays, names=[*primary_key, FINGERPRINT_COLUMN])


def convert_batch(batch: pa.RecordBatch, target: pa.Schema, table_name: str = "?") -> pa.RecordBatch:
    """ADBC's batch -> the lake schema: unwrap extension types, cast numeric text to decimal (checked)."""
    arrays = []
    for index, field_ in enumerate(target):
        array = batch.column(index)
        if isinstance(array.type, pa.BaseExtensionType):
            array = array.storage
        elif pa.types.is_list(array.type) and isinstance(array.type.value_type, pa.BaseExtensionType):
            array = pa.ListArray.from_arrays(array.offsets, array.values.storage, mask=array.is_null())
        if not array.type.equals(field_.type):
            try:
                array = pc.cast(array, field_.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SourceError(
                    f"table {table_name}: column {field_.name!r} ({field_.metadata.get(b'pg_type', b'?').decode()}) "
                    f"has a value that does not fit {field_.type}: {_first_bad_value(array, field_.type)} "
                    f"({exc}). Nothing was published; declare the column with an explicit numeric(p,s) "
                    "that fits, or fix the value."
                ) from None
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=target)


def _first_bad_value(array: pa.Array, target: pa.DataType) -> str:
    for value in array:
        try:
            pc.cast(pa.array([value.as_py()], type=array.type), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return repr(value.as_py())
    return "?"
