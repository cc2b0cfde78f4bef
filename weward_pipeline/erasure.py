"""Right to erasure: remove given users' rows from every exported day of the lake (and, when
asked, from PostgreSQL), then prove it and leave an audit record without a raw identifier.

For each catalog table with a `user_column`:
  1. (--postgres) delete the users' rows from PostgreSQL first, in short key-bounded batches with
     the erasure DSN (WEWARD_PG_ERASE_URL, else WEWARD_PG_REDACT_URL; never the SELECT-only export
     DSN), so no later export or backfill can bring them back;
  2. for each published day (Glue partition): verify the day against its manifest, read only the
     user column of each object, and find the users' rows;
  3. rewrite the affected Parquet objects into a new version prefix (unaffected objects are copied
     server side, byte for byte), and the redaction keys objects (keys.py) without the same rows,
     so keys and data stay row-aligned;
  4. verify before publishing: rows after = rows before - rows erased, no row of the users left,
     every other row identical and in the same order (streamed comparison), keys aligned;
  5. publish: one Glue call points the day at the new prefix (readers switch atomically); verify
     the published day again, and put the old prefix back if that fails;
  6. delete every version of the superseded objects (data, keys, manifest), then sweep the
     table's other object versions (older exports, noncurrent versions kept by bucket versioning)
     and delete each one that still holds any of the users' rows;
  7. write the audit record `_audit/erasure/<erasure_id>.json`: tables, days, row counts, times,
     and a keyed digest of the request (HMAC of the sorted ids), never an identifier.

Idempotent and resumable: the lake itself is the progress record. A re-run finds no rows in the
days already done and finishes the rest; a run killed at any step leaves every day published and
readable (the switch is one Glue call), and its sweep removes what a killed run left behind.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from psycopg import sql

from weward_pipeline import lake, pg, pii
from weward_pipeline.aws import AwsClients
from weward_pipeline.config import Catalog, ConfigError, LakeLocation, Settings, TableConfig, mask_url
from weward_pipeline.export import delete_superseded
from weward_pipeline.glue import GlueCatalog, GlueColumn
from weward_pipeline.keys import MANIFEST_ENTRY as KEYS_ENTRY
from weward_pipeline.keys import RedactionKeys, manifest_alignment_problem
from weward_pipeline.pg import mask_error
from weward_pipeline.secret_store import PiiKey, load_pii_key, scrub
from weward_pipeline.verify import published_manifest, verify_published_day

log = logging.getLogger(__name__)

AUDIT_PREFIX = ("_audit", "erasure")
# Where erasure request files live, beside the lake prefix (what the erasure role may read).
REQUESTS_PREFIX = ("_requests", "erasure")


def requests_url(lake: LakeLocation) -> str:
    """s3://<lake bucket>/_requests/erasure/: the one place request files are read from (and the
    only one the erasure role may read)."""
    return f"s3://{lake.bucket}/{'/'.join(REQUESTS_PREFIX)}/"


NO_ERASE_DSN = (
    "deleting from PostgreSQL needs WEWARD_PG_ERASE_URL (or WEWARD_PG_REDACT_URL): the role that may DELETE "
    "the users' rows; the export DSN WEWARD_PG_URL is SELECT-only and is never used to delete. Nothing was changed."
)


class ErasureError(RuntimeError):
    """The request cannot be carried out as given; nothing was changed. Says what to fix."""


@dataclass(frozen=True)
class ErasureLimits:
    """What deleting from PostgreSQL may cost the primary (same spirit as redaction)."""

    batch_rows: int = 1_000  # the default of the CLI and the Dagster job too
    pause_s: float = 0.0
    lock_timeout_s: int = 5
    statement_timeout_s: int = 60
    lock_retries: int = 3

    def session(self, read_only: bool) -> pg.SessionLimits:
        """A read-only count reads one snapshot; ids are parsed under the pinned text forms."""
        return pg.SessionLimits(
            statement_timeout_s=self.statement_timeout_s,
            lock_timeout_s=self.lock_timeout_s,
            idle_in_transaction_timeout_s=60,
            read_only=read_only,
            isolation="repeatable read" if read_only else None,
            settings=pg.PINNED_TEXT_FORMS,
        )

    def retry_policy(self) -> pg.RetryPolicy:
        return pg.RetryPolicy(retries=self.lock_retries, backoff_s=1.0, max_backoff_s=10.0)


@dataclass(frozen=True)
class ErasureRequest:
    """The user ids to erase, as text, deduplicated. Never logged, never written anywhere."""

    user_ids: tuple[str, ...]

    @classmethod
    def parse(cls, lines: Iterable[str]) -> ErasureRequest:
        ids = []
        for line in lines:
            value = line.split("#", 1)[0].strip()
            if value:
                ids.append(value)
        if not ids:
            raise ErasureError(
                "the erasure request holds no user id (one per line; blank lines and # comments are ignored)"
            )
        return cls(tuple(dict.fromkeys(ids)))

    def __repr__(self) -> str:  # the ids stay out of tracebacks and logs
        return f"ErasureRequest({len(self.user_ids)} user id(s))"

    def digest(self, key: PiiKey | None) -> str | None:
        """Keyed digest of the sorted ids: proves which request ran, to whoever holds the list and the key."""
        if key is None:
            return None
        return pii.Pseudonymizer(key).value("\n".join(sorted(self.user_ids)))


# -- matching a user column ------------------------------------------------------------------------------

INTEGER_PG_TYPES = ("smallint", "integer", "bigint")


def typed_ids(
    request: ErasureRequest, column: dict, arrow_type: pa.DataType, table: str, pseudonymizer: pii.Pseudonymizer | None
) -> pa.Array:
    """The request's ids as the lake stores this column: same type, or keyed pseudonyms if hashed."""
    pg_type = column.get("pg_type", "")
    canonical: list[str] = []
    for position, raw in enumerate(request.user_ids, start=1):
        try:
            if pg_type in INTEGER_PG_TYPES or pa.types.is_integer(arrow_type):
                canonical.append(str(int(raw)))
            elif pg_type == "uuid":
                canonical.append(str(uuid.UUID(raw)))
            else:
                canonical.append(raw)
        except ValueError:
            raise ErasureError(
                f"table {table}: user_column {column['name']!r} is {pg_type or arrow_type}, and id number {position} of "
                "the request is not a valid value of that type; fix the request (ids are not echoed here)"
            ) from None
    policy = pii.POLICIES.get(column.get("pii") or "")
    if policy is not None and policy.transform is not None:  # as the export transformed the column
        if policy.needs_key and pseudonymizer is None:
            raise ErasureError(f"table {table}: user_column {column['name']!r} is pseudonymized; the PII key is needed")
        return policy.transform(pa.array(canonical, pa.string()), pseudonymizer)
    return pc.cast(pa.array(canonical, pa.string()), arrow_type)


def match_mask(values: pa.Array | pa.ChunkedArray, wanted: pa.Array) -> pa.Array:
    """True where the row belongs to one of the users (null user column: never)."""
    return pc.fill_null(pc.is_in(values, value_set=wanted), False)


# -- reports -------------------------------------------------------------------------------------------------


@dataclass
class DayErasure:
    day: str
    status: str  # erased | would_erase | clean | refused | failed
    rows_before: int = 0
    rows_erased: int = 0
    rows_after: int = 0
    keys_rows_erased: int = 0
    objects_rewritten: int = 0
    objects_copied: int = 0
    previous_export_id: str = ""
    export_id: str = ""
    message: str = ""


@dataclass
class TableErasure:
    table: str
    user_column: str
    pseudonymized: bool
    days: list[DayErasure] = field(default_factory=list)
    postgres_rows_deleted: int | None = None
    postgres_rows_found: int | None = None
    versions_purged: int = 0
    versions_with_users: int = 0

    @property
    def rows_erased(self) -> int:
        return sum(d.rows_erased for d in self.days)


@dataclass
class ErasureReport:
    erasure_id: str
    users: int
    request_digest: str | None
    started_at: str
    dry_run: bool
    delete_from_postgres: bool
    tables: list[TableErasure] = field(default_factory=list)
    finished_at: str = ""
    status: str = "running"
    problems: list[str] = field(default_factory=list)
    audit_url: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems and all(
            d.status in ("erased", "would_erase", "clean") for t in self.tables for d in t.days
        )

    @property
    def rows_erased(self) -> int:
        return sum(t.rows_erased for t in self.tables)

    def as_audit(self) -> dict:
        record = asdict(self)
        record["rows_erased"] = self.rows_erased
        record["note"] = (
            "No user identifier is recorded. request_digest is HMAC-SHA256 (the pipeline's PII key) of "
            "the request's sorted ids joined by newlines: recompute it from the ticket to match."
        )
        return record

    def summary(self) -> str:
        lines = [
            f"erasure {self.erasure_id}{' (dry run)' if self.dry_run else ''}: {self.users} user(s), "
            f"{self.rows_erased} lake row(s) {'would be ' if self.dry_run else ''}erased, status {self.status}"
        ]
        for table in self.tables:
            touched = [d for d in table.days if d.rows_erased or d.status not in ("clean",)]
            pg = ""
            if table.postgres_rows_deleted is not None:
                pg = f", {table.postgres_rows_deleted} PostgreSQL row(s) deleted"
            elif table.postgres_rows_found is not None:
                pg = f", {table.postgres_rows_found} row(s) in PostgreSQL"
            lines.append(
                f"  {table.table}: {table.rows_erased} row(s) in {len([d for d in touched if d.rows_erased])} "
                f"day(s){pg}, {table.versions_purged} superseded object version(s) purged"
            )
            for day in touched:
                lines.append(
                    f"    {day.day}: {day.status} {day.rows_erased}/{day.rows_before} rows"
                    + (f" ({day.message})" if day.message else "")
                )
        lines += [f"  problem: {p}" for p in self.problems]
        if self.audit_url:
            lines.append(f"  audit record: {self.audit_url}")
        return "\n".join(lines)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _streams_equal(left: Iterator[pa.Table], right: Iterator[pa.Table]) -> tuple[bool, int]:
    """Row-by-row equality of two streams of tables (any chunking); returns (equal, rows compared)."""
    rows = 0
    pending_left = pending_right = None
    while True:
        if pending_left is None or pending_left.num_rows == 0:
            pending_left = next(left, None)
            while pending_left is not None and pending_left.num_rows == 0:
                pending_left = next(left, None)
        if pending_right is None or pending_right.num_rows == 0:
            pending_right = next(right, None)
            while pending_right is not None and pending_right.num_rows == 0:
                pending_right = next(right, None)
        if pending_left is None or pending_right is None:
            return pending_left is None and pending_right is None, rows
        n = min(pending_left.num_rows, pending_right.num_rows)
        a, b = pending_left.slice(0, n), pending_right.slice(0, n)
        if a.schema.names != b.schema.names:
            return False, rows
        b = b.cast(a.schema)
        if not a.equals(b) and not all(_column_equal(a.column(i), b.column(i)) for i in range(a.num_columns)):
            return False, rows
        rows += n
        pending_left, pending_right = pending_left.slice(n), pending_right.slice(n)


def _column_equal(x: pa.ChunkedArray | pa.Array, y: pa.ChunkedArray | pa.Array) -> bool:
    """Arrow equality, except that NaN equals NaN (PostgreSQL float columns may hold 'NaN')."""
    if isinstance(x, pa.ChunkedArray):
        x = x.combine_chunks()
    if isinstance(y, pa.ChunkedArray):
        y = y.combine_chunks()
    if x.equals(y):
        return True
    if len(x) != len(y) or not x.is_null().equals(y.is_null()):
        return False
    if pa.types.is_floating(x.type):
        x_nan, y_nan = pc.fill_null(pc.is_nan(x), False), pc.fill_null(pc.is_nan(y), False)
        if not x_nan.equals(y_nan):
            return False
        keep = pc.invert(x_nan)
        return pc.filter(x, keep).equals(pc.filter(y, keep))
    if pa.types.is_list(x.type) or pa.types.is_large_list(x.type):
        return pc.list_value_length(x).equals(pc.list_value_length(y)) and _column_equal(
            pc.list_flatten(x), pc.list_flatten(y)
        )
    return False


# -- one day -------------------------------------------------------------------------------------------------


class DayRewrite:
    """Finds one published day's rows of the users and, unless dry run, republishes it without them."""

    def __init__(self, ctx: _Context, table: TableConfig, partition: dict, manifest: lake.Manifest) -> None:
        self.ctx = ctx
        self.table = table
        self.partition = partition
        self.manifest = manifest
        self.bucket = ctx.location.bucket
        self.day = manifest.day
        columns = {c["name"]: c for c in manifest.columns}
        self.user_column = columns.get(table.user_column)
        self.erased_positions: list[pa.Array] = []  # global row positions, per data object
        self.per_object: list[int] = []

    def path(self, key: str) -> str:
        return f"{self.bucket}/{key}"

    def scan(self) -> int:
        """Rows of the users in the published objects (reads the user column only)."""
        if self.user_column is None:
            raise ErasureError(
                f"table {self.table.name} day {self.day}: export {self.manifest.export_id} has no column "
                f"{self.table.user_column!r}; re-export the day so erasure can find the users' rows"
            )
        offset = 0
        for obj in self.manifest.objects:
            parquet = pq.ParquetFile(self.path(obj.key), filesystem=self.ctx.clients.filesystem)
            values = parquet.read(columns=[self.table.user_column]).column(0).combine_chunks()
            mask = match_mask(values, self.ctx.wanted(self.table, self.user_column, values.type))
            positions = pc.add(pc.indices_nonzero(mask), pa.scalar(offset, pa.uint64()))
            self.erased_positions.append(positions)
            self.per_object.append(len(positions))
            offset += parquet.metadata.num_rows
        return sum(self.per_object)

    # -- rewrite --------------------------------------------------------------------------------
    def rewrite(self) -> DayErasure:
        ctx, table, manifest = self.ctx, self.table, self.manifest
        erased = sum(self.per_object)
        result = DayErasure(
            day=self.day,
            status="erased",
            rows_before=manifest.rows,
            rows_erased=erased,
            rows_after=manifest.rows - erased,
            previous_export_id=manifest.export_id,
        )
        export_id = lake.new_export_id()
        result.export_id = export_id
        day = dt.date.fromisoformat(self.day)
        new_prefix = lake.version_prefix(ctx.location, table.name, day, export_id)
        new_manifest_key = lake.manifest_key(ctx.location, table.name, day, export_id)
        new_keys_prefix = lake.keys_prefix_of(new_manifest_key)
        try:
            objects = self._rewrite_data(new_prefix, result)
            keys_entry, keys_erased = self._rewrite_keys(new_keys_prefix)
            result.keys_rows_erased = keys_erased
            new_manifest = self._new_manifest(export_id, new_prefix, objects, erased, keys_entry, keys_erased)
            self._check_keys_aligned(new_manifest)
            lake.write_manifest(ctx.clients.s3, self.bucket, new_manifest_key, new_manifest)
            self._publish(new_manifest, new_manifest_key)
        except BaseException as exc:
            for prefix in (new_prefix, new_keys_prefix, new_manifest_key):
                try:
                    lake.purge_prefix(ctx.clients.s3, self.bucket, prefix)
                except Exception as cleanup:  # noqa: BLE001 - the next run's sweep retries
                    log.warning("erasure %s: could not remove %s: %s", ctx.report.erasure_id, prefix, cleanup)
            if isinstance(exc, Exception):  # this day stays as published; the others go on
                result.status = "failed"
                result.message = scrub(
                    f"{erased} row(s) of the users remain published: {exc.__class__.__name__}: {exc}"
                )
                result.rows_erased, result.rows_after, result.export_id = 0, manifest.rows, ""
                result.objects_rewritten = result.objects_copied = result.keys_rows_erased = 0
                return result
            raise
        try:
            ctx.purge_export(table, day, manifest.export_id)
        except Exception as exc:  # noqa: BLE001 - published already; the sweep below tries again
            ctx.pending_purges.append((table.name, day, manifest.export_id, scrub(str(exc))))
        # Leftovers of killed runs (exports or erasures) older than what was just published, as an
        # export would clear them; any that still held the users' rows are found by the sweep.
        delete_superseded(
            ctx.clients, ctx.location, table.name, day, keep_export_id=export_id, previous_export_id=manifest.export_id
        )
        return result

    def _write_without(
        self, old: pq.ParquetFile, drop: pa.Array, offset: int, new_key: str, metadata: dict[str, str]
    ) -> None:
        """`old` minus the rows at global positions `drop`, as a new lake object (lake writer settings)."""
        schema = old.schema_arrow
        schema = schema.with_metadata(
            {**(schema.metadata or {}), **{k.encode(): v.encode() for k, v in metadata.items()}}
        )
        with lake.parquet_writer(self.path(new_key), schema, self.ctx.clients.filesystem) as writer:
            for rows in self._filtered(old, drop, offset):
                if rows.num_rows:
                    writer.write_table(rows)

    def _filtered(self, parquet: pq.ParquetFile, drop: pa.Array, offset: int) -> Iterator[pa.Table]:
        """The object's rows minus global positions `drop`, row group by row group."""
        start = offset
        for group in range(parquet.num_row_groups):
            rows = parquet.read_row_group(group)
            end = start + rows.num_rows
            local = pc.subtract(
                pc.filter(drop, pc.and_(pc.greater_equal(drop, start), pc.less(drop, end))),
                pa.scalar(start, pa.uint64()),
            )
            if len(local):
                keep = pc.invert(pc.is_in(pa.array(range(rows.num_rows), pa.uint64()), value_set=local))
                rows = rows.filter(keep)
            start = end
            yield rows

    def _rewrite_data(self, new_prefix: str, result: DayErasure) -> list[lake.WrittenObject]:
        ctx = self.ctx
        metadata = {
            "weward.export_id": result.export_id,
            "weward.erasure_id": ctx.report.erasure_id,
            "weward.erasure_of": self.manifest.export_id,
        }
        objects, offset = [], 0
        for obj, positions, count in zip(self.manifest.objects, self.erased_positions, self.per_object):
            name = obj.key.rsplit("/", 1)[1]
            new_key = new_prefix + name
            old = pq.ParquetFile(self.path(obj.key), filesystem=ctx.clients.filesystem)
            if count == 0:
                copied = ctx.copy(obj, new_key)
                objects.append(lake.WrittenObject(key=new_key, rows=obj.rows))
                result.objects_copied += 1
                if copied["ContentLength"] != obj.bytes:
                    raise ErasureError(
                        f"copy of s3://{self.bucket}/{obj.key} is {copied['ContentLength']} bytes, "
                        f"the original {obj.bytes}"
                    )
            else:
                self._write_without(old, positions, offset, new_key, metadata)
                objects.append(lake.WrittenObject(key=new_key, rows=obj.rows - count))
                result.objects_rewritten += 1
                self._verify_rewrite(obj, old, positions, offset, new_key, count)
            offset += old.metadata.num_rows
        return lake.describe_objects(ctx.clients.s3, self.bucket, objects)

    def _verify_rewrite(
        self, obj, old: pq.ParquetFile, positions: pa.Array, offset: int, new_key: str, count: int
    ) -> None:
        """rows after = rows before - erased; no row of the users; every other row identical, in order."""
        new = pq.ParquetFile(self.path(new_key), filesystem=self.ctx.clients.filesystem)
        where = f"table {self.table.name} day {self.day}: rewrite of s3://{self.bucket}/{obj.key}"
        if new.metadata.num_rows != old.metadata.num_rows - count:
            raise ErasureError(
                f"{where} holds {new.metadata.num_rows} rows, expected {old.metadata.num_rows} - {count}"
            )
        left = self._filtered(old, positions, offset)
        right = (new.read_row_group(g) for g in range(new.num_row_groups))
        equal, compared = _streams_equal(left, right)
        if not equal:
            raise ErasureError(f"{where} differs from the original minus the erased rows at row {compared}")
        values = new.read(columns=[self.table.user_column]).column(0)
        left_over = (
            pc.sum(
                pc.cast(match_mask(values, self.ctx.wanted(self.table, self.user_column, values.type)), pa.int64())
            ).as_py()
            or 0
        )
        if left_over:
            raise ErasureError(f"{where} still holds {left_over} row(s) of the users")

    # -- redaction keys (row-aligned with the data) ----------------------------------------------
    def _rewrite_keys(self, new_keys_prefix: str) -> tuple[dict | None, int]:
        entry = (self.manifest.extra or {}).get(KEYS_ENTRY)
        if not entry:
            return None, 0
        ctx = self.ctx
        drop = pa.concat_arrays(self.erased_positions) if self.erased_positions else pa.array([], pa.uint64())
        drop = pc.filter(drop, pc.less(drop, entry["rows"]))  # carried rows have no keys
        objects, offset, erased = [], 0, 0
        for raw in entry["objects"]:
            obj = lake.WrittenObject(**raw)
            name = obj.key.rsplit("/", 1)[1]
            new_key = new_keys_prefix + name
            inside = pc.filter(drop, pc.and_(pc.greater_equal(drop, offset), pc.less(drop, offset + obj.rows)))
            if len(inside) == 0:
                ctx.copy(obj, new_key)
                objects.append(lake.WrittenObject(key=new_key, rows=obj.rows))
            else:
                old = pq.ParquetFile(self.path(obj.key), filesystem=ctx.clients.filesystem)
                self._write_without(old, inside, offset, new_key, {"weward.erasure_id": ctx.report.erasure_id})
                objects.append(lake.WrittenObject(key=new_key, rows=obj.rows - len(inside)))
                erased += len(inside)
            offset += obj.rows
        described = lake.describe_objects(ctx.clients.s3, self.bucket, objects)
        new_entry = {**entry, "objects": [asdict(o) for o in described], "rows": entry["rows"] - erased}
        return new_entry, erased

    def _check_keys_aligned(self, manifest: lake.Manifest) -> None:
        """Row i of the keys is row i of the data (the contract redaction relies on, keys.py)."""
        keys = RedactionKeys.from_manifest(manifest)
        if keys is None:
            return
        problem = manifest_alignment_problem(self.ctx.clients.filesystem, self.bucket, manifest, keys)
        if problem:
            raise ErasureError(
                f"table {self.table.name} day {self.day}: rewritten redaction keys and data are not "
                f"row-aligned ({problem}); nothing was published"
            )

    # -- manifest and publication -------------------------------------------------------------------
    def _new_manifest(
        self,
        export_id: str,
        new_prefix: str,
        objects: list[lake.WrittenObject],
        erased: int,
        keys_entry: dict | None,
        keys_erased: int,
    ) -> lake.Manifest:
        old = self.manifest
        erased_carried = erased - keys_erased if keys_entry is not None else 0
        erased_source = erased - erased_carried
        extra = dict(old.extra or {})
        if keys_entry is not None:
            extra[KEYS_ENTRY] = keys_entry
        extra["erasures"] = [
            *extra.get("erasures", []),
            {
                "erasure_id": self.ctx.report.erasure_id,
                "at": _now(),
                "previous_export_id": old.export_id,
                "rows_erased": erased,
                "source_rows_before": old.source_rows,
                "carried_rows_before": old.carried_rows,
            },
        ]
        manifest = lake.Manifest(
            table=old.table,
            day=old.day,
            export_id=export_id,
            location=f"s3://{self.bucket}/{new_prefix}",
            objects=objects,
            rows=old.rows - erased,
            source_rows=old.source_rows - erased_source,
            window=old.window,
            columns=old.columns,
            mode=old.mode,
            created_at=old.created_at,
            snapshot_at=old.snapshot_at,
            extra=extra,
            carried_rows=old.carried_rows - erased_carried,
        )
        if sum(o.rows for o in objects) != manifest.rows:
            raise ErasureError(
                f"table {self.table.name} day {self.day}: rewritten objects hold "
                f"{sum(o.rows for o in objects)} rows, expected {manifest.rows}"
            )
        return manifest

    def _publish(self, manifest: lake.Manifest, manifest_key: str) -> None:
        ctx, table = self.ctx, self.table
        current = ctx.glue.get_partition(table.name, self.day)
        current_id = (current or {}).get("Parameters", {}).get("weward.export_id")
        if current_id != self.manifest.export_id:
            raise ErasureError(
                f"table {table.name} day {self.day}: export {current_id} was published while erasure "
                "ran; re-run the erasure to cover it (nothing of this run was published)"
            )
        columns = [
            GlueColumn(c["Name"], c["Type"], c.get("Comment", ""))
            for c in self.partition["StorageDescriptor"]["Columns"]
        ]
        parameters = {
            **self.partition.get("Parameters", {}),
            "weward.export_id": manifest.export_id,
            "weward.manifest": f"s3://{self.bucket}/{manifest_key}",
            "weward.rows": str(manifest.rows),
            "weward.source_rows": str(manifest.source_rows),
            "weward.erasure_id": ctx.report.erasure_id,
            "weward.erased_at": _now(),
        }
        if "weward.carried_rows" in parameters or manifest.carried_rows:
            parameters["weward.carried_rows"] = str(manifest.carried_rows)
        ctx.glue.publish_partition(table.name, self.day, manifest.location, columns, parameters)
        verification = verify_published_day(ctx.glue, ctx.clients.s3, ctx.clients.filesystem, table.name, self.day)
        if not verification.passed():
            # Put the previous export back: its objects are untouched until after this check.
            old_columns = [
                GlueColumn(c["Name"], c["Type"], c.get("Comment", ""))
                for c in self.partition["StorageDescriptor"]["Columns"]
            ]
            ctx.glue.publish_partition(
                table.name,
                self.day,
                self.partition["StorageDescriptor"]["Location"],
                old_columns,
                self.partition.get("Parameters", {}),
            )
            raise ErasureError(
                f"table {table.name} day {self.day}: the rewritten day failed verification after "
                f"publishing ({verification.summary()}); the previous export was put back"
            )


# -- the whole request ------------------------------------------------------------------------------------


class _Context:
    def __init__(
        self,
        settings: Settings,
        clients: AwsClients,
        request: ErasureRequest,
        report: ErasureReport,
        key: PiiKey | None,
        say: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.request = request
        self.report = report
        self.location = LakeLocation(settings.lake.bucket, settings.lake.prefix)
        self.glue = GlueCatalog(clients.glue, settings.glue_database)
        self.key = key
        self.pseudonymizer = pii.Pseudonymizer(key) if key is not None else None
        self.say = say
        self._wanted: dict[tuple, pa.Array] = {}
        self.pending_purges: list[tuple[str, dt.date, str, str]] = []
        self.postgres_unreachable = False

    def export_prefixes(self, table: str, day: dt.date, export_id: str) -> list[str]:
        manifest_key = lake.manifest_key(self.location, table, day, export_id)
        return [
            lake.version_prefix(self.location, table, day, export_id),
            lake.keys_prefix_of(manifest_key),
            manifest_key,
        ]

    def wanted(self, table: TableConfig, column: dict, arrow_type: pa.DataType) -> pa.Array:
        cache_key = (table.name, column.get("name"), column.get("pg_type"), column.get("pii"), str(arrow_type))
        if cache_key not in self._wanted:
            self._wanted[cache_key] = typed_ids(self.request, column, arrow_type, table.name, self.pseudonymizer)
        return self._wanted[cache_key]

    def copy(self, obj: lake.WrittenObject, new_key: str) -> dict:
        # If-Match on the ETag pins the exact bytes the manifest describes (no s3:GetObjectVersion needed).
        source = {"Bucket": self.location.bucket, "Key": obj.key}
        self.clients.s3.copy_object(
            Bucket=self.location.bucket,
            Key=new_key,
            CopySource=source,
            CopySourceIfMatch=f'"{obj.etag}"' if obj.etag else "*",
        )
        return self.clients.s3.head_object(Bucket=self.location.bucket, Key=new_key)

    def purge_export(self, table: TableConfig, day: dt.date, export_id: str) -> int:
        """Every version of a superseded export: data prefix, redaction keys, manifest."""
        purged = 0
        for prefix in self.export_prefixes(table.name, day, export_id):
            purged += lake.purge_prefix(self.clients.s3, self.location.bucket, prefix)
        self._table_report(table).versions_purged += purged
        return purged

    def _table_report(self, table: TableConfig) -> TableErasure:
        return next(t for t in self.report.tables if t.table == table.name)


def erase_users(
    settings: Settings,
    catalog: Catalog,
    user_ids: Iterable[str] | ErasureRequest,
    *,
    clients: AwsClients | None = None,
    tables: Iterable[str] | None = None,
    delete_from_postgres: bool = False,
    dry_run: bool = False,
    pii_key: PiiKey | None = None,
    limits: ErasureLimits = ErasureLimits(),
    on_progress: Callable[[str], None] | None = None,
) -> ErasureReport:
    """Erase the users from the lake (and PostgreSQL with `delete_from_postgres`). See the module docstring."""
    request = user_ids if isinstance(user_ids, ErasureRequest) else ErasureRequest.parse(user_ids)
    say = on_progress or (lambda message: log.info(message))
    in_scope = _tables_in_scope(catalog, tables)
    needs_key = any(pii.user_column_needs_key(t) for t in in_scope)
    if pii_key is None:
        try:
            pii_key = load_pii_key(needed_by="erasure of a pseudonymized user column" if needs_key else "")
        except ConfigError:
            if needs_key:
                raise
            pii_key = None  # only the request digest needs it then; the audit says it is absent
    clients = clients or AwsClients.from_settings(settings)
    report = ErasureReport(
        erasure_id=new_erasure_id(),
        users=len(request.user_ids),
        request_digest=request.digest(pii_key),
        started_at=_now(),
        dry_run=dry_run,
        delete_from_postgres=delete_from_postgres,
    )
    ctx = _Context(settings, clients, request, report, pii_key, say)
    validate_request(ctx, in_scope, postgres=delete_from_postgres)
    if delete_from_postgres and not dry_run and settings.pg_erase_url is None:
        raise ErasureError(NO_ERASE_DSN)  # a valid request, but no role that may delete: nothing changed yet
    say(
        f"erasure {report.erasure_id}: {report.users} user(s) over {len(in_scope)} table(s)"
        f"{' (dry run: nothing is changed)' if dry_run else ''}"
    )
    try:
        for table in in_scope:
            report.tables.append(TableErasure(table.name, table.user_column, pii.user_column_needs_key(table)))
        for table in in_scope:
            _erase_table(ctx, table, delete_from_postgres, dry_run, limits)
        report.status = ("dry_run" if dry_run else "completed") if report.ok else "incomplete"
    except BaseException as exc:
        report.status = "failed"
        report.problems.append(scrub(str(exc)) or exc.__class__.__name__)
        raise
    finally:
        report.finished_at = _now()
        if not dry_run:
            _write_audit(ctx)
        if report.status == "failed":  # otherwise the caller has the report (the CLI prints it once)
            say(report.summary())
    return report


def _tables_in_scope(catalog: Catalog, names: Iterable[str] | None) -> list[TableConfig]:
    erasable = [t for t in catalog.tables if t.user_column]
    if names:
        wanted = list(dict.fromkeys(names))
        unknown = [n for n in wanted if n not in {t.name for t in catalog.tables}]
        no_user = [n for n in wanted if n in {t.name for t in catalog.tables} and n not in {t.name for t in erasable}]
        if unknown or no_user:
            raise ErasureError(
                "cannot erase from "
                + "; ".join(
                    (
                        [
                            f"unknown table(s) {', '.join(unknown)} (catalog: {', '.join(t.name for t in catalog.tables)})"
                        ]
                        if unknown
                        else []
                    )
                    + ([f"table(s) {', '.join(no_user)} without `user_column` in the catalog"] if no_user else [])
                )
            )
        erasable = [t for t in erasable if t.name in wanted]
    if not erasable:
        raise ErasureError(
            "no table of the catalog declares a `user_column`: nothing can be erased. Declare whose "
            "row each row is (user_column: user_id) for the tables holding users' data."
        )
    return erasable


def _erase_table(
    ctx: _Context, table: TableConfig, delete_from_postgres: bool, dry_run: bool, limits: ErasureLimits
) -> None:
    report = ctx._table_report(table)
    glue_table = ctx.glue.get_table(table.name)
    if glue_table is not None and pii.user_column_needs_key(table):
        # Pseudonyms made with another key would match nothing: refuse rather than erase nothing.
        pii.check_key_id(glue_table, table, ctx.key)
    if delete_from_postgres and not dry_run:
        _postgres(ctx, table, report, delete=True, limits=limits)
    elif (
        not ctx.postgres_unreachable
    ):  # how many rows a re-export (or tomorrow's snapshot) would bring back; best effort
        try:
            _postgres(ctx, table, report, delete=False, limits=limits)
        except (ErasureError, psycopg.Error) as exc:
            ctx.postgres_unreachable = isinstance(exc, ErasureError) and "cannot connect" in str(exc)
            log.warning(
                "erasure %s: %s: could not count the users' rows left in PostgreSQL%s: %s",
                ctx.report.erasure_id,
                table.name,
                " (nor for the other tables)" if ctx.postgres_unreachable else "",
                scrub(str(exc)),
            )
    if glue_table is None:
        ctx.say(f"erasure {ctx.report.erasure_id}: {table.name} has no lake table yet")
        return
    for partition in ctx.glue.list_partitions(table.name):
        day = partition["Values"][0]
        _, manifest = published_manifest(ctx.glue, ctx.clients.s3, table.name, day)
        if manifest is None:
            report.days.append(
                DayErasure(day=day, status="refused", message="published partition has no readable manifest")
            )
            continue
        rewrite = DayRewrite(ctx, table, partition, manifest)
        try:
            found = rewrite.scan()
        except (ErasureError, OSError, pa.ArrowException) as exc:
            report.days.append(
                DayErasure(
                    day=day,
                    status="refused",
                    rows_before=manifest.rows,
                    previous_export_id=manifest.export_id,
                    message=scrub(str(exc)),
                )
            )
            continue
        if found == 0:
            report.days.append(
                DayErasure(
                    day=day,
                    status="clean",
                    rows_before=manifest.rows,
                    rows_after=manifest.rows,
                    previous_export_id=manifest.export_id,
                )
            )
            continue
        if dry_run:
            report.days.append(
                DayErasure(
                    day=day,
                    status="would_erase",
                    rows_before=manifest.rows,
                    rows_erased=found,
                    rows_after=manifest.rows - found,
                    previous_export_id=manifest.export_id,
                )
            )
            continue
        verification = verify_published_day(ctx.glue, ctx.clients.s3, ctx.clients.filesystem, table.name, day)
        if not verification.passed():
            report.days.append(
                DayErasure(
                    day=day,
                    status="refused",
                    rows_before=manifest.rows,
                    rows_erased=0,
                    previous_export_id=manifest.export_id,
                    message=f"{found} row(s) of the users found, but the day does not match its manifest "
                    f"({verification.summary()}); re-export it (with --postgres run first), then re-run",
                )
            )
            continue
        result = rewrite.rewrite()
        report.days.append(result)
        ctx.say(
            f"erasure {ctx.report.erasure_id}: {table.name} {day}: {result.status} {result.rows_erased} of "
            f"{result.rows_before} row(s)" + (f" ({result.message})" if result.message else "")
        )
    try:
        _sweep(ctx, table, report, dry_run)
    except ErasureError as exc:
        ctx.report.problems.append(f"table {table.name}: superseded object versions were not swept: {exc}")
    for name, day, export_id, why in [p for p in ctx.pending_purges if p[0] == table.name]:
        left = sum(
            len(lake.list_versions(ctx.clients.s3, ctx.location.bucket, prefix)[0])
            for prefix in ctx.export_prefixes(name, day, export_id)
        )
        if left:
            ctx.report.problems.append(
                f"table {name} day {day}: published without the users, but {left} object version(s) of the "
                f"superseded export {export_id} could not be deleted ({why}); re-run the erasure to purge them"
            )


# -- superseded versions ------------------------------------------------------------------------------------


def _sweep(ctx: _Context, table: TableConfig, report: TableErasure, dry_run: bool) -> None:
    """Delete every stored object version of the table's data that holds any of the users' rows,
    except what is published (just verified clean): older exports, killed runs' leftovers,
    noncurrent versions kept by bucket versioning. Their keys and manifest go with them."""
    s3, bucket = ctx.clients.s3, ctx.location.bucket
    table_prefix = lake.table_prefix(ctx.location, table.name)
    published = {}
    for partition in ctx.glue.list_partitions(table.name):
        params = partition.get("Parameters", {})
        published[partition["Values"][0]] = params.get("weward.export_id", "")
    versions, markers = lake.list_versions(s3, bucket, table_prefix)
    dirty_exports: set[tuple[str, str]] = set()
    to_delete: list[tuple[str, str]] = []
    for version in versions:
        key = version["Key"]
        rest = key[len(table_prefix) :].split("/")
        if (
            len(rest) < 3
            or not rest[0].startswith("dt=")
            or not rest[1].startswith("v=")
            or not key.endswith(".parquet")
        ):
            continue
        day, export_id = rest[0][3:], rest[1][2:]
        if version.get("IsLatest") and published.get(day) == export_id:
            continue  # the published day: scanned and rewritten above
        if _version_holds_users(ctx, table, version):
            to_delete.append((key, version["VersionId"]))
            dirty_exports.add((day, export_id))
    report.versions_with_users += len(to_delete)
    if dry_run or not to_delete:
        return
    for day, export_id in sorted(dirty_exports):
        if published.get(day) == export_id:
            continue  # never the published export's keys or manifest
        manifest_key = lake.manifest_key(ctx.location, table.name, dt.date.fromisoformat(day), export_id)
        for prefix in (lake.keys_prefix_of(manifest_key), manifest_key):
            for v in lake.list_versions(s3, bucket, prefix)[0]:
                to_delete.append((v["Key"], v["VersionId"]))
    report.versions_purged += lake.delete_versions(s3, bucket, to_delete)
    # Delete markers left alone on keys that no longer have any version.
    remaining = {v["Key"] for v in lake.list_versions(s3, bucket, table_prefix)[0]}
    orphans = [(m["Key"], m["VersionId"]) for m in markers if m["Key"] not in remaining]
    if orphans:
        lake.delete_versions(s3, bucket, orphans)


def _version_holds_users(ctx: _Context, table: TableConfig, version: dict) -> bool:
    body = ctx.clients.s3.get_object(
        Bucket=ctx.location.bucket, Key=version["Key"], **lake.version_args(version.get("VersionId"))
    )["Body"].read()
    try:
        parquet = pq.ParquetFile(io.BytesIO(body))
    except pa.ArrowException:
        return False  # not Parquet (cannot hold rows Athena would read); left to the lifecycle rule
    names = parquet.schema_arrow.names
    if table.user_column not in names:
        return False
    field_ = parquet.schema_arrow.field(table.user_column)
    policy = (field_.metadata or {}).get(pii.FIELD_POLICY, b"").decode() or None
    pg_type = (field_.metadata or {}).get(b"pg_type", b"").decode()
    column = {"name": table.user_column, "pg_type": pg_type, "pii": policy}
    values = parquet.read(columns=[table.user_column]).column(0)
    return bool(pc.any(match_mask(values, ctx.wanted(table, column, values.type))).as_py())


# -- PostgreSQL --------------------------------------------------------------------------------------------

USER_COLUMN_TYPE_SQL = """
SELECT tn.nspname, t.typname
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_namespace tn ON tn.oid = t.typnamespace
WHERE n.nspname = %s AND c.relname = %s AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped
"""


def _dsn(ctx: _Context, read_only: bool) -> str | None:
    """What erasure connects with (see _connect); None: no role that may delete."""
    return ctx.settings.pg_erase_url or (ctx.settings.pg_url if read_only else None)


def _connect(ctx: _Context, what: str, limits: ErasureLimits, read_only: bool) -> psycopg.Connection:
    """The erasure DSN (WEWARD_PG_ERASE_URL, else WEWARD_PG_REDACT_URL); a read-only session (a dry
    run's counts) may fall back to the export DSN, a deleting one never."""
    url = _dsn(ctx, read_only)
    if url is None:
        raise ErasureError(NO_ERASE_DSN)
    try:
        return pg.connect(
            url, f"weward-erasure {what.removeprefix('table ')}", limits.session(read_only=read_only), purpose="erasure"
        )
    except pg.ConnectError as exc:
        raise ErasureError(f"{what}: {exc}. Check WEWARD_PG_ERASE_URL (or WEWARD_PG_REDACT_URL).") from None


# PostgreSQL's internal type names of the user columns erasure checks ids against (typed_ids' names).
_PG_TYPE_NAMES = {"int2": "smallint", "int4": "integer", "int8": "bigint", "uuid": "uuid"}


def validate_request(ctx: _Context, tables: list[TableConfig], *, postgres: bool) -> None:
    """Every id of the request against every table's user column, before anything is changed.

    An id that is not a value of a user column's type (`abc` for a bigint) is a bad request
    (ErasureError: exit 2, nothing touched), not a day to retry after scanning the lake. The lake's
    type comes from the newest published manifest of each table; with `postgres`, PostgreSQL's own
    type is checked too, which also proves the server answers before the first DELETE.
    """
    for table in tables:
        days = [p["Values"][0] for p in ctx.glue.list_partitions(table.name)] if ctx.glue.get_table(table.name) else []
        manifest = published_manifest(ctx.glue, ctx.clients.s3, table.name, max(days))[1] if days else None
        column = next((c for c in manifest.columns if c["name"] == table.user_column), None) if manifest else None
        if column is not None:
            typed_ids(ctx.request, column, pa.string(), table.name, ctx.pseudonymizer)
    if not postgres:
        return
    with _connect(ctx, "erasure request", ErasureLimits(), read_only=True) as conn:
        for table in tables:
            found = conn.execute(USER_COLUMN_TYPE_SQL, (table.schema, table.source, table.user_column)).fetchone()
            if found is None:
                raise ErasureError(
                    f"table {table.name}: PostgreSQL has no column {table.user_column!r} in "
                    f"{table.qualified_source} visible to the erasure role"
                )
            column = {"name": table.user_column, "pg_type": _PG_TYPE_NAMES.get(found[1], found[1])}
            typed_ids(ctx.request, column, pa.string(), table.name, None)


def _postgres(ctx: _Context, table: TableConfig, report: TableErasure, *, delete: bool, limits: ErasureLimits) -> None:
    """Delete (or count) the users' rows in PostgreSQL: key-bounded batches, each its own short transaction."""
    conn = _connect(ctx, f"table {table.name}", limits, read_only=not delete)
    with conn:
        found = conn.execute(USER_COLUMN_TYPE_SQL, (table.schema, table.source, table.user_column)).fetchone()
        if found is None:
            raise ErasureError(
                f"table {table.name}: PostgreSQL has no column {table.user_column!r} in "
                f"{table.qualified_source} visible to the erasure role"
            )
        target = sql.SQL("{}.{}").format(sql.Identifier(table.schema), sql.Identifier(table.source))
        user = sql.Identifier(table.user_column)
        ids = sql.SQL("%(ids)s::text[]::{}.{}[]").format(sql.Identifier(found[0]), sql.Identifier(found[1]))
        params = {"ids": list(ctx.request.user_ids), "limit": limits.batch_rows}
        try:
            if not delete:
                query = sql.SQL("SELECT count(*) FROM {} WHERE {} = ANY({})").format(target, user, ids)
                report.postgres_rows_found = conn.execute(query, params).fetchone()[0]
                return
            key = sql.SQL(", ").join(map(sql.Identifier, table.primary_key))
            statement = sql.SQL(
                "DELETE FROM {t} WHERE ({k}) IN (SELECT {k} FROM {t} WHERE {u} = ANY({ids}) LIMIT %(limit)s)"
            ).format(t=target, k=key, u=user, ids=ids)
            deleted = 0
            while True:
                count = _with_lock_retries(lambda: conn.execute(statement, params).rowcount, limits, table)
                deleted += count
                if count < limits.batch_rows:
                    break
                if limits.pause_s:
                    time.sleep(limits.pause_s)
            report.postgres_rows_deleted = deleted
            ctx.say(f"erasure {ctx.report.erasure_id}: {table.name}: {deleted} row(s) deleted from PostgreSQL")
        except psycopg.errors.InsufficientPrivilege as exc:
            url = _dsn(ctx, read_only=not delete) or ""
            raise ErasureError(
                f"table {table.name}: the erasure role ({mask_url(url)}) may not do this on "
                f"{table.qualified_source} ({mask_error(str(exc), url).strip()}); grant it DELETE and "
                f"SELECT on {', '.join(table.primary_key)}, {table.user_column} "
                "(weward-pipeline roles-sql prints the grants)"
            ) from None
        except psycopg.errors.InvalidTextRepresentation:
            raise ErasureError(
                f"table {table.name}: an id of the request is not a valid {found[1]} for "
                f"{table.user_column!r} (ids are not echoed here); fix the request"
            ) from None


def _with_lock_retries(run: Callable[[], int], limits: ErasureLimits, table: TableConfig) -> int:
    try:
        return pg.retry_on_lock(run, limits.retry_policy())
    except pg.LockRetriesExhausted as exhausted:
        raise ErasureError(
            f"table {table.name}: a batch of deletes waited for locks {exhausted.attempts} times "
            f"({exhausted.error.__class__.__name__}); the rows deleted so far stay deleted, re-run "
            "to finish (erasure is resumable)"
        ) from None


# -- audit -------------------------------------------------------------------------------------------------


def audit_key(location: LakeLocation, erasure_id: str) -> str:
    return location.key(*AUDIT_PREFIX, f"{erasure_id}.json")


def _write_audit(ctx: _Context) -> None:
    key = audit_key(ctx.location, ctx.report.erasure_id)
    ctx.report.audit_url = f"s3://{ctx.location.bucket}/{key}"
    body = json.dumps(ctx.report.as_audit(), indent=1, sort_keys=True, default=str)
    for value in ctx.request.user_ids:  # defence in depth: no id may ever reach the record
        if len(value) >= 3 and f'"{value}"' in body:
            raise ErasureError("internal error: the audit record would contain a requested id; not written")
    ctx.clients.s3.put_object(Bucket=ctx.location.bucket, Key=key, Body=body.encode(), ContentType="application/json")


def read_audit(s3, location: LakeLocation, erasure_id: str) -> dict:
    return json.loads(s3.get_object(Bucket=location.bucket, Key=audit_key(location, erasure_id))["Body"].read())


def new_erasure_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-e" + secrets.token_hex(3)
