"""What redaction deleted from PostgreSQL, written where a later export can prove it.

A re-export of day D (a restatement, a backfill) must keep in the lake the rows that redaction
deleted from PostgreSQL (the lake then holds their only copy), and only those: a row the app
deleted, or whose partition column moved to another day, must leave D. Counting and fingerprints
cannot tell these apart once the row is gone; redaction's own record can. So every redaction batch
writes the primary keys it deletes to one small Parquet object:

    s3://bucket/prefix/_audit/redaction/<table>/dt=<day>/<export_id>/<run>-<batch>.parquet

and the export reads every object under the day's prefix (keys.py, carry-over).

Why in the lake, written by redaction:
  - the proof lives with the data it protects and with the export that needs it, whatever ran the
    redaction (the Dagster asset, `redact-due`, `weward-pipeline redact --execute`), and outlives
    Dagster's event log retention;
  - least privilege stays: the redaction role gets s3:PutObject on this prefix only (no delete, no
    overwrite of data, manifests or keys); the export role already reads the lake prefix. Neither
    role writes PostgreSQL tables of its own (an audit table would need DDL in the app's database);
  - write-ahead: the object is written inside the batch's transaction, after the DELETE and before
    the COMMIT. A batch whose object could not be written is rolled back; a row is never gone from
    PostgreSQL without its key in the lake. A crash between the write and the COMMIT leaves keys of
    rows still in PostgreSQL, which an export ignores (it only carries rows absent from its
    snapshot) unless the app deletes them later: then the lake keeps a row the app deleted after its
    retention, never loses one.

The objects hold primary keys only: no fingerprint (an md5 over a row that includes its user id
would let whoever holds a user id confirm the row), no other column.
"""

from __future__ import annotations

import datetime as dt
import io
import secrets

import pyarrow as pa
import pyarrow.parquet as pq

from weward_pipeline import lake
from weward_pipeline.config import LakeLocation

AUDIT_PREFIX = ("_audit", "redaction")
# Manifests of exports whose redactions write this audit say so; an export of an older version may
# have been redacted without one (keys.py then keeps every row it is unsure of).
MANIFEST_ENTRY = "redaction_audit"
AUDIT_VERSION = 1


def day_prefix(location: LakeLocation, table: str, day: dt.date | str) -> str:
    day = day.isoformat() if isinstance(day, dt.date) else day
    return location.key(*AUDIT_PREFIX, table, f"dt={day}") + "/"


def new_run_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%dT%H%M%S%fZ") + "-r" + secrets.token_hex(3)


class AuditWriter:
    """Redaction side: one object per batch of deleted keys (call `write` before the COMMIT)."""

    def __init__(
        self, filesystem, location: LakeLocation, table: str, day: dt.date, export_id: str, run_id: str | None = None
    ) -> None:
        self.filesystem = filesystem
        self.bucket = location.bucket
        self.prefix = f"{day_prefix(location, table, day)}{export_id}/{run_id or new_run_id()}-"
        self.batches = 0
        self.rows = 0
        self.objects: list[str] = []

    def write(self, keys: pa.Table | pa.RecordBatch) -> str | None:
        if keys.num_rows == 0:
            return None
        table = keys if isinstance(keys, pa.Table) else pa.Table.from_batches([keys])
        key = f"{self.prefix}{self.batches:06d}.parquet"
        with lake.parquet_writer(f"{self.bucket}/{key}", table.schema, self.filesystem) as writer:
            writer.write_table(table)
        self.batches += 1
        self.rows += table.num_rows
        self.objects.append(key)
        return key


def read_deleted_keys(
    s3_client, filesystem, location: LakeLocation, table: str, day: dt.date | str, primary_key: list[str]
) -> pa.Table | None:
    """Every key redaction ever deleted from the day (all runs, all exports); None when there is none."""
    keys = [
        k
        for k in lake.list_keys(s3_client, location.bucket, day_prefix(location, table, day))
        if k.endswith(".parquet")
    ]
    if not keys:
        return None
    parts = [pq.read_table(f"{location.bucket}/{key}", filesystem=filesystem, columns=primary_key) for key in keys]
    return pa.concat_tables(parts, promote_options="permissive")


def count_deleted_since(s3_client, location: LakeLocation, table: str, day: dt.date | str, export_id: str) -> int:
    """Rows redaction deleted against export `export_id` (from the objects' footers, not their rows)."""
    prefix = f"{day_prefix(location, table, day)}{export_id}/"
    total = 0
    for key in lake.list_keys(s3_client, location.bucket, prefix):
        body = s3_client.get_object(Bucket=location.bucket, Key=key)["Body"].read()
        total += pq.ParquetFile(io.BytesIO(body)).metadata.num_rows
    return total
