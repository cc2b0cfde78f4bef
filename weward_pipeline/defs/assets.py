"""One table config -> `postgres/<name>` (external source) and `lake/<name>` (the daily export)."""

import datetime as dt
import os
import re
from dataclasses import replace
from pathlib import Path

import dagster as dg

from weward_pipeline import pii
from weward_pipeline.config import Catalog, ConfigError, TableConfig
from weward_pipeline.config import aws_region as region_from_env
from weward_pipeline.config import glue_database as glue_database_from_env
from weward_pipeline.defs.failures import as_failure
from weward_pipeline.defs.resources import LakeResource, PacingConfig
from weward_pipeline.export import ExportError, ExportResult, export_day
from weward_pipeline.extract import SourceError
from weward_pipeline.glue import CatalogError
from weward_pipeline.standby import StandbyConflictError

# All exports share one pool: PostgreSQL is one server, and a 90-day backfill of 6 tables must
# not open 540 connections to it. The limit lives in dagster.yaml (default 2).
SOURCE_POOL = "postgres_source"

# Errors that retrying cannot fix: bad config, missing column, incompatible schema, refused day.
# Unless their cause is transient (weward_pipeline.failures): a SourceError "cannot connect" from
# a failover or an ExportError around an S3 503 is worth the retry.
PERMANENT_ERRORS = (ConfigError, SourceError, CatalogError, ExportError, StandbyConflictError)

# Transient failures (connection reset, S3 5xx, a failover) are retried with backoff: ~30 s, 60 s,
# 120 s; a failover or an S3 throttling episode is over by then.
EXPORT_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def lake_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["lake", table])


def source_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["postgres", table])


def group_for(table: TableConfig, layer: str) -> str:
    """The asset's group in the UI: its layer (postgres, lake, redaction), so the lineage sidebar, which
    shows only the last part of an asset key, tells postgres/t, lake/t and redaction/t apart. Tables
    of a schema other than public get their own groups (lake_<schema>...)."""
    if table.schema == "public":
        return layer
    return f"{layer}_{re.sub(r'[^A-Za-z0-9_]', '_', table.schema)}"


def daily_partitions(catalog: Catalog) -> dg.DailyPartitionsDefinition:
    # Partition keys are local dates of the catalog's time zone; the newest is yesterday there.
    return dg.DailyPartitionsDefinition(start_date=catalog.start_date.isoformat(), timezone=catalog.timezone)


def catalog_reference(table: TableConfig, catalog: Catalog | None) -> dict:
    """The table's entry in the catalog YAML, where its mode, owners and retention are changed."""
    if catalog is None or not catalog.path or not Path(catalog.path).is_file():
        return {}
    path = Path(catalog.path).resolve()
    entry = re.compile(rf"^\s*-?\s*name:\s*[\"']?{re.escape(table.name)}[\"']?\s*(#.*)?$")
    lines = path.read_text().splitlines()
    line = next((n for n, text in enumerate(lines, start=1) if entry.match(text)), 1)
    reference = dg.LocalFileCodeReference(file_path=str(path), line_number=line, label=f"{table.name} in {path.name}")
    return {"dagster/code_references": dg.CodeReferencesMetadataValue(code_references=[reference])}


def glue_metadata(table: TableConfig) -> dict:
    """Where analysts find the table: its Glue name and console page (Athena queries it by that name).

    No console link on a local endpoint (AWS_ENDPOINT_URL, the local stack): it would open the real
    AWS console, where this table does not exist.
    """
    region = region_from_env()
    database = glue_database_from_env()
    metadata = {"dagster/table_name": f"{database}.{table.name}"}
    if not os.environ.get("AWS_ENDPOINT_URL"):
        metadata["glue_console"] = dg.MetadataValue.url(glue_console_url(region, database, table.name))
    return metadata


def source_asset(table: TableConfig, catalog: Catalog | None = None) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=source_key(table.name),
        description=f"PostgreSQL table {table.qualified_source} (production; read only by the export).",
        group_name=group_for(table, "postgres"),
        kinds={"postgres"},
        owners=list(table.owners),
        metadata={
            "postgres/table": table.qualified_source,
            "primary_key": ", ".join(table.primary_key),
            **catalog_reference(table, catalog),
        },
    )


def glue_console_url(region: str, database: str, table: str) -> str:
    return (
        f"https://{region}.console.aws.amazon.com/glue/home?region={region}"
        f"#/v2/data-catalog/tables/view/{table}?database={database}"
    )


def pii_metadata(table: TableConfig) -> dict:
    """What the UI says about personal data: which columns are pseudonymized, dropped, generalized."""
    if not table.pii:
        return {}
    return {**pii.ui_metadata(table), "pii/user_column": table.user_column or "none"}


def export_metadata(result: ExportResult, lake: LakeResource) -> dict:
    policies = {c["name"]: c.get("pii") for c in result.source_columns}
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=c.type,
                description=f"PostgreSQL {c.comment}",
                tags={"pii": policies[c.name]} if policies.get(c.name) else None,
            )
            for c in result.columns
        ]
    )
    metadata = {
        "dagster/row_count": dg.MetadataValue.int(result.rows),
        "dagster/column_schema": schema,
        "dagster/table_name": dg.MetadataValue.text(f"{result.glue_database}.{result.glue_table}"),
        "bytes": dg.MetadataValue.int(result.bytes),
        "s3_location": dg.MetadataValue.text(result.location),
        "manifest": dg.MetadataValue.text(result.manifest_url),
        "export_id": dg.MetadataValue.text(result.export_id),
        "glue_table": dg.MetadataValue.text(f"{result.glue_database}.{result.glue_table}"),
        "files": dg.MetadataValue.int(len(result.objects)),
        "duration_s": dg.MetadataValue.float(round(result.duration_s, 3)),
        "postgres_read_s": dg.MetadataValue.float(round(result.read_s, 3)),
        "superseded_objects_deleted": dg.MetadataValue.int(result.superseded_deleted),
        # Primary or standby (how far it had replayed, how long the export waited), reads, conflicts.
        "source": dg.MetadataValue.json(result.source),
        # Batches read, work and sleep seconds, back-offs and the signals that caused them.
        "pacing": dg.MetadataValue.json(result.pacing),
        "carried_rows": dg.MetadataValue.int(result.carried_rows),
        "dropped_rows": dg.MetadataValue.int(result.dropped_rows),
    }
    if not lake.aws_endpoint_url:  # a local endpoint has no console page
        metadata["glue_console"] = dg.MetadataValue.url(
            glue_console_url(lake.aws_region, result.glue_database, result.glue_table)
        )
    if result.window:
        metadata.update(
            window_start=dg.MetadataValue.text(result.window["start"]),
            window_end=dg.MetadataValue.text(result.window["end"]),
            window_timezone=dg.MetadataValue.text(result.window["timezone"]),
        )
    if result.snapshot_at:
        metadata["snapshot_at"] = dg.MetadataValue.text(result.snapshot_at)
    return metadata


class ExportConfig(dg.Config):
    """Per-run knobs of an export: its pacing (over the table's `pacing:` in the catalog)."""

    pacing: PacingConfig = PacingConfig()


def restatement_metadata(result: ExportResult, table: TableConfig, tags) -> dict:
    """A re-export: why it ran (the restatement schedule's tag) and what it changed (rows added, changed, deleted)."""
    from weward_pipeline.defs.restatement import restated_because

    metadata = {}
    why = restated_because(dict(tags), table.name)
    if why:
        metadata["restated_because"] = dg.MetadataValue.text(why)
    if result.changes is not None:
        changed = result.changes["rows_changed"]
        metadata.update(
            previous_export_id=dg.MetadataValue.text(result.changes["previous_export_id"]),
            rows_added=dg.MetadataValue.int(result.changes["rows_added"]),
            rows_deleted=dg.MetadataValue.int(result.changes["rows_deleted"]),
            rows_changed=dg.MetadataValue.int(changed)
            if changed is not None
            else dg.MetadataValue.text("not measured (no updated_column)"),
        )
    return metadata


def lake_asset(
    table: TableConfig, catalog: Catalog, retry_policy: dg.RetryPolicy = EXPORT_RETRY_POLICY
) -> dg.AssetsDefinition:
    description = (
        (table.description or f"Daily {table.mode} export of {table.qualified_source}.")
        + (
            f"\n\nPartition D holds the rows whose `{table.partition_column}` falls in day D ({catalog.timezone})."
            if table.mode == "append"
            else "\n\nPartition D holds the whole table as it stood when D was exported (just after D ended)."
        )
        + (f"\n\n{pii.description_note(table)}" if table.pii else "")
    )

    @dg.asset(
        key=lake_key(table.name),
        deps=[source_key(table.name)],
        partitions_def=daily_partitions(catalog),
        # Backfills: one run per day, on purpose. A 90-day backfill of 6 tables is 90 runs of 6
        # exports (not 540); each day gets its own materialization metadata, checks, retries and
        # red/green partition in the UI, and a failed day is re-run alone. A single-run backfill
        # would hand the asset a range and one materialization for all of it. Load on PostgreSQL
        # is bounded by the pool (2 exports at once), the run queue by dagster.yaml (2 backfill runs).
        # No explicit BackfillPolicy: without one, Dagster launches one run per partition tagged
        # `dagster/partition`. BackfillPolicy.multi_run(max_partitions_per_run=1) launches the same
        # runs but tags them as one-day *ranges*, and Dagster 1.13 then records the partitioned
        # check results without their day: the blocking checks of a backfilled day never count as
        # passed, so redaction automation never redacts it (test_ui_backfill caught this).
        backfill_policy=None,
        retry_policy=retry_policy,
        pool=SOURCE_POOL,
        group_name=group_for(table, "lake"),
        kinds={"postgres", "s3", "parquet", "glue"},
        owners=list(table.owners),
        tags={"weward/mode": table.mode},
        description=description,
        metadata={
            "source": table.qualified_source,
            "mode": table.mode,
            "partition_column": table.partition_column or "(whole table)",
            "timezone": catalog.timezone,
            **pii_metadata(table),
            **glue_metadata(table),
            **catalog_reference(table, catalog),
        },
        code_version="1",
    )
    def _export(context: dg.AssetExecutionContext, config: ExportConfig, lake: LakeResource) -> dg.MaterializeResult:
        day = dt.date.fromisoformat(context.partition_key)
        try:
            result = export_day(
                lake.settings(),
                catalog,
                table,
                day,
                clients=lake.clients(),
                limits=replace(lake.limits(), pacing=config.pacing.overrides()),
                on_progress=context.log.info,
            )
        except Exception as exc:  # noqa: BLE001 - classified: retried only if transient
            raise as_failure(
                exc, where=f"table {table.name} day {day}", known=PERMANENT_ERRORS, log=context.log
            ) from None
        return dg.MaterializeResult(
            metadata={
                **export_metadata(result, lake),
                **pii_metadata(table),
                **restatement_metadata(result, table, context.run.tags),
            }
        )

    return _export
