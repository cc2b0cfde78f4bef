"""Parquet objects in the lake: where a (table, day) lives, how it is written, its manifest.

Layout (every export of a day gets a fresh version prefix; Glue's partition is the pointer):

    s3://bucket/prefix/<table>/dt=<day>/v=<export_id>/part-00000.parquet
    s3://bucket/prefix/_manifests/<table>/dt=<day>/<export_id>.json
    s3://bucket/prefix/_manifests/<table>/dt=<day>/<export_id>.keys/part-00000.parquet  (retention tables: keys.py)

Writing into a new prefix means a failed or killed export never touches the published day;
the switch happens in Glue (one API call), and superseded prefixes are deleted afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import secrets
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from weward_pipeline.aws import s3_filesystem  # noqa: F401 - owned by aws.py; re-exported for existing callers
from weward_pipeline.config import LakeLocation

# zstd: ~30% smaller than snappy on this data at similar speed, and Athena reads it.
COMPRESSION = "zstd"
MAX_ROWS_PER_FILE = 5_000_000
# A column stops dictionary-encoding once its dictionary outgrows this (pyarrow's default: 1 MB).
# Low-cardinality columns (enums, versions, flags) still fit; ids, timestamps and uuids give up
# early instead of hashing 128k values per row group first. 2M step_events rows: Parquet
# encoding 3.1 -> 1.5 s of CPU and 82 -> 73 MB (bench/).
DICTIONARY_PAGE_LIMIT = 64 * 1024
MANIFEST_VERSION = 1


def new_export_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def table_prefix(lake: LakeLocation, table: str) -> str:
    return lake.key(table) + "/"


def day_prefix(lake: LakeLocation, table: str, day: dt.date) -> str:
    return lake.key(table, f"dt={day.isoformat()}") + "/"


def version_prefix(lake: LakeLocation, table: str, day: dt.date, export_id: str) -> str:
    return lake.key(table, f"dt={day.isoformat()}", f"v={export_id}") + "/"


def manifest_key(lake: LakeLocation, table: str, day: dt.date, export_id: str) -> str:
    return lake.key("_manifests", table, f"dt={day.isoformat()}", f"{export_id}.json")


def keys_prefix_of(manifest_key: str) -> str:
    """Where an export's redaction keys live: beside its manifest, outside the data Athena scans."""
    return manifest_key.removesuffix(".json") + ".keys/"


def keys_prefix(lake: LakeLocation, table: str, day: dt.date, export_id: str) -> str:
    return keys_prefix_of(manifest_key(lake, table, day, export_id))


@dataclass
class WrittenObject:
    key: str
    rows: int
    bytes: int = 0
    etag: str | None = None
    version_id: str | None = None


def parquet_writer(
    path: str, schema: pa.Schema, filesystem: pafs.FileSystem, *, compression: str = COMPRESSION
) -> pq.ParquetWriter:
    """Every Parquet file of the lake (exports, redaction keys, erasure rewrites) is written with these settings."""
    return pq.ParquetWriter(
        path,
        schema,
        filesystem=filesystem,
        compression=compression,
        # Athena and Spark read int64 microsecond timestamps; keep microseconds exact.
        coerce_timestamps="us",
        allow_truncated_timestamps=False,
        write_statistics=True,
        dictionary_pagesize_limit=DICTIONARY_PAGE_LIMIT,
    )


_STOP = object()


class ParquetDayWriter:
    """Streams record batches into Parquet files under one prefix; one batch = one row group.

    Works with any pyarrow filesystem (S3 in production, local disk in the benchmark).
    Encoding runs in a background thread, one batch behind the caller: while pyarrow encodes and
    compresses batch N (without the GIL), the caller already decodes batch N+1 from PostgreSQL
    (2M step_events rows: 6.0 -> 5.3 s, +5 MB peak RSS; bench/). An encoding or upload error is
    raised by the next write() or by close().
    """

    def __init__(
        self,
        filesystem: pafs.FileSystem,
        bucket_path: str,
        schema: pa.Schema,
        *,
        max_rows_per_file: int = MAX_ROWS_PER_FILE,
        compression: str = COMPRESSION,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.filesystem = filesystem
        self.base = bucket_path.rstrip("/")
        self.schema = schema.with_metadata({**(schema.metadata or {}), **(metadata or {})})
        self.max_rows_per_file = max_rows_per_file
        self.compression = compression
        self.objects: list[WrittenObject] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_file = 0
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _open_next(self) -> None:
        path = f"{self.base}/part-{len(self.objects):05d}.parquet"
        self._writer = parquet_writer(path, self.schema, self.filesystem, compression=self.compression)
        self.objects.append(WrittenObject(key=path, rows=0))  # filesystem path; S3: "bucket/key"
        self._rows_in_file = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self._raise_pending()
        if self._thread is None:
            self._thread = threading.Thread(target=self._encode_loop, name="parquet-day-writer", daemon=True)
            self._thread.start()
        self._queue.put(batch)  # waits while one batch is queued and one is being encoded

    def _encode_loop(self) -> None:
        while (batch := self._queue.get()) is not _STOP:
            if self._error is None:
                try:
                    self._write_now(batch)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    self._error = exc

    def _write_now(self, batch: pa.RecordBatch) -> None:
        if self._writer is None or self._rows_in_file >= self.max_rows_per_file:
            self._close_current()
            self._open_next()
        self._writer.write_batch(batch)
        self._rows_in_file += batch.num_rows
        self.objects[-1].rows += batch.num_rows

    def _join(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def _close_current(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> list[WrittenObject]:
        """Finish the files. An empty day still gets one (empty) file, so readers see the schema."""
        self._join()
        self._raise_pending()
        if not self.objects:
            self._open_next()
        self._close_current()
        return self.objects

    def abort(self) -> None:
        self._join()
        try:
            self._close_current()
        except Exception:  # noqa: BLE001 - the stream may already be broken
            pass


@dataclass
class Manifest:
    """What was published for one (table, day): enough to verify the lake later and to audit."""

    table: str
    day: str
    export_id: str
    location: str
    objects: list[WrittenObject]
    rows: int
    source_rows: int
    window: dict[str, str] | None
    columns: list[dict[str, str]]
    mode: str
    created_at: str
    snapshot_at: str | None = None
    extra: dict = field(default_factory=dict)
    # Rows kept from the previous export because redaction already deleted them from PostgreSQL
    # (tables with retention_days; see keys.py). They follow the PostgreSQL rows in the data files,
    # so rows == source_rows + carried_rows.
    carried_rows: int = 0
    version: int = MANIFEST_VERSION

    @property
    def bytes(self) -> int:
        return sum(o.bytes for o in self.objects)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data["objects"] = [WrittenObject(**o) for o in data["objects"]]
        return cls(**data)


def version_id(value: str | None) -> str | None:
    """An S3 version id, or None: S3 says "null" for an object written while versioning was off."""
    return value if value not in (None, "null") else None


def version_args(value: str | None) -> dict:
    """GetObject/HeadObject keyword arguments reading exactly this version (the current one if None)."""
    value = version_id(value)
    return {"VersionId": value} if value else {}


def describe_objects(s3_client, bucket: str, objects: Iterable[WrittenObject]) -> list[WrittenObject]:
    """Fill size, ETag and VersionId from S3 itself: the manifest records what S3 holds."""
    described = []
    for obj in objects:
        head = s3_client.head_object(Bucket=bucket, Key=obj.key)
        described.append(
            WrittenObject(
                key=obj.key,
                rows=obj.rows,
                bytes=head["ContentLength"],
                etag=head["ETag"].strip('"'),
                version_id=version_id(head.get("VersionId")),
            )
        )
    return described


def changed_since_manifest(s3_client, bucket: str, obj: WrittenObject) -> str | None:
    """None while the object is exactly what the manifest recorded (size and ETag); else what it is now.

    HeadObject errors (a missing object) are the caller's to judge.
    """
    head = s3_client.head_object(Bucket=bucket, Key=obj.key)
    size, etag = head["ContentLength"], head["ETag"].strip('"')
    if (size, etag) == (obj.bytes, obj.etag):
        return None
    return f"{size} bytes, ETag {etag} (manifest: {obj.bytes} bytes, ETag {obj.etag})"


def list_keys(s3_client, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def list_versions(s3_client, bucket: str, prefix: str) -> tuple[list[dict], list[dict]]:
    """Every object version and delete marker under `prefix` (versioned buckets keep noncurrent ones)."""
    versions, markers = [], []
    for page in s3_client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        versions.extend(page.get("Versions", []))
        markers.extend(page.get("DeleteMarkers", []))
    return versions, markers


# DeleteObjects takes at most 1000 keys a request.
DELETE_BATCH = 1000


def delete_versions(s3_client, bucket: str, items: list[tuple[str, str | None]]) -> int:
    """Delete (key, version id) pairs, 1000 a request; a None version id deletes the current object
    (in a versioned bucket: adds a delete marker), a version id deletes that version for good."""
    for start in range(0, len(items), DELETE_BATCH):
        chunk = [{"Key": k, **({"VersionId": v} if v else {})} for k, v in items[start : start + DELETE_BATCH]]
        errors = s3_client.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True}).get("Errors") or []
        if errors:
            raise RuntimeError(
                f"could not delete {len(errors)} object(s), first: {errors[0].get('Key')} ({errors[0].get('Code')})"
            )
    return len(items)


def delete_keys(s3_client, bucket: str, keys: list[str]) -> int:
    return delete_versions(s3_client, bucket, [(key, None) for key in keys])


def purge_prefix(s3_client, bucket: str, prefix: str) -> int:
    """Every version and delete marker under `prefix`: gone for good, also from versioned buckets."""
    versions, markers = list_versions(s3_client, bucket, prefix)
    return delete_versions(s3_client, bucket, [(v["Key"], v.get("VersionId")) for v in versions + markers])


def read_manifest(s3_client, bucket: str, key: str) -> Manifest:
    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return Manifest.from_json(body.decode())


def write_manifest(s3_client, bucket: str, key: str, manifest: Manifest) -> None:
    s3_client.put_object(Bucket=bucket, Key=key, Body=manifest.to_json().encode(), ContentType="application/json")
