"""Restatement: find the exported days that no longer match PostgreSQL, cheaply, so they are re-exported.

An append table's day D is exported once, just after it ended; the app goes on changing it (late
rows, status updates, deletes). Every day, the days D-1 .. D-restate_days of each table are compared
with what their published export recorded in its manifest, and a day that differs is re-exported
through the same atomic switch as any export (export.py).

What the comparison costs production, and why it is safe:
  1. Counts only, never rows: per day `count(*)` over the day window with the export's own bounds
     (DayWindow.bounds_for), an index range on the partition column (an index-only scan when the
     visibility map allows). With `updated_column`, the day's rows changed since the export's
     snapshot: a second range, on the updated column's index or the partition column's.
     `detection_sql` builds both; the tests EXPLAIN them (an index, never a sequential scan).
  2. One connection, one READ ONLY REPEATABLE READ transaction, the export's timeouts and session
     settings (ExtractLimits.session, pg.py), `application_name = weward-restate <table>`: the counts of
     all the days come from one snapshot, and SELECTs take only ACCESS SHARE locks (tested).
  3. Nothing is written anywhere: the outcome is a list of DayStatus; the Dagster schedule turns the
     changed days into one export run per day (defs/schedules.py).

What it sees (docs/restatement.md):
  - without `updated_column`: rows added to or deleted from the day (the count moved). An insert
    and a delete in the same day cancel out; an update is invisible;
  - with `updated_column`: also every row updated since the export, inserts included, as long as the
    app bumps the column with the database's clock (or one not ahead of it). A row stamped before the
    snapshot by a transaction that committed after it (in flight at export time) is caught too: the
    export records how many rows of the day were stamped in the UPDATE_MARGIN before its snapshot
    (`updated_counts_sql`), and a different number later means such commits (or deletes). A row
    whose partition column moved to another day counts as deleted from one and added to the other;
  - never: a change that leaves the count as it was and the updated column untouched (a direct SQL
    fix, a trigger-less bulk update). `weward-pipeline verify` compares a day row by row.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from psycopg import sql

from weward_pipeline import pg
from weward_pipeline.config import Catalog, Settings, TableConfig
from weward_pipeline.extract import DayWindow, ExtractLimits, SourceError, describe, detached_columns
from weward_pipeline.glue import GlueCatalog
from weward_pipeline.lake import Manifest
from weward_pipeline.pg import mask_error
from weward_pipeline.verify import published_manifest

log = logging.getLogger(__name__)

# An app transaction that started before the export's snapshot and committed after it stamped its
# rows before the snapshot time, yet the export did not see them. The rows stamped this long before
# the snapshot are counted at export time and again later; a longer app transaction is only caught
# by the count of the day's rows.
UPDATE_MARGIN = dt.timedelta(minutes=10)
MANIFEST_ENTRY = "restate"


@dataclass
class DayStatus:
    """One published day compared with the source now."""

    table: str
    day: dt.date
    export_id: str
    exported_rows: int  # PostgreSQL rows of the window in the export's snapshot (manifest.source_rows)
    source_rows: int  # rows of the window now
    updated_rows: int | None = None  # rows of the window stamped since the export (None: no updated_column)
    deleted_by_pipeline: int = 0  # rows the pipeline itself deleted since (redaction audit), expected gone

    @property
    def expected_rows(self) -> int:
        return self.exported_rows - self.deleted_by_pipeline

    @property
    def changed(self) -> bool:
        return self.source_rows != self.expected_rows or bool(self.updated_rows)

    def why(self) -> str:
        """Why the day is (or is not) re-exported, in words, for run tags and metadata."""
        parts = []
        delta = self.source_rows - self.expected_rows
        if delta:
            parts.append(
                f"{abs(delta)} row(s) {'added' if delta > 0 else 'deleted'} (net): the source holds "
                f"{self.source_rows}, the export {self.expected_rows}"
            )
        if self.updated_rows:
            parts.append(f"{self.updated_rows} row(s) added or updated since the export (updated column)")
        return "; ".join(parts) or "unchanged"

    def as_metadata(self) -> dict:
        return {
            "day": self.day.isoformat(),
            "export_id": self.export_id,
            "exported_rows": self.exported_rows,
            "source_rows": self.source_rows,
            "updated_rows": self.updated_rows,
            "deleted_by_pipeline": self.deleted_by_pipeline,
            "why": self.why(),
        }


def restatement_days(catalog: Catalog, table: TableConfig, exported_day: dt.date) -> list[dt.date]:
    """D-1 .. D-restate_days for the day D the daily run exports, newest first, from start_date on."""
    days = [exported_day - dt.timedelta(days=n) for n in range(1, table.restate_days + 1)]
    return [d for d in days if d >= catalog.start_date]


def first_day_beyond(table: TableConfig, exported_day: dt.date) -> dt.date:
    """The day that leaves the restatement window when D is exported: checked once more, then left."""
    return exported_day - dt.timedelta(days=table.restate_days + 1)


def _window(table: TableConfig, window: DayWindow, partition_type: str) -> tuple[sql.Composable, sql.Composable]:
    source = sql.SQL("{}.{}").format(sql.Identifier(table.schema), sql.Identifier(table.source))
    lower, upper = window.bounds_for(partition_type)
    where = sql.SQL("{c} >= {lo} AND {c} < {hi}").format(
        c=sql.Identifier(table.partition_column), lo=sql.Literal(lower), hi=sql.Literal(upper)
    )
    return source, where


def updated_counts_sql(
    table: TableConfig, window: DayWindow, partition_type: str, updated_type: str, at: sql.Composable
) -> sql.Composed:
    """(rows stamped after `at`, rows stamped after `at` - UPDATE_MARGIN) in the day window.

    `at` is the export's snapshot: `now()` inside the export's transaction, its recorded value later.
    One range on the updated column's index (or the partition column's), whichever the planner picks.
    """
    source, where = _window(table, window, partition_type)
    at = sql.SQL("{}::timestamptz").format(at)
    if updated_type == "timestamp":  # wall-clock time of the catalog's zone, as the app stores it
        at = sql.SQL("({} AT TIME ZONE {})").format(at, sql.Literal(window.timezone))
    column = sql.Identifier(table.updated_column)
    return sql.SQL(
        "SELECT count(*) FILTER (WHERE {u} > {at}), count(*) FROM {t} WHERE {w} AND {u} > {at} - {m}"
    ).format(u=column, at=at, t=source, w=where, m=sql.Literal(UPDATE_MARGIN))


def detection_sql(
    table: TableConfig,
    window: DayWindow,
    partition_type: str,
    updated_type: str | None = None,
    snapshot_at: str | None = None,
) -> dict[str, sql.Composed]:
    """The statements detection runs for one day: `count` and, with updated_column, `updated`."""
    source, where = _window(table, window, partition_type)
    statements = {"count": sql.SQL("SELECT count(*) FROM {} WHERE {}").format(source, where)}
    if table.updated_column is not None and snapshot_at is not None:
        statements["updated"] = updated_counts_sql(
            table, window, partition_type, updated_type, sql.Literal(dt.datetime.fromisoformat(snapshot_at))
        )
    return statements


def export_record(after: int, recent: int) -> dict:
    """What the export records in its manifest (extra["restate"]) from updated_counts_sql at `now()`."""
    return {
        "updated_after_snapshot": after,
        "updated_in_margin": recent - after,
        "margin_s": int(UPDATE_MARGIN.total_seconds()),
    }


def updated_since(manifest: Manifest, after: int, recent: int) -> int:
    """Rows stamped after the export's snapshot, or committed late within the margin before it."""
    record = (manifest.extra or {}).get(MANIFEST_ENTRY)
    if record is None or record.get("margin_s") != int(UPDATE_MARGIN.total_seconds()):
        return recent  # no record (an older export): everything in the margin counts, once
    in_margin = recent - after
    return max(0, after - record["updated_after_snapshot"]) + abs(in_margin - record["updated_in_margin"])


class SourceCounts:
    """The detection session: one read-only snapshot of PostgreSQL under the export's limits."""

    def __init__(self, settings: Settings, table: TableConfig, limits: ExtractLimits = ExtractLimits()) -> None:
        self.settings = settings
        self.table = table
        self.limits = limits
        self.conn: psycopg.Connection | None = None
        self.partition_type = ""
        self.updated_type: str | None = None

    def __enter__(self) -> SourceCounts:
        url = self.settings.pg_url
        try:
            # The export's session: read only, one REPEATABLE READ snapshot (not autocommit), its timeouts.
            self.conn = pg.connect(
                url,
                f"weward-restate {self.table.name}",
                self.limits.session(),
                purpose="comparing exported days",
                autocommit=False,
            )
        except pg.ConnectError as exc:
            raise SourceError(f"table {self.table.name}: {exc}. Check WEWARD_PG_URL.") from None
        try:
            source = describe(self._rows, self.table)
            self.partition_type = source.partition_type
            if self.table.updated_column is not None:
                self.updated_type = source.column(self.table.updated_column).base_type
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.conn is not None:
            try:
                self.conn.rollback()  # read only: ends the snapshot
            finally:
                self.conn.close()
                self.conn = None

    def _rows(self, query) -> list[tuple]:
        try:
            return self.conn.execute(query).fetchall()
        except psycopg.Error as exc:
            raise SourceError(
                f"table {self.table.name}: comparing exported days with "
                f"{self.table.qualified_source} failed: "
                f"{mask_error(str(exc), self.settings.pg_url).strip()}"
            ) from None

    def compare(self, manifest: Manifest, timezone: str) -> DayStatus:
        day = dt.date.fromisoformat(manifest.day)
        statements = detection_sql(
            self.table, DayWindow(day, timezone), self.partition_type, self.updated_type, manifest.snapshot_at
        )
        rows = self._rows(statements["count"])[0][0]
        updated = None
        if "updated" in statements:
            after, recent = self._rows(statements["updated"])[0]
            updated = updated_since(manifest, after, recent)
        return DayStatus(
            table=self.table.name,
            day=day,
            export_id=manifest.export_id,
            exported_rows=manifest.source_rows,
            source_rows=rows,
            updated_rows=updated,
        )


def compare_days(
    settings: Settings,
    catalog: Catalog,
    table: TableConfig,
    days: list[dt.date],
    *,
    clients,
    limits: ExtractLimits = ExtractLimits(),
    deleted_by_pipeline=None,
) -> tuple[list[DayStatus], list[dt.date]]:
    """Each published day of `days` compared with PostgreSQL; also the days that have no readable export.

    `deleted_by_pipeline(manifest) -> int`: rows the pipeline deleted since that export (redaction's
    audit), which are expected to be gone from PostgreSQL.
    """
    if table.mode != "append":
        raise ValueError(f"table {table.name} is a snapshot table: it is exported whole every day")
    glue = GlueCatalog(clients.glue, settings.glue_database)
    statuses: list[DayStatus] = []
    unpublished: list[dt.date] = []
    if not days:
        return statuses, unpublished
    with SourceCounts(settings, table, limits) as counts:
        for day in days:
            _, manifest = published_manifest(glue, clients.s3, table.name, day.isoformat())
            if manifest is None:
                unpublished.append(day)
                continue
            status = counts.compare(manifest, catalog.timezone)
            if deleted_by_pipeline is not None:
                status.deleted_by_pipeline = deleted_by_pipeline(manifest)
            statuses.append(status)
    return statuses, unpublished


# -- what a re-export changed -------------------------------------------------------------------------


class ExportDiff:
    """Rows added, changed and deleted by a re-export, relative to the day's published export.

    Keys of the new snapshot are collected as the batches stream by (primary key, plus the updated
    column when the table has one); the previous export's are read from its Parquet objects (those
    columns only). Added and deleted are exact, by primary key; changed is exact with an updated
    column (same key, another timestamp) and not measured without one. Rows carried over from the
    previous export (redacted from PostgreSQL) are neither.
    """

    def __init__(self, table: TableConfig, previous: Manifest, filesystem, bucket: str) -> None:
        self.table = table
        self.previous = previous
        self.filesystem = filesystem
        self.bucket = bucket
        self.columns = list(table.primary_key)
        previous_names = {c["name"] for c in previous.columns}
        self.with_updated = table.updated_column is not None and table.updated_column in previous_names
        if self.with_updated:
            self.columns.append(table.updated_column)
        self._batches: list = []

    def add(self, batch) -> None:
        if self.with_updated and self.table.updated_column not in batch.schema.names:
            self.with_updated = False
            self.columns = list(self.table.primary_key)
            self._batches = [b.select(self.columns) for b in self._batches]
        self._batches.append(detached_columns(batch, self.columns))

    def _match(self, new: pa.Table, old: pa.Table, keys: list[str]):
        """How many rows of `new` are in `old` by primary key (unique on both sides: a snapshot, the
        previous export) and, with an updated column, its values in both for those rows, row for row."""
        updated = self.table.updated_column if self.with_updated else None
        if len(keys) == 1:
            # One key column: a hash set of the previous keys (index_in) takes half the memory of a
            # join (2M rows: 129 vs 257 MB).
            at = pc.index_in(new.column(keys[0]), value_set=old.column(keys[0]).combine_chunks())
            matched = len(at) - at.null_count
            if updated is None:
                return matched, None, None
            found = pc.is_valid(at)
            return matched, pc.filter(new.column(updated), found), old.column(updated).take(pc.filter(at, found))
        both = new.join(old.rename_columns([*keys, "_previous"] if updated else keys), keys=keys, join_type="inner")
        return (
            both.num_rows,
            (both.column(updated) if updated else None),
            (both.column("_previous") if updated else None),
        )

    def finish(self, carried_rows: int) -> dict:
        old = (
            pa.concat_tables(
                [
                    pq.read_table(f"{self.bucket}/{o.key}", filesystem=self.filesystem, columns=self.columns)
                    for o in self.previous.objects
                ]
            )
            if self.previous.objects
            else None
        )
        new = pa.Table.from_batches(self._batches) if self._batches else None
        keys = list(self.table.primary_key)
        if new is None or new.num_rows == 0:
            old_rows = 0 if old is None else old.num_rows
            return {
                "previous_export_id": self.previous.export_id,
                "rows_added": 0,
                "rows_deleted": old_rows - carried_rows,
                "rows_changed": 0 if self.with_updated else None,
            }
        if old is None or old.num_rows == 0:
            return {
                "previous_export_id": self.previous.export_id,
                "rows_added": new.num_rows,
                "rows_deleted": 0,
                "rows_changed": 0 if self.with_updated else None,
            }
        old = pa.table({c: old.column(c).cast(new.column(c).type) for c in self.columns})
        matched, now, before = self._match(new, old, keys)
        added = new.num_rows - matched
        absent = old.num_rows - matched
        changed = None
        if self.with_updated:
            differs = pc.fill_null(pc.not_equal(now, before), True)
            same_null = pc.and_(pc.is_null(now), pc.is_null(before))
            changed = pc.sum(pc.cast(pc.and_(differs, pc.invert(same_null)), pa.int64())).as_py() or 0
        return {
            "previous_export_id": self.previous.export_id,
            "rows_added": added,
            "rows_deleted": absent - carried_rows,
            "rows_changed": changed,
        }


# -- a published day vs PostgreSQL, row by row (`weward-pipeline verify`) ----------------------------------


@dataclass
class RowComparison:
    """A published day compared with PostgreSQL's rows of the day, by primary key and row hash."""

    table: str
    day: dt.date
    export_id: str
    lake_rows: int
    source_rows: int
    missing: int  # in PostgreSQL, not in the lake
    extra: int  # in the lake, not in PostgreSQL (and not deleted by redaction)
    changed: int  # same key, other values
    redacted: int  # in the lake only, deleted from PostgreSQL by redaction (expected)
    samples: dict[str, list] = None
    columns: list[str] = None

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.changed)


def _keyed_hashes(table: pa.Table, keys: list[str], columns: list[str]):
    import polars as pl

    values = [c for c in columns if c not in keys]
    frame = pl.from_arrow(table.select([*keys, *values]))
    hashed = pl.struct(values).hash(seed=7) if values else pl.lit(0, pl.UInt64)
    return frame.select([*keys, hashed.alias("_hash")])


def compare_rows(
    settings: Settings,
    catalog: Catalog,
    table: TableConfig,
    day: dt.date,
    *,
    clients,
    limits: ExtractLimits = ExtractLimits(),
    pii_key=None,
    sample: int = 10,
) -> RowComparison:
    """Reads the published day and PostgreSQL's rows of the day (the export's read: one read-only snapshot,
    the same type conversions and personal-data policies), and compares them by primary key and a hash of
    every other column the lake holds. Costs PostgreSQL what an export of the day costs."""
    import polars as pl

    from weward_pipeline import pii, redaction_audit
    from weward_pipeline.extract import Extraction
    from weward_pipeline.secret_store import load_pii_key

    glue = GlueCatalog(clients.glue, settings.glue_database)
    _, manifest = published_manifest(glue, clients.s3, table.name, day.isoformat())
    if manifest is None:
        raise SourceError(f"table {table.name}: {day} has no published export to compare; export it first")
    bucket = manifest.location.removeprefix("s3://").split("/", 1)[0]
    keys = list(table.primary_key)
    lake_parts = [pq.read_table(f"{bucket}/{o.key}", filesystem=clients.filesystem) for o in manifest.objects]
    lake_table = pa.concat_tables(lake_parts, promote_options="permissive")
    if pii.needs_key(table) and pii_key is None:
        pii_key = load_pii_key(needed_by=f"comparing {table.name}, whose pseudonymized columns must match")
    window = DayWindow(day, catalog.timezone) if table.mode == "append" else None
    pg_parts = []
    with Extraction(
        settings.pg_url,
        table,
        window,
        limits,
        application_name=f"weward-verify {table.name} {day}",
        skip_columns=frozenset(pii.columns_with(table, "drop")),
        fingerprint=False,
    ) as extraction:
        plan = pii.plan(table, extraction.described_columns, pii_key)
        columns = [name for name in lake_table.schema.names if name in plan.arrow_schema.names]
        for batch in extraction.batches():
            lake_batch = plan.apply(batch)
            pg_parts.append(pa.table({c: lake_batch.column(c).cast(lake_table.schema.field(c).type) for c in columns}))
    source = (
        pa.concat_tables(pg_parts)
        if pg_parts
        else pa.table({c: pa.array([], lake_table.schema.field(c).type) for c in columns})
    )
    lake_hashes = _keyed_hashes(lake_table, keys, columns)
    pg_hashes = _keyed_hashes(source, keys, columns)
    joined = lake_hashes.join(pg_hashes, on=keys, how="full", suffix="_pg", coalesce=True)
    missing = joined.filter(pl.col("_hash").is_null())
    extra = joined.filter(pl.col("_hash_pg").is_null())
    changed = joined.filter(
        pl.col("_hash").is_not_null() & pl.col("_hash_pg").is_not_null() & (pl.col("_hash") != pl.col("_hash_pg"))
    )
    audited = redaction_audit.read_deleted_keys(clients.s3, clients.filesystem, settings.lake, table.name, day, keys)
    redacted = 0
    if audited is not None and extra.height:
        listed = pl.from_arrow(
            pa.table({c: audited.column(c).cast(lake_table.schema.field(c).type) for c in keys})
        ).unique()
        redacted_rows = extra.join(listed, on=keys, how="semi")
        redacted = redacted_rows.height
        extra = extra.join(listed, on=keys, how="anti")

    def keys_of(frame) -> list:
        rows = frame.select(keys).head(sample).rows()
        return [r[0] if len(keys) == 1 else list(r) for r in rows]

    return RowComparison(
        table=table.name,
        day=day,
        export_id=manifest.export_id,
        lake_rows=lake_table.num_rows,
        source_rows=source.num_rows,
        missing=missing.height,
        extra=extra.height,
        changed=changed.height,
        redacted=redacted,
        samples={"missing": keys_of(missing), "extra": keys_of(extra), "changed": keys_of(changed)},
        columns=columns,
    )
