"""Blocking checks on each exported day; redaction re-runs the same verification itself."""


import dagster as dg

from weward_pipeline.config import Catalog, TableConfig
from weward_pipeline.defs.assets import daily_partitions, lake_key
from weward_pipeline.defs.resources import LakeResource
from weward_pipeline.verify import Verification, verify_published_day

CHECK_DESCRIPTIONS = {
    "row_count": "Rows in the published Parquet objects equal the rows of the source window at export time "
                 "(plus, for tables with retention_days, the rows carried over because redaction already deleted them).",
    "objects": "The Glue partition points at exactly the objects the export wrote (present, same size and ETag).",
    "schema": "Glue's partition and table columns match the Parquet files' schema.",
}
CHECK_NAMES = {"row_count": "row_count_matches_source", "objects": "glue_points_at_export", "schema": "glue_schema_matches_files"}


def _metadata(verification: Verification, check: str) -> dict:
    metadata: dict = {"problems": dg.MetadataValue.text("\n".join(verification.problems[check]) or "none")}
    if verification.manifest is not None:
        metadata.update(
            export_id=dg.MetadataValue.text(verification.manifest.export_id),
            source_rows=dg.MetadataValue.int(verification.manifest.source_rows),
            carried_rows=dg.MetadataValue.int(verification.manifest.carried_rows),
            location=dg.MetadataValue.text(verification.manifest.location),
        )
    if verification.parquet_rows is not None:
        metadata["parquet_rows"] = dg.MetadataValue.int(verification.parquet_rows)
    return metadata


def check_evaluations(table: str, day: str, verification: Verification) -> list[dg.AssetCheckEvaluation]:
    """The blocking checks' results for a publish that no export run checked (an erasure's rewrite):
    the same verification and metadata as the checks, recorded for the day's partition, so the
    redaction (which wants results for the export published now) proceeds by itself."""
    return [
        dg.AssetCheckEvaluation(
            asset_key=lake_key(table), check_name=name, passed=verification.passed(check),
            metadata=_metadata(verification, check), severity=dg.AssetCheckSeverity.ERROR, blocking=True,
            partition=day,
        )
        for check, name in CHECK_NAMES.items()
    ]


def export_checks(table: TableConfig, catalog: Catalog) -> list[dg.AssetChecksDefinition]:
    """The three checks share one verification pass (one manifest read, one footer read per object)."""
    specs = [
        dg.AssetCheckSpec(
            name, asset=lake_key(table.name), description=CHECK_DESCRIPTIONS[check], blocking=True,
            partitions_def=daily_partitions(catalog),
        )
        for check, name in CHECK_NAMES.items()
    ]

    @dg.multi_asset_check(name=f"verify_{table.name}_export", specs=specs, can_subset=True)
    def _verify(context: dg.AssetCheckExecutionContext, lake: LakeResource):
        clients = lake.clients()
        verification = verify_published_day(
            lake.glue(clients), clients.s3, clients.filesystem, table.name, context.partition_key
        )
        selected = {key.name for key in context.selected_asset_check_keys}
        for check, name in CHECK_NAMES.items():
            if name in selected:
                yield dg.AssetCheckResult(
                    check_name=name, asset_key=lake_key(table.name),
                    passed=verification.passed(check), metadata=_metadata(verification, check),
                )

    return [_verify]
