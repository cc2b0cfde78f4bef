"""Blocking checks on each exported day; redaction re-runs the same verification itself.

Each run of the checks also records its verdict as an AssetObservation of the day (`weward/export_checks`:
which checks passed, on which export). Redaction and `redact-due` read the verdict through Dagster's
public API (`DagsterInstance.fetch_observations`): Dagster 1.13 has no public query of check results
by partition. Observations do not count as updates of the asset (no redaction is re-requested by them).
"""

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
CHECK_NAMES = {
    "row_count": "row_count_matches_source",
    "objects": "glue_points_at_export",
    "schema": "glue_schema_matches_files",
}


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


VERDICT = "weward/export_checks"


def verdict_observation(table: str, day: str, verification: Verification, names) -> dg.AssetObservation:
    """The checks' verdict for one day, readable with the public API (module docstring)."""
    verdict = {name: verification.passed(check) for check, name in CHECK_NAMES.items() if name in names}
    export_id = verification.manifest.export_id if verification.manifest is not None else ""
    return dg.AssetObservation(
        asset_key=lake_key(table),
        partition=day,
        metadata={VERDICT: dg.MetadataValue.json(verdict), "export_id": dg.MetadataValue.text(export_id)},
    )


def latest_verdicts(
    instance: dg.DagsterInstance, table: str, day: str, limit: int = 50
) -> dict[str, tuple[bool, str, str]]:
    """{check name: (passed, export id checked, run id)} from the newest verdict naming each check."""
    records = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=lake_key(table), asset_partitions=[day]), limit=limit
    ).records
    found: dict[str, tuple[bool, str, str]] = {}
    for record in records:  # newest first
        metadata = record.asset_observation.metadata
        if VERDICT not in metadata:
            continue
        for name, passed in metadata[VERDICT].value.items():
            found.setdefault(name, (bool(passed), metadata["export_id"].value, record.run_id))
    return found


def check_evaluations(table: str, day: str, verification: Verification) -> list[dg.AssetCheckEvaluation]:
    """The blocking checks' results for a publish that no export run checked (an erasure's rewrite):
    the same verification and metadata as the checks, recorded for the day's partition, so the
    redaction (which wants results for the export published now) proceeds by itself."""
    return [
        dg.AssetCheckEvaluation(
            asset_key=lake_key(table),
            check_name=name,
            passed=verification.passed(check),
            metadata=_metadata(verification, check),
            severity=dg.AssetCheckSeverity.ERROR,
            blocking=True,
            partition=day,
        )
        for check, name in CHECK_NAMES.items()
    ]


def export_checks(table: TableConfig, catalog: Catalog) -> list[dg.AssetChecksDefinition]:
    """The three checks share one verification pass (one manifest read, one footer read per object)."""
    specs = [
        dg.AssetCheckSpec(
            name,
            asset=lake_key(table.name),
            description=CHECK_DESCRIPTIONS[check],
            blocking=True,
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
        context.op_execution_context.log_event(
            verdict_observation(table.name, context.partition_key, verification, selected)
        )
        for check, name in CHECK_NAMES.items():
            if name in selected:
                yield dg.AssetCheckResult(
                    check_name=name,
                    asset_key=lake_key(table.name),
                    passed=verification.passed(check),
                    metadata=_metadata(verification, check),
                )

    return [_verify]
