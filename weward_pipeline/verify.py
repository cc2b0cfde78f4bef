"""Verify a published day against its manifest: what Glue points at is exactly what was exported.

Used by the blocking asset checks after each export, and again by redaction right before it
deletes anything (a check result in Dagster's event log may be days old; S3 is what counts).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from weward_pipeline import lake
from weward_pipeline.glue import GlueCatalog
from weward_pipeline.typemap import is_compatible_change

CHECKS = ("row_count", "objects", "schema")


@dataclass
class Verification:
    table: str
    day: str
    problems: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in CHECKS})
    manifest: lake.Manifest | None = None
    partition: dict | None = None
    parquet_rows: int | None = None

    def fail(self, check: str, message: str) -> None:
        self.problems[check].append(message)

    def passed(self, check: str | None = None) -> bool:
        if check is not None:
            return not self.problems[check]
        return not any(self.problems.values())

    def summary(self) -> str:
        lines = [f"{check}: {msg}" for check, messages in self.problems.items() for msg in messages]
        return "; ".join(lines) if lines else "ok"


def _split_s3(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def published_manifest(glue: GlueCatalog, s3_client, table: str, day: str) -> tuple[dict | None, lake.Manifest | None]:
    partition = glue.get_partition(table, day)
    if partition is None:
        return None, None
    manifest_url = partition.get("Parameters", {}).get("weward.manifest")
    if not manifest_url:
        return partition, None
    bucket, key = _split_s3(manifest_url)
    try:
        return partition, lake.read_manifest(s3_client, bucket, key)
    except ClientError:
        return partition, None


def verify_published_day(glue: GlueCatalog, s3_client, filesystem, table: str, day: dt.date | str) -> Verification:
    day = day.isoformat() if isinstance(day, dt.date) else day
    result = Verification(table=table, day=day)
    partition, manifest = published_manifest(glue, s3_client, table, day)
    result.partition, result.manifest = partition, manifest
    if partition is None:
        for check in CHECKS:
            result.fail(check, f"no Glue partition {table}/dt={day}: the day was never published")
        return result
    if manifest is None:
        for check in CHECKS:
            result.fail(check, f"Glue partition {table}/dt={day} has no readable manifest (weward.manifest)")
        return result

    location = partition["StorageDescriptor"]["Location"]
    if location.rstrip("/") != manifest.location.rstrip("/"):
        result.fail("objects", f"Glue points at {location}, the manifest describes {manifest.location}")
    if partition.get("Parameters", {}).get("weward.export_id") != manifest.export_id:
        result.fail("objects", "Glue partition and manifest name different exports")

    bucket, prefix = _split_s3(manifest.location)
    present = set(lake.list_keys(s3_client, bucket, prefix))
    expected = {o.key for o in manifest.objects}
    for extra in sorted(present - expected):
        result.fail("objects", f"unexpected object s3://{bucket}/{extra} in the published prefix")
    parquet_rows = 0
    file_schema = None
    for obj in manifest.objects:
        if obj.key not in present:
            result.fail("objects", f"object s3://{bucket}/{obj.key} is missing")
            continue
        changed = lake.changed_since_manifest(s3_client, bucket, obj)
        if changed:
            result.fail("objects", f"object s3://{bucket}/{obj.key} changed since export: {changed}")
            continue
        try:
            metadata = pq.read_metadata(f"{bucket}/{obj.key}", filesystem=filesystem)
        except Exception as exc:  # noqa: BLE001 - a corrupt footer is exactly what we look for
            result.fail("objects", f"object s3://{bucket}/{obj.key} is not readable Parquet: {exc}")
            continue
        if metadata.num_rows != obj.rows:
            result.fail("row_count", f"{obj.key} holds {metadata.num_rows} rows, manifest says {obj.rows}")
        parquet_rows += metadata.num_rows
        file_schema = file_schema or metadata.schema.to_arrow_schema()
    result.parquet_rows = parquet_rows
    if result.passed("objects"):
        if parquet_rows != manifest.source_rows + manifest.carried_rows:
            carried = (
                (
                    f" plus {manifest.carried_rows} carried over from the previous export (already redacted "
                    "from PostgreSQL)"
                )
                if manifest.carried_rows
                else ""
            )
            result.fail(
                "row_count",
                f"Parquet holds {parquet_rows} rows, the source window held {manifest.source_rows} at export time{carried}",
            )
    else:
        result.fail("row_count", "objects do not match the manifest, rows cannot be counted")

    glue_columns = {c["Name"]: c["Type"] for c in partition["StorageDescriptor"]["Columns"]}
    table_columns = {c.name: c.type for c in (glue.table_columns(table) or [])}
    for column in manifest.columns:
        name, expected_type = column["name"], column["glue_type"]
        if glue_columns.get(name) != expected_type:
            result.fail(
                "schema",
                f"column {name!r}: Glue partition says {glue_columns.get(name)}, the files hold {expected_type}",
            )
        if name not in table_columns or not is_compatible_change(expected_type, table_columns[name]):
            result.fail(
                "schema", f"column {name!r}: Glue table says {table_columns.get(name)}, the files hold {expected_type}"
            )
    if file_schema is not None:
        file_names = list(file_schema.names)
        manifest_names = [c["name"] for c in manifest.columns]
        if file_names != manifest_names:
            result.fail("schema", f"file columns {file_names} differ from the manifest's {manifest_names}")
    return result
