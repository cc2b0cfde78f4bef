"""Redaction keys: what an export of a table with `retention_days` records so rows can be deleted safely.

For every PostgreSQL row it exports, the export writes the row's primary key and a fingerprint
PostgreSQL computed in the same snapshot (md5 of the row's text form, see extract.py) to small
Parquet objects next to the manifest, outside the data prefix Athena scans:

    s3://bucket/prefix/_manifests/<table>/dt=<day>/<export_id>.keys/part-00000.parquet

Row i of the keys objects is row i of the published data files: both are written from the same
Arrow batches, in order. Rows carried over from a previous export (below) follow the PostgreSQL
rows in the data files and have no keys, since they are no longer in PostgreSQL. Anything that
rewrites a published day (erasure) must keep this alignment: drop the same rows from both.

Carry-over. Re-exporting a day that redaction has already (partly) deleted from PostgreSQL would
publish a day without those rows and then delete the only copy. So for tables with a retention,
an export reads the day's published export and writes after the PostgreSQL rows exactly the rows
the pipeline deleted: those whose primary key is no longer in the new snapshot and that
  - redaction's audit of the day lists (redaction_audit.py: written before each delete commits), or
  - the previous export had carried already (proven by the export that carried them), or
  - come from an export older than the audit (its manifest lacks `redaction_audit`), which may
    have been redacted without one: every row it holds that is absent is kept, as before.
Any other absent row was deleted by the app, or its partition column moved it to another day: it
leaves this day (`dropped_rows`), so every row is in exactly one day. A row erasure removed is in
no published export, so it is never carried.

Order is the safety argument: the new snapshot is taken first, then the audit is listed, then the
previous export is read. A row redacted before the snapshot has its audit object already (written
before the delete committed); a row redacted after it is in the snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from weward_pipeline import lake, pii, redaction_audit
from weward_pipeline.config import LakeLocation, TableConfig
from weward_pipeline.extract import FINGERPRINT_COLUMN, FINGERPRINT_FUNCTION, Extraction, detached_columns
from weward_pipeline.glue import GlueCatalog
from weward_pipeline.verify import published_manifest

KEYS_VERSION = 1
MANIFEST_ENTRY = "redaction_keys"


class CarryOverError(RuntimeError):
    """A re-export cannot keep the rows already redacted from PostgreSQL; nothing is published."""


def keys_schema(source: pa.Schema, primary_key: tuple[str, ...]) -> pa.Schema:
    fields = [source.field(name).with_nullable(False) for name in primary_key]
    return pa.schema([*fields, pa.field(FINGERPRINT_COLUMN, pa.binary(), nullable=False)])


@dataclass
class RedactionKeys:
    """The manifest's `extra["redaction_keys"]`: where the keys are and how fingerprints were made."""

    objects: list[lake.WrittenObject]
    rows: int
    primary_key: list[str]
    # The fingerprint covers these columns, in this order, with PostgreSQL's type at export time.
    columns: list[dict[str, str]]
    # Session settings the row text form depended on; redaction sets the same values.
    settings: dict[str, str]
    function: str = FINGERPRINT_FUNCTION
    version: int = KEYS_VERSION

    def to_manifest(self) -> dict:
        return asdict(self)

    @classmethod
    def from_manifest(cls, manifest: lake.Manifest) -> RedactionKeys | None:
        data = (manifest.extra or {}).get(MANIFEST_ENTRY)
        if not data:
            return None
        data = dict(data)
        data["objects"] = [lake.WrittenObject(**o) for o in data["objects"]]
        return cls(**data)


# -- the alignment contract: row i of the keys is row i of the data -------------------------------

ALIGNMENT_BATCH_ROWS = 65_536


def read_columns(
    paths: Iterable[str], columns: list[str], filesystem=None, batch_rows: int = ALIGNMENT_BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """The `columns` of Parquet files, in file and row order (S3 "bucket/key" paths with a filesystem)."""
    for path in paths:
        yield from pq.ParquetFile(path, filesystem=filesystem).iter_batches(batch_size=batch_rows, columns=columns)


def alignment_problem(
    keys: Iterable[pa.RecordBatch], data: Iterable[pa.RecordBatch], primary_key: Iterable[str], carried_rows: int
) -> str | None:
    """None when the keys' primary keys equal the data's, row by row, and exactly `carried_rows` data
    rows follow the keyed ones; else what breaks the alignment. Streams both sides (any chunking)."""
    columns = list(primary_key)
    data = iter(data)
    position = 0
    pending: pa.RecordBatch | None = None
    for keys_batch in keys:
        offset = 0
        while offset < keys_batch.num_rows:
            if pending is None or pending.num_rows == 0:
                pending = next(data, None)
                if pending is None:
                    return f"the data files hold fewer rows than the keys ({position})"
            n = min(keys_batch.num_rows - offset, pending.num_rows)
            for name in columns:
                expected = keys_batch.column(name).slice(offset, n)
                actual = pending.column(name).slice(0, n)
                if not actual.cast(expected.type).equals(expected):
                    return f"the keys and the data files differ at row {position} or after (column {name!r})"
            pending = pending.slice(n)
            offset += n
            position += n
    remaining = (pending.num_rows if pending is not None else 0) + sum(b.num_rows for b in data)
    if remaining != carried_rows:
        return (
            f"after the {position} keyed rows the data files hold {remaining} rows, the manifest says "
            f"{carried_rows} were carried over"
        )
    return None


def manifest_alignment_problem(
    filesystem, bucket: str, manifest: lake.Manifest, keys: RedactionKeys, keys_paths: Iterable[str] | None = None
) -> str | None:
    """`alignment_problem` for a published (or about to be published) export. `keys_paths`: local
    copies of the keys objects, if the caller downloaded them (read without the filesystem)."""
    columns = list(keys.primary_key)
    if keys_paths is None:
        keys_batches = read_columns([f"{bucket}/{o.key}" for o in keys.objects], columns, filesystem)
    else:
        keys_batches = read_columns([str(p) for p in keys_paths], columns)
    data_batches = read_columns([f"{bucket}/{o.key}" for o in manifest.objects], columns, filesystem)
    return alignment_problem(keys_batches, data_batches, columns, manifest.carried_rows)


class KeySet:
    """The primary keys of one snapshot (key columns only), to find the keys of another set it lacks."""

    def __init__(self, primary_key: tuple[str, ...]) -> None:
        self.primary_key = list(primary_key)
        self._chunks: list[pa.RecordBatch] = []
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        self._chunks.append(detached_columns(batch, self.primary_key))
        self.rows += batch.num_rows

    def absent(self, keys: pa.Table) -> pa.Table:
        """The rows of `keys` (key columns plus any position columns) whose key is not in the set.

        One hash join (Arrow Acero) over key columns only: about 1 s per million keys on a small
        machine; works for every key type Arrow can hash (integers, text, timestamps, decimals).
        """
        if keys.num_rows == 0:
            return keys
        if not self._chunks:
            return keys
        mine = pa.Table.from_batches(self._chunks).cast(keys.select(self.primary_key).schema)
        return keys.join(mine, keys=self.primary_key, join_type="left anti")


class ExportKeys:
    """Export side: writes the keys objects, and carries redacted rows over from the previous export.

    Create it right after the extraction opened its snapshot (the order is the safety argument).
    """

    def __init__(
        self,
        *,
        clients,
        glue: GlueCatalog,
        location: LakeLocation,
        table: TableConfig,
        day,
        export_id: str,
        extraction: Extraction,
    ) -> None:
        self.clients = clients
        self.location = location
        self.bucket = location.bucket
        self.table = table
        self.day = day
        self.prefix = lake.keys_prefix(location, table.name, day, export_id)
        self.columns = [{"name": c.name, "pg_type": c.pg_type} for c in extraction.source.columns]
        self.settings = dict(extraction.fingerprint_settings)
        self.writer = lake.ParquetDayWriter(
            clients.filesystem,
            f"{self.bucket}/{self.prefix}",
            keys_schema(extraction.source.arrow_schema, table.primary_key),
            metadata={
                "weward.table": table.name,
                "weward.day": str(day),
                "weward.export_id": export_id,
                "weward.content": "redaction keys: primary key + row fingerprint, in data file order",
            },
        )
        partition, self.previous = published_manifest(glue, clients.s3, table.name, str(day))
        if partition is not None and self.previous is None:
            raise CarryOverError(
                f"table {table.name} day {day}: the published partition has no readable manifest, so this "
                "export cannot tell which of its rows were already redacted from PostgreSQL; nothing was "
                "published. Restore the manifest (weward.manifest in the Glue partition), or, if nothing of "
                f"this day was ever redacted, remove the Glue partition dt={day} and re-export."
            )
        previous_keys = RedactionKeys.from_manifest(self.previous) if self.previous else None
        # An export without keys was never redacted (redaction refuses it), and carried nothing.
        self.may_carry = self.previous is not None and (previous_keys is not None or self.previous.carried_rows > 0)
        self.snapshot_keys = KeySet(table.primary_key) if self.may_carry else None
        self.carried_rows = 0
        self.dropped_rows = 0  # absent from the snapshot, not deleted by the pipeline: the app's deletes
        self.carried_from: str | None = None

    def add(self, keys: pa.RecordBatch) -> None:
        self.writer.write(pa.RecordBatch.from_arrays(keys.columns, schema=self.writer.schema))
        if self.snapshot_keys is not None:
            self.snapshot_keys.add(keys)

    def abort(self) -> None:
        self.writer.abort()

    def close(self) -> RedactionKeys:
        written = self.writer.close()
        for obj in written:
            obj.key = obj.key[len(self.bucket) + 1 :]
        objects = lake.describe_objects(self.clients.s3, self.bucket, written)
        return RedactionKeys(
            objects=objects,
            rows=sum(o.rows for o in objects),
            primary_key=list(self.table.primary_key),
            columns=self.columns,
            settings=self.settings,
        )

    # -- carry-over ---------------------------------------------------------------------------
    def carry_over(self, data_writer: lake.ParquetDayWriter) -> int:
        """Append to `data_writer` the previous export's rows whose key is not in this snapshot."""
        if not self.may_carry:
            return 0
        previous = self.previous
        self._check_intact(previous)
        key_columns = list(self.table.primary_key)
        # Listed after the snapshot was taken (the caller's order): see the module docstring.
        audited = redaction_audit.read_deleted_keys(
            self.clients.s3, self.clients.filesystem, self.location, self.table.name, self.day, key_columns
        )
        positions = []
        at = 0
        for index, obj in enumerate(previous.objects):
            parquet = pq.ParquetFile(f"{self.bucket}/{obj.key}", filesystem=self.clients.filesystem)
            for group in range(parquet.num_row_groups):
                keys = parquet.read_row_group(group, columns=key_columns)
                rows = keys.num_rows
                positions.append(
                    keys.append_column("_object", pa.array([index] * rows, pa.int32()))
                    .append_column("_group", pa.array([group] * rows, pa.int32()))
                    .append_column("_row", pa.array(range(rows), pa.int64()))
                    .append_column("_at", pa.array(range(at, at + rows), pa.int64()))
                )
                at += rows
        if not positions:
            return 0
        gone = self.snapshot_keys.absent(pa.concat_tables(positions))
        if gone.num_rows == 0:
            return 0
        absent = gone.num_rows
        gone = self._deleted_by_pipeline(gone, audited, previous)
        self.dropped_rows = absent - gone.num_rows
        if gone.num_rows == 0:
            return 0
        wanted: dict[tuple[int, int], list[int]] = {}
        for obj_index, group, row in zip(*(gone.column(c).to_pylist() for c in ("_object", "_group", "_row"))):
            wanted.setdefault((obj_index, group), []).append(row)
        previous_columns = {c["name"]: c for c in previous.columns}
        for (obj_index, group), row_numbers in sorted(wanted.items()):
            obj = previous.objects[obj_index]
            parquet = pq.ParquetFile(f"{self.bucket}/{obj.key}", filesystem=self.clients.filesystem)
            rows = parquet.read_row_group(group).take(pa.array(sorted(row_numbers), pa.int64()))
            for batch in rows.to_batches():
                data_writer.write(self._conform(batch, data_writer.schema, previous_columns, previous.export_id))
            self.carried_rows += rows.num_rows
        self._check_intact(previous)  # nothing changed under us while reading
        self.carried_from = previous.export_id
        return self.carried_rows

    def _deleted_by_pipeline(self, gone: pa.Table, audited: pa.Table | None, previous: lake.Manifest) -> pa.Table:
        """The absent rows the pipeline itself deleted (module docstring), by the proof each one has."""
        if redaction_audit.MANIFEST_ENTRY not in (previous.extra or {}):
            return gone  # an export older than the audit: keep every absent row, as before
        if audited is None or audited.num_rows == 0:
            return gone.filter(pc.greater_equal(gone.column("_at"), previous.source_rows))
        key_columns = list(self.table.primary_key)
        listed = pa.table({c: audited.column(c).cast(gone.column(c).type) for c in key_columns})
        listed = listed.group_by(key_columns).aggregate([])
        listed = listed.append_column("_audited", pa.array([True] * listed.num_rows))
        joined = gone.join(listed, keys=key_columns, join_type="left outer")
        proven = pc.or_(
            pc.greater_equal(joined.column("_at"), previous.source_rows), pc.is_valid(joined.column("_audited"))
        )
        return joined.filter(proven).drop_columns(["_audited"])

    def _check_intact(self, previous: lake.Manifest) -> None:
        for obj in previous.objects:
            try:
                changed = lake.changed_since_manifest(self.clients.s3, self.bucket, obj)
                problem = f"s3://{self.bucket}/{obj.key} changed since it was published" if changed else None
            except Exception as exc:  # noqa: BLE001 - missing or unreadable: same verdict
                problem = f"s3://{self.bucket}/{obj.key} cannot be read ({exc.__class__.__name__})"
            if problem:
                raise CarryOverError(
                    f"table {self.table.name} day {self.day}: {problem}. The published export "
                    f"{previous.export_id} may hold the only copy of rows already redacted from PostgreSQL, so "
                    "re-exporting now could lose them; nothing was published. Restore the object (the bucket "
                    "keeps noncurrent versions; the manifest lists the version ids), then re-run. If nothing of "
                    f"this day was ever redacted (no redaction/{self.table.name} materialization for it), remove "
                    f"the Glue partition dt={self.day} to re-export from PostgreSQL alone."
                )

    def _conform(
        self, batch: pa.RecordBatch, schema: pa.Schema, previous_columns: dict, export_id: str
    ) -> pa.RecordBatch:
        """A carried row in the new export's schema, or a refusal naming the column that cannot follow."""
        where = f"table {self.table.name} day {self.day}: {batch.num_rows} row(s) already redacted from PostgreSQL"
        names = set(schema.names)
        for name in batch.schema.names:
            if name not in names and pii.is_exported(self.table, name):
                raise CarryOverError(
                    f"{where} have column {name!r}, which this export no longer has (dropped in PostgreSQL?). "
                    "Re-exporting would lose its values for them; nothing was published. Re-add the column, or "
                    f"declare it `drop` under `pii` if losing it is intended."
                )
        arrays = []
        for target in schema:
            if target.name not in batch.schema.names:
                if not target.nullable:
                    raise CarryOverError(
                        f"{where} predate column {target.name!r}, which is NOT NULL now; they cannot be written "
                        "with it empty. Nothing was published. Make the column nullable in PostgreSQL, or keep "
                        f"the published export of {self.day} as it is."
                    )
                arrays.append(pa.nulls(batch.num_rows, target.type))
                continue
            before = (previous_columns.get(target.name) or {}).get("pii")
            now = self.table.pii.get(target.name)
            if before != now and (pii.protects(before) or pii.protects(now)):
                raise CarryOverError(
                    f"{where}: column {target.name!r} was exported with pii policy {before or 'none'} and is now "
                    f"{now or 'none'}; their values cannot be converted here. Nothing was published; apply the "
                    "new policy to the published days first (rewrite), then re-export."
                )
            array = batch.column(target.name)
            if not array.type.equals(target.type):
                if not _safe_cast(array.type, target.type):
                    raise CarryOverError(
                        f"{where}: column {target.name!r} is {array.type} in export {export_id} and {target.type} "
                        "now, which cannot hold the old values exactly. Nothing was published."
                    )
                array = pc.cast(array, target.type)
            arrays.append(array)
        return pa.RecordBatch.from_arrays(arrays, schema=schema)


# The Arrow side of typemap.SAFE_WIDENINGS (the Glue changes a lake table can absorb).
_ARROW_WIDENINGS = {
    (pa.int16(), pa.int32()),
    (pa.int16(), pa.int64()),
    (pa.int32(), pa.int64()),
    (pa.float32(), pa.float64()),
}


def _safe_cast(old: pa.DataType, new: pa.DataType) -> bool:
    if (old, new) in _ARROW_WIDENINGS:
        return True
    if pa.types.is_decimal(old) and pa.types.is_decimal(new):
        return old.scale == new.scale and new.precision >= old.precision
    if pa.types.is_list(old) and pa.types.is_list(new):
        return old.value_type.equals(new.value_type) or _safe_cast(old.value_type, new.value_type)
    return False
