"""The Glue side, shared by both engines: the tables a query may name, and Glue type -> Arrow type.

A table is what its Glue entry says (columns, `dt` partitions, each partition's S3 location).
Snapshot tables (Glue parameter `weward.mode = snapshot`) also get `<name>_latest`: the latest
exported day. Locally it is a view; for Athena, `latest_view_sql` is the CREATE VIEW statement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from weward_pipeline.query.errors import QueryError

ATHENA_CATALOG = "AwsDataCatalog"
LATEST_SUFFIX = "_latest"
# Catalogs/schemas a query may name besides the Glue database.
SYSTEM_SCHEMAS = {"information_schema", "pg_catalog"}


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
            f"Glue database {database} does not exist: export a day first (on the local stack: weward-pipeline "
            "demo --keep, which keeps the stack and its exports), or set WEWARD_GLUE_DATABASE to the lake's database"
        ) from None
    return tables


def queryable_names(tables: dict[str, LakeTable]) -> list[str]:
    """What a query may name: tables, Athena views, and the `<name>_latest` views of snapshot tables."""
    names = set(tables)
    names.update(latest_view_name(t.name) for t in tables.values() if t.mode == "snapshot" and not t.is_view)
    return sorted(names)


# Glue type -> Arrow type (the inverse of typemap, for any Hive type Glue may hold).

_SIMPLE_TYPES = {
    "tinyint": pa.int8(),
    "smallint": pa.int16(),
    "int": pa.int32(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "float": pa.float32(),
    "real": pa.float32(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
    "binary": pa.binary(),
    "date": pa.date32(),
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


def partition_value(value: str, glue_type: str) -> pa.Scalar:
    """Glue stores partition values as text; the dataset compares them in the key's own type."""
    return pa.scalar(value, pa.string()).cast(glue_type_to_arrow(glue_type))
