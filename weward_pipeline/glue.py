"""The AWS Glue Data Catalog side: database, tables (Parquet, partitioned by `dt`) and partitions.

Publishing a day is one `create_partition`/`update_partition` call that points the `dt`
partition at a new version prefix: that is the atomic moment readers switch from the old day
to the new one. Schema evolution is additive; an incompatible type change is refused before
anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from weward_pipeline.lake import COMPRESSION
from weward_pipeline.typemap import is_compatible_change

PARTITION_KEY = "dt"
PARQUET_STORAGE = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        "Parameters": {"serialization.format": "1"},
    },
}


class CatalogError(RuntimeError):
    """Glue cannot take this export as it is (e.g. an incompatible column type change)."""


@dataclass(frozen=True)
class GlueColumn:
    name: str
    type: str
    comment: str = ""

    def as_api(self) -> dict:
        column = {"Name": self.name, "Type": self.type}
        if self.comment:
            column["Comment"] = self.comment[:255]
        return column


class GlueCatalog:
    def __init__(self, client, database: str) -> None:
        self.client = client
        self.database = database
        self._errors = client.exceptions

    def ensure_database(
        self, description: str = "weward_pipeline lake: PostgreSQL exports, one table per source table"
    ) -> None:
        try:
            self.client.get_database(Name=self.database)
        except self._errors.EntityNotFoundException:
            try:
                self.client.create_database(DatabaseInput={"Name": self.database, "Description": description})
            except self._errors.AlreadyExistsException:
                pass

    def get_table(self, name: str) -> dict | None:
        try:
            return self.client.get_table(DatabaseName=self.database, Name=name)["Table"]
        except self._errors.EntityNotFoundException:
            return None

    def table_columns(self, name: str) -> list[GlueColumn] | None:
        table = self.get_table(name)
        if table is None:
            return None
        return [GlueColumn(c["Name"], c["Type"], c.get("Comment", "")) for c in table["StorageDescriptor"]["Columns"]]

    def plan_columns(self, name: str, columns: list[GlueColumn]) -> list[GlueColumn]:
        """The table's columns after this export: existing order kept, new columns appended,
        safe widenings applied. Raises CatalogError for an incompatible change. Writes nothing."""
        existing = self.table_columns(name)
        if existing is None:
            return list(columns)
        incoming = {c.name: c for c in columns}
        problems = []
        merged = []
        for old in existing:
            new = incoming.pop(old.name, None)
            if new is None:
                merged.append(old)  # dropped in PostgreSQL: older days still have it
            elif not is_compatible_change(old.type, new.type):
                problems.append(
                    f"table {name}: column {old.name!r} is {old.type} in Glue but the source now gives "
                    f"{new.type}; this would make published days unreadable. Nothing was published. "
                    "Rename the column in PostgreSQL or migrate the lake table deliberately."
                )
            else:
                merged.append(new)
        if problems:
            raise CatalogError("\n".join(problems))
        merged.extend(c for c in columns if c.name in incoming)
        return merged

    def ensure_table(
        self,
        name: str,
        location: str,
        columns: list[GlueColumn],
        *,
        description: str = "",
        parameters: dict[str, str] | None = None,
    ) -> list[GlueColumn]:
        merged = self.plan_columns(name, columns)
        table_input = {
            "Name": name,
            "Description": description[:2048],
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {
                "classification": "parquet",
                "EXTERNAL": "TRUE",
                "parquet.compression": COMPRESSION.upper(),
                **(parameters or {}),
            },
            "PartitionKeys": [
                {"Name": PARTITION_KEY, "Type": "string", "Comment": "export day (catalog time zone), YYYY-MM-DD"}
            ],
            "StorageDescriptor": {"Columns": [c.as_api() for c in merged], "Location": location, **PARQUET_STORAGE},
        }
        existing = self.get_table(name)
        if existing is None:
            try:
                self.client.create_table(DatabaseName=self.database, TableInput=table_input)
                return merged
            except self._errors.AlreadyExistsException:
                existing = self.get_table(name)
        old_columns = existing["StorageDescriptor"]["Columns"]
        if (
            old_columns != table_input["StorageDescriptor"]["Columns"]
            or existing.get("Description", "") != table_input["Description"]
            or {k: existing.get("Parameters", {}).get(k) for k in table_input["Parameters"]}
            != table_input["Parameters"]
        ):
            self.client.update_table(DatabaseName=self.database, TableInput=table_input)
        return merged

    def get_partition(self, table: str, day: str) -> dict | None:
        try:
            return self.client.get_partition(DatabaseName=self.database, TableName=table, PartitionValues=[day])[
                "Partition"
            ]
        except self._errors.EntityNotFoundException:
            return None

    def publish_partition(
        self, table: str, day: str, location: str, columns: list[GlueColumn], parameters: dict[str, str]
    ) -> None:
        """Point partition dt=day at `location`: the atomic switch for readers."""
        partition_input = {
            "Values": [day],
            "StorageDescriptor": {"Columns": [c.as_api() for c in columns], "Location": location, **PARQUET_STORAGE},
            "Parameters": parameters,
        }
        if self.get_partition(table, day) is None:
            try:
                self.client.create_partition(
                    DatabaseName=self.database, TableName=table, PartitionInput=partition_input
                )
                return
            except self._errors.AlreadyExistsException:
                pass
        self.client.update_partition(
            DatabaseName=self.database, TableName=table, PartitionValueList=[day], PartitionInput=partition_input
        )

    def list_partitions(self, table: str) -> list[dict]:
        partitions = []
        paginator = self.client.get_paginator("get_partitions")
        try:
            for page in paginator.paginate(DatabaseName=self.database, TableName=table):
                partitions.extend(page["Partitions"])
        except self._errors.EntityNotFoundException:
            return []
        return sorted(partitions, key=lambda p: p["Values"][0])
