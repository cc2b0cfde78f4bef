"""Read a table back the way Athena would: through the Glue catalog, partition by partition."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from weward_pipeline.glue import GlueCatalog


def glue_partitions(glue: GlueCatalog, table: str) -> dict[str, dict]:
    return {p["Values"][0]: p for p in glue.list_partitions(table)}


def read_partition(filesystem, partition: dict) -> pa.Table:
    """All Parquet objects under the partition's Glue location (what Athena scans)."""
    location = partition["StorageDescriptor"]["Location"].removeprefix("s3://").rstrip("/")
    dataset = ds.dataset(location, filesystem=filesystem, format="parquet")
    return dataset.to_table()


def read_table(glue: GlueCatalog, filesystem, table: str, day: str | None = None) -> pa.Table:
    parts = []
    for value, partition in glue_partitions(glue, table).items():
        if day is not None and value != day:
            continue
        part = read_partition(filesystem, partition)
        parts.append(part.append_column("dt", pa.array([value] * part.num_rows, pa.string())))
    if not parts:
        raise AssertionError(f"no Glue partition for {table} {day or ''}")
    return pa.concat_tables(parts, promote_options="permissive")


def glue_column_types(glue: GlueCatalog, table: str) -> dict[str, str]:
    return {c.name: c.type for c in glue.table_columns(table)}


def parquet_row_counts(filesystem, partition: dict) -> int:
    location = partition["StorageDescriptor"]["Location"].removeprefix("s3://").rstrip("/")
    infos = filesystem.get_file_info(__import__("pyarrow.fs", fromlist=["FileSelector"]).FileSelector(location))
    return sum(pq.read_metadata(i.path, filesystem=filesystem).num_rows for i in infos if i.is_file)
