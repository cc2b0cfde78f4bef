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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from weward_pipeline import pg
from weward_pipeline.config import TableConfig
from weward_pipeline.pacing import Pacer, PacingLimits, probe_for
from weward_pipeline.pg import mask_error
from weward_pipeline.standby import CONFLICTS_SQL, is_recovery_conflict, slice_bounds, wait_until_replayed
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


class RecoveryConflict(SourceError):
    """The standby cancelled a read to replay a cleanup (standby.py); a shorter read may succeed."""


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
    # Reading a hot standby (standby.py): it must have replayed the primary past the day's end plus
    # this margin (transactions commit a little after the timestamps they write) ...
    standby_margin_s: float = 600.0
    # ... and the export waits at most this long for it, then fails as transient (retried later).
    standby_max_wait_s: float = 900.0
    # This run's pacing settings (pacing.PacingLimits fields), over the table's `pacing:` in the catalog.
    pacing: Mapping[str, object] = field(default_factory=dict)

    def session(self) -> pg.SessionLimits:
        """One READ ONLY REPEATABLE READ snapshot, with text forms pinned (fingerprints depend on them)."""
        return pg.SessionLimits(
            statement_timeout_s=self.statement_timeout_s,
            lock_timeout_s=self.lock_timeout_s,
            idle_in_transaction_timeout_s=self.idle_in_transaction_timeout_s,
            connect_timeout_s=self.connect_timeout_s,
            read_only=True,
            isolation="repeatable read",
            settings=pg.PINNED_TEXT_FORMS,
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
        utc = dt.UTC
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


# The pacing's monitoring session: a few tiny statements a second at most, never waiting on a lock.
MONITOR_SESSION = pg.SessionLimits(
    statement_timeout_s=10, lock_timeout_s=1, idle_in_transaction_timeout_s=10, connect_timeout_s=15, read_only=True
)


class AdbcSession:
    """One ADBC connection to PostgreSQL in a transaction (not autocommit), through ADBC's low-level API.

    Not through its DB-API module: that imports polars and pandas when they are installed, to offer
    them as result types, +56 MB in every export process for nothing (bench: dagster run tree).
    """

    def __init__(self, uri: str) -> None:
        import adbc_driver_manager
        import adbc_driver_postgresql

        self._db = adbc_driver_postgresql.connect(uri)
        try:
            self._conn = adbc_driver_manager.AdbcConnection(self._db)
            self._conn.set_autocommit(False)  # BEGIN now, and after every commit/rollback
        except BaseException:
            self._db.close()
            raise

    @contextmanager
    def statement(self) -> Iterator[_Statement]:
        import adbc_driver_manager

        handle = adbc_driver_manager.AdbcStatement(self._conn)
        try:
            yield _Statement(handle)
        finally:
            handle.close()

    def rows(self, query: str) -> list[tuple]:
        """The (small) result of `query` as tuples, like DB-API's fetchall()."""
        with self.statement() as statement:
            table = statement.stream(query).read_all()
        return list(zip(*(column.to_pylist() for column in table.columns)))

    def rollback(self) -> None:
        self._conn.rollback()

    def close(self) -> None:
        try:
            self._conn.close()
        finally:
            self._db.close()


class _Statement:
    def __init__(self, handle) -> None:
        self._handle = handle

    def stream(self, query: str, **options: str) -> pa.RecordBatchReader:
        if options:
            self._handle.set_options(**options)
        self._handle.set_sql_query(query)
        stream, _ = self._handle.execute_query()
        return pa.RecordBatchReader.from_stream(stream)


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
        fresh_after: dt.datetime | None = None,
        slices: int = 1,
        say: Callable[[str], None] | None = None,
        pacing: PacingLimits | None = None,
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
        self.fingerprint = (
            (table.mode == "append" and table.retention_days is not None) if fingerprint is None else fingerprint
        )
        self.fingerprint_settings: dict[str, str] = {}
        label = window.day.isoformat() if window else "snapshot"
        self.label = f"table {table.name} {label}"
        self.application_name = application_name or f"weward-export {table.name} {label}"
        self._conn = None
        self.source: SourceTable | None = None
        self.described_columns: list[ColumnMapping] = []  # all of them, skipped ones included
        self.source_rows: int | None = None
        self.snapshot_at: dt.datetime | None = None
        self.rows_read = 0
        self.batches_read = 0
        # On a standby, the source must reflect the primary at least as of this instant (standby.py).
        self.fresh_after = fresh_after
        # >1: the day is read in this many time slices, each in its own short snapshot (after a
        # recovery conflict on a standby); the row count is then taken per slice.
        self.slices = slices if self.window is not None else 1
        self.say = say or log.info
        self.standby: dict = {"standby": False}
        self._conflicts_before = 0
        # Reading slower when pacing says so: the server's backend then waits on its socket (pacing.py).
        self.pacing = pacing
        self.pacer: Pacer | None = None
        self._monitor = None  # the pacing's own connection: the export's is busy streaming

    # -- connection -----------------------------------------------------------------------
    def __enter__(self) -> Extraction:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _connect(self) -> AdbcSession:
        uri = pg.session_uri(self.pg_url, self.application_name, self.limits.session())
        try:
            return AdbcSession(uri)
        except Exception as exc:  # noqa: BLE001 - ADBC raises its own hierarchy
            raise SourceError(
                f"table {self.table.name}: {pg.connect_error(self.pg_url, exc)}. Check WEWARD_PG_URL, the network "
                "path and that the server is up."
            ) from None

    def open(self) -> None:
        self._conn = self._connect()
        try:
            if self.pacing is not None and self.pacer is None:

                def monitor():
                    return pg.connect(
                        self.pg_url, f"weward-pacing {self.table.name}", MONITOR_SESSION, purpose="the export's pacing"
                    )

                self._monitor = probe_for(monitor(), reconnect=monitor)
                self.pacer = Pacer(self.pacing, self._monitor, say=self.say, what=self.label)
            if self.fresh_after is not None:
                # Before the snapshot: the snapshot taken next is at least as fresh as this check.
                self.standby = wait_until_replayed(
                    self._poll,
                    self.fresh_after,
                    max_wait_s=self.limits.standby_max_wait_s,
                    what=self.label,
                    say=self.say,
                )
                if self.standby["standby"]:
                    self._conflicts_before = self._scalar(CONFLICTS_SQL)
                self._conn.rollback()
            self.snapshot_at = self._scalar("SELECT now()")  # transaction start == snapshot time
            self.source = describe(self._query_rows, self.table)
            self.described_columns = list(self.source.columns)
            self.source.columns = [c for c in self.source.columns if c.name not in self.skip_columns]
            if self.fingerprint:
                names = sql.SQL(", ").join(
                    sql.SQL("current_setting({})").format(sql.Literal(n)) for n in FINGERPRINT_SETTINGS
                )
                values = self._query_rows(sql.SQL("SELECT {}").format(names).as_string(None))[0]
                self.fingerprint_settings = dict(zip(FINGERPRINT_SETTINGS, values))
            if self.slices == 1:
                self.source_rows = self._scalar(self._count_sql())
            else:
                self._conn.rollback()  # each slice counts and reads in a snapshot of its own
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._monitor is not None:
            try:
                self._monitor.connection().close()
            finally:
                self._monitor = None
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
        try:
            return self._conn.rows(query)
        except Exception as exc:  # noqa: BLE001
            raise self._failed("query on", exc) from None

    def _failed(self, doing: str, exc: BaseException) -> SourceError:
        """The driver's error as a SourceError naming the table (a RecoveryConflict on a standby)."""
        self._raise_if_conflict(exc)
        return SourceError(
            f"table {self.table.name}: {doing} {self.table.qualified_source} failed: "
            f"{mask_error(str(exc), self.pg_url).strip()}"
        )

    def _poll(self, query: str) -> list[tuple]:
        """A query in a transaction of its own: a session idle in a transaction on a standby holds
        back its replay (for up to max_standby_streaming_delay), the very thing the caller waits for."""
        try:
            return self._query_rows(query)
        finally:
            self._conn.rollback()

    def row(self, query: sql.Composable) -> tuple:
        """One more query in the export's snapshot (e.g. restate.updated_counts_sql); its first row."""
        return self._query_rows(query.as_string(None))[0]

    def _scalar(self, query: str | sql.Composable):
        text = query if isinstance(query, str) else query.as_string(None)
        return self._query_rows(text)[0][0]

    def _raise_if_conflict(self, exc: BaseException) -> None:
        if is_recovery_conflict(exc) or self._standby_ended_session(exc):
            raise RecoveryConflict(
                f"table {self.table.name}: the standby cancelled the read (recovery conflict): "
                f"{mask_error(str(exc), self.pg_url).strip().splitlines()[0]}"
            ) from None

    def _standby_ended_session(self, exc: BaseException) -> bool:
        """libpq may lose the standby's "terminating connection due to conflict with recovery" and say
        only "server closed the connection": then the standby's conflict counter tells."""
        if not self.standby.get("standby") or "server closed the connection" not in str(exc):
            return False
        try:
            conn = self._connect()
            try:
                return conn.rows(CONFLICTS_SQL)[0][0] > self._conflicts_before
            finally:
                conn.close()
        except Exception:  # noqa: BLE001 - cannot tell: report the original error
            return False

    # -- SQL ------------------------------------------------------------------------------
    def _where(self, bounds: tuple | None = None) -> sql.Composable:
        if self.window is None:
            return sql.SQL("")
        lower, upper = bounds or self.window.bounds_for(self.source.partition_type)
        column = sql.Identifier(self.table.partition_column)
        return sql.SQL(" WHERE {c} >= {lo} AND {c} < {hi}").format(
            c=column, lo=sql.Literal(lower), hi=sql.Literal(upper)
        )

    def _from(self) -> sql.Composable:
        return sql.SQL("{}.{}").format(sql.Identifier(self.table.schema), sql.Identifier(self.table.source))

    def _count_sql(self, bounds: tuple | None = None) -> sql.Composable:
        return sql.SQL("SELECT count(*) FROM {}{}").format(self._from(), self._where(bounds))

    def slice_bounds(self) -> list[tuple | None]:
        if self.slices == 1:
            return [None]
        return slice_bounds(*self.window.bounds_for(self.source.partition_type), self.slices)

    def select_sql(self, bounds: tuple | None = None) -> str:
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
        query = sql.SQL("SELECT {} FROM {}{}").format(sql.SQL(", ").join(items), self._from(), self._where(bounds))
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
        started = time.monotonic()
        for bounds in self.slice_bounds():
            if bounds is not None:  # a slice: its own snapshot, its own count
                self.source_rows = (self.source_rows or 0) + self._scalar(self._count_sql(bounds))
            yield from self._read(self.select_sql(bounds), keys_sink, started)
            if bounds is not None:
                try:
                    self._conn.rollback()
                except Exception:  # noqa: BLE001 - the standby ended the idle session (a recovery conflict)
                    # The slice's rows all arrived, counted in the same snapshot: it is complete.
                    # Only the session is lost; the next slice takes a new one.
                    self.close()
                    self._conn = self._connect()

    def _read(self, query: str, keys_sink, started: float) -> Iterator[pa.RecordBatch]:
        target = self.source.arrow_schema
        with self._conn.statement() as statement:
            try:
                reader = statement.stream(
                    query, **{"adbc.postgresql.batch_size_hint_bytes": str(self.limits.batch_bytes)}
                )
            except Exception as exc:  # noqa: BLE001
                raise self._failed("reading", exc) from None
            batches = iter(reader)
            while True:
                reading = time.monotonic()
                try:
                    batch = next(batches, None)
                except Exception as exc:  # noqa: BLE001 - the stream broke off mid-day
                    self._raise_if_conflict(exc)
                    raise
                if batch is None:
                    break
                converted = convert_batch(batch, target, self.table.name)
                if self.fingerprint and keys_sink is not None:
                    keys_sink(
                        redaction_keys_batch(converted, batch.column(batch.num_columns - 1), self.table.primary_key)
                    )
                read_s = time.monotonic() - reading
                self.rows_read += converted.num_rows
                self.batches_read += 1
                yield converted
                if self.pacer is not None:  # sleeps in proportion to the reading; backs off or stops
                    self.pacer.done(converted.num_rows, read_s)
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
                map_column(
                    name=name,
                    pg_type=pg_type,
                    base_type=base_type,
                    typmod=typmod,
                    is_array=bool(is_array),
                    nullable=bool(nullable),
                    table=table.name,
                )
            )
        except UnsupportedTypeError as exc:
            problems.append(str(exc))
    source = SourceTable(table=table, columns=columns)
    names = {c.name for c in columns}
    known = ", ".join(sorted(names))
    for key in table.primary_key:
        if key not in names:
            problems.append(
                f"table {table.name}: primary_key column {key!r} does not exist in {table.qualified_source} (columns: {known})"
            )
    for key in (table.user_column, *table.pii):
        if key is not None and key not in names:
            problems.append(
                f"table {table.name}: column {key!r} named in the catalog does not exist in {table.qualified_source} (columns: {known})"
            )
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
            problems.append(
                f"table {table.name}: updated_column {table.updated_column!r} does not exist in "
                f"{table.qualified_source} (columns: {known})"
            )
        elif source.column(table.updated_column).base_type not in UPDATED_COLUMN_TYPES:
            problems.append(
                f"table {table.name}: updated_column {table.updated_column!r} is "
                f"{source.column(table.updated_column).pg_type}; it must be one of "
                f"{', '.join(UPDATED_COLUMN_TYPES)} (the time of the row's last change)"
            )
    if problems:
        raise SourceError("\n".join(problems))
    return source


def detached_columns(batch: pa.RecordBatch, names: list[str]) -> pa.RecordBatch:
    """Copies of some columns of a batch, for keeping beyond the batch's life. A column of a batch
    imported from ADBC keeps the whole batch alive (the Arrow C data interface releases a batch as
    one), so keeping selected columns of every batch of a day kept every row of the day in memory
    (2M rows: +390 MB, bench/results.md)."""
    return pa.RecordBatch.from_arrays([pa.concat_arrays([batch.column(n)]) for n in names], names=names)


def redaction_keys_batch(
    converted: pa.RecordBatch, fingerprints: pa.Array, primary_key: tuple[str, ...]
) -> pa.RecordBatch:
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
