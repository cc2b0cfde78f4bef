"""`redaction/<table>`: deleting exported rows from PostgreSQL, for tables with `retention_days`.

One daily partition per day, downstream of `lake/<table>` (same partitions). Materializing day D
runs weward_pipeline.redact for D; its metadata is the audit record (what was deleted, what was
kept back and why, the S3 objects and ETags the deletion relied on).

Automation: the `redaction_automation` sensor (running by default) requests day D once
  - D ended more than retention_days ago (same rule as redact.check_redactable),
  - lake/<table> has D and its blocking checks passed,
  - D was never redacted and its last attempt did not fail, or the export of D changed since
    the last redaction (a re-export after rows were kept back),
  - nothing for D is in progress.
`AutomationCondition.eager()` would not do: it only looks at the latest partition (backfilled
days would never be redacted) and ignores blocking checks.

Dry run: run config `{"dry_run": true}` or the run tag `weward/dry_run=true`. It reports what would
be deleted as an observation, in read-only transactions, and materializes nothing (so automation
still redacts the day later).
"""

import datetime as dt

import dagster as dg

from weward_pipeline.config import Catalog, ConfigError, TableConfig
from weward_pipeline.defs.assets import SOURCE_POOL, daily_partitions, group_for, lake_key
from weward_pipeline.defs.checks import CHECK_NAMES, check_evaluations, latest_verdicts, verdict_observation
from weward_pipeline.defs.failures import as_failure
from weward_pipeline.defs.launch import task_definition_tags
from weward_pipeline.defs.resources import LakeResource, PacingConfig
from weward_pipeline.extract import SourceError
from weward_pipeline.redact import (
    CHANGED_SINCE_EXPORT,
    CHECKS_NOT_PASSED,
    INSERTED_AFTER_EXPORT,
    RedactionFailed,
    RedactionLimits,
    RedactionRefused,
    RedactionReport,
    redact_day,
)
from weward_pipeline.verify import verify_published_day

DRY_RUN_TAG = "weward/dry_run"
AUTOMATION_SENSOR = "redaction_automation"
# Labels of the automation condition's branches; `weward-pipeline redact-due` explains skipped days with them.
NEVER_REDACTED = "never redacted (and the last attempt did not fail)"
EXPORT_CHANGED = "export updated since the last redaction"
# On ECS (infra/modules/dagster_service) the daemon's EcsRunLauncher starts every run from the export
# task definition: export role, export DSN, no DELETE. The sensor's runs name the redaction one instead.
REDACTION_TASK_DEFINITION_ENV = "WEWARD_REDACTION_TASK_DEFINITION"
REEXPORT_CHECK = "no_rows_need_reexport"
# Locks held by the app, a failover, a lagging replica: worth coming back to, a few minutes later.
# Each retry re-verifies everything and deletes only what is left.
REDACTION_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=120, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def redaction_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["redaction", table])


class RedactionConfig(dg.Config):
    """Per-run knobs; the defaults are the production settings (RedactionLimits). Unset batch_rows and
    pause_s: pacing decides (pacing.py); `pacing` overrides the table's `pacing:` from the catalog."""

    dry_run: bool = False
    batch_rows: int | None = RedactionLimits.batch_rows
    pause_s: float | None = RedactionLimits.pause_s
    lock_timeout_s: float = RedactionLimits.lock_timeout_s
    statement_timeout_s: float = RedactionLimits.statement_timeout_s
    lock_retries: int = RedactionLimits.lock_retries
    max_replica_lag_s: float | None = None
    max_runtime_s: float | None = None
    pacing: PacingConfig = PacingConfig()

    def limits(self) -> RedactionLimits:
        return RedactionLimits(
            batch_rows=self.batch_rows,
            pause_s=self.pause_s,
            lock_timeout_s=self.lock_timeout_s,
            statement_timeout_s=self.statement_timeout_s,
            lock_retries=self.lock_retries,
            max_replica_lag_s=self.max_replica_lag_s,
            max_runtime_s=self.max_runtime_s,
            pacing=self.pacing.overrides(),
        )


def is_dry_run(config: RedactionConfig, tags: dict) -> bool:
    return config.dry_run or str(tags.get(DRY_RUN_TAG, "")).strip().lower() in ("true", "1", "yes")


# -- automation ----------------------------------------------------------------------------------


def retention_passed(table: TableConfig) -> dg.AutomationCondition:
    """Day D with D's end + retention_days <= now, in whole local days like redact.retention_ends.

    Dagster's "latest time window" ends at the last local midnight T; a lookback of N days keeps
    the days starting at or after T - N days, so the others are exactly those with end + N <= T.
    """
    lookback = dt.timedelta(days=table.retention_days)
    return (~dg.AutomationCondition.in_latest_time_window(lookback)).with_label(
        f"{table.retention_days} days of retention passed"
    )


def redaction_condition(table: TableConfig) -> dg.AutomationCondition:
    never_redacted = (dg.AutomationCondition.missing() & ~dg.AutomationCondition.execution_failed()).with_label(
        NEVER_REDACTED
    )
    export_changed = dg.AutomationCondition.any_deps_updated().since_last_handled().with_label(EXPORT_CHANGED)
    return (
        retention_passed(table)
        & (never_redacted | export_changed)
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("redact once retention passed and the export passed its checks")


def redaction_run_tags() -> dict[str, str]:
    """`ecs/run_task_kwargs` naming $WEWARD_REDACTION_TASK_DEFINITION, when set (dagster-aws reads the tag)."""
    return task_definition_tags(REDACTION_TASK_DEFINITION_ENV)


def redaction_sensor() -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=dg.AssetSelection.key_prefixes(["redaction"]),
        run_tags=redaction_run_tags(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests redaction/<table> for each day past its retention whose export passed its checks.",
    )


# -- the asset -----------------------------------------------------------------------------------


def require_passing_checks(
    instance: dg.DagsterInstance, lake: LakeResource, table: TableConfig, day: str, log_event=None
) -> str:
    """The latest run of each blocking export check for D passed, on the export published now.

    A blocking check only stops downstream steps of its own run; a redaction run days later must
    look itself, at the checks' verdicts (defs/checks.py: public API only). A day with no verdict
    at all (checked before verdicts were recorded, or never) is verified here, the checks' own
    verification, and its result recorded through `log_event` as theirs. Returns the export id;
    raises RedactionRefused otherwise.
    """
    partition = lake.glue().get_partition(table.name, day)
    export_id = (partition or {}).get("Parameters", {}).get("weward.export_id")
    if export_id is None:
        raise RedactionRefused(
            CHECKS_NOT_PASSED,
            f"table {table.name} day {day} was never exported; nothing was deleted. "
            f"Materialize lake/{table.name} for {day} first.",
        )
    verdicts = latest_verdicts(instance, table.name, day)
    if not verdicts and log_event is not None:
        clients = lake.clients()
        verification = verify_published_day(lake.glue(clients), clients.s3, clients.filesystem, table.name, day)
        for event in (
            *check_evaluations(table.name, day, verification),
            verdict_observation(table.name, day, verification, CHECK_NAMES.values()),
        ):
            log_event(event)
        verdicts = {
            name: (
                verification.passed(check),
                verification.manifest.export_id if verification.manifest else "",
                "this run",
            )
            for check, name in CHECK_NAMES.items()
        }
    problems = []
    for name in CHECK_NAMES.values():
        if name not in verdicts:
            problems.append(f"{name} has no result for {day}")
            continue
        passed, checked, run_id = verdicts[name]
        if not passed:
            problems.append(f"{name} failed (run {run_id[:8]})")
        elif checked != export_id:
            problems.append(f"{name} last checked export {checked or '?'}, the published one is {export_id}")
    if problems:
        raise RedactionRefused(
            CHECKS_NOT_PASSED,
            f"table {table.name} day {day}: the export's checks have not passed ({'; '.join(problems)}); nothing "
            f"was deleted. Run the checks of lake/{table.name} for {day} (or re-export it), then redact.",
        )
    return export_id


def report_metadata(report: RedactionReport) -> dict:
    kept = {reason: n for reason, n in report.kept_back.items() if n}
    metadata = {
        "dagster/row_count": dg.MetadataValue.int(report.rows_deleted),
        "status": dg.MetadataValue.text(report.status),
        "why_quit": dg.MetadataValue.text(report.why_quit or "finished"),
        "dry_run": dg.MetadataValue.bool(report.dry_run),
        "rows_in_export": dg.MetadataValue.int(report.rows_in_export),
        "rows_deleted": dg.MetadataValue.int(report.rows_deleted),
        "rows_would_delete": dg.MetadataValue.int(report.rows_would_delete),
        "rows_already_gone": dg.MetadataValue.int(report.rows_already_gone),
        "rows_kept_back": dg.MetadataValue.int(report.rows_kept_back),
        "kept_back": dg.MetadataValue.json(kept),
        "kept_back_keys": dg.MetadataValue.json(report.as_dict()["kept_back_keys"]),
        "kept_back_keys_truncated": dg.MetadataValue.bool(report.kept_back_keys_truncated),
        "needs_reexport": dg.MetadataValue.bool(report.needs_reexport),
        "window_rows_before": dg.MetadataValue.int(report.window_rows_before),
        "batches": dg.MetadataValue.int(report.batches),
        "batches_retried": dg.MetadataValue.int(report.batches_retried),
        "batches_skipped": dg.MetadataValue.int(report.batches_skipped),
        "lock_timeouts": dg.MetadataValue.int(report.lock_timeouts),
        "replica_lag": dg.MetadataValue.text(report.replica_lag),
        "replica_lag_waits": dg.MetadataValue.int(report.replica_lag_waits),
        "duration_s": dg.MetadataValue.float(report.duration_s),
        "started_at": dg.MetadataValue.text(report.started_at),
        "first_delete_at": dg.MetadataValue.text(report.first_delete_at or "-"),
        "last_delete_at": dg.MetadataValue.text(report.last_delete_at or "-"),
        "finished_at": dg.MetadataValue.text(report.finished_at or "-"),
        "export_id": dg.MetadataValue.text(report.export_id),
        "manifest": dg.MetadataValue.text(report.manifest),
        "exported_at": dg.MetadataValue.text(report.exported_at),
        "lake_objects": dg.MetadataValue.json(report.lake_objects),
        "keys_objects": dg.MetadataValue.json(report.keys_objects),
        "rows_carried_in_lake": dg.MetadataValue.int(report.rows_carried_in_lake),
        "delete_sql": dg.MetadataValue.md(f"```sql\n{report.delete_sql}\n```"),
        "columns_required_null": dg.MetadataValue.text(", ".join(report.columns_required_null) or "none"),
        "postgres": dg.MetadataValue.text(report.postgres),
        # Batches, rows, work and sleep seconds, back-offs and the signals that caused them.
        "pacing": dg.MetadataValue.json(report.pacing),
        "audit_prefix": dg.MetadataValue.text(report.audit_prefix or "-"),
        "audit_objects": dg.MetadataValue.int(report.audit_objects),
    }
    if report.window_rows_after is not None:
        metadata["window_rows_after"] = dg.MetadataValue.int(report.window_rows_after)
    if report.lake_verified_after is not None:
        metadata["lake_verified_after"] = dg.MetadataValue.bool(report.lake_verified_after)
        metadata["lake_problems_after"] = dg.MetadataValue.text(report.lake_problems_after or "none")
    return metadata


def redaction_asset(table: TableConfig, catalog: Catalog) -> dg.AssetsDefinition:
    description = (
        f"Deletes from PostgreSQL {table.qualified_source} the rows of day D that the published export of "
        f"lake/{table.name} holds unchanged, {table.retention_days} days after D ended. Rows inserted or "
        "changed after the export stay (check `no_rows_need_reexport`). Dry run: run config "
        f"`dry_run: true` or tag `{DRY_RUN_TAG}=true`."
    )

    @dg.asset(
        key=redaction_key(table.name),
        deps=[lake_key(table.name)],
        partitions_def=daily_partitions(catalog),
        automation_condition=redaction_condition(table),
        # Deletes load the same primary as exports: they share its pool (dagster.yaml).
        pool=SOURCE_POOL,
        # No BackfillPolicy: one run per day tagged `dagster/partition`, so the day's check results
        # keep their partition (a one-day range run loses it in Dagster 1.13; see lake assets).
        retry_policy=REDACTION_RETRY_POLICY,
        output_required=False,  # a dry run reports without materializing
        group_name=group_for(table, "redaction"),
        kinds={"postgres"},
        owners=list(table.owners),
        tags={"weward/redaction": "true"},
        description=description,
        metadata={
            "source": table.qualified_source,
            "retention_days": table.retention_days,
            "partition_column": table.partition_column,
            "primary_key": ", ".join(table.primary_key),
        },
        code_version="1",
    )
    def _redact(context: dg.AssetExecutionContext, config: RedactionConfig, lake: LakeResource):
        day = dt.date.fromisoformat(context.partition_key)
        dry_run = is_dry_run(config, context.run.tags)
        try:
            limits = config.limits()
            limits.validate()
            require_passing_checks(context.instance, lake, table, context.partition_key, log_event=context.log_event)
            report = redact_day(
                lake.settings(),
                catalog,
                table,
                day,
                clients=lake.clients(),
                limits=limits,
                dry_run=dry_run,
                on_progress=context.log.info,
            )
        except RedactionFailed as exc:
            if exc.report.rows_deleted:
                yield dg.MaterializeResult(metadata=report_metadata(exc.report))
            # Every committed batch was verified: a retry finishes the day.
            raise as_failure(
                exc,
                where=f"table {table.name} day {day}",
                resumable=(RedactionFailed,),
                metadata={"rows_deleted": exc.report.rows_deleted},
            ) from None
        except Exception as exc:  # noqa: BLE001 - classified: a failover or S3 throttling is worth the retry
            metadata = {"reason": exc.reason, "deleted": 0} if isinstance(exc, RedactionRefused) else None
            raise as_failure(
                exc,
                where=f"table {table.name} day {day}",
                known=(RedactionRefused, ConfigError, SourceError),
                metadata=metadata,
            ) from None
        if dry_run:
            yield dg.AssetObservation(
                asset_key=context.asset_key, partition=context.partition_key, metadata=report_metadata(report)
            )
            context.log.info("dry run: " + report.summary())
            return
        yield dg.MaterializeResult(metadata=report_metadata(report))
        if report.batches_skipped or report.why_quit:
            # Recorded above (those deletes happened); the retry finishes the day.
            raise dg.Failure(description=report.summary(), allow_retries=True)
        if report.lake_verified_after is False:
            raise dg.Failure(
                description=f"ALERT: after redacting {report.rows_deleted} rows of {table.name} {day}, the lake no "
                f"longer verifies ({report.lake_problems_after}); restore the objects from their versions "
                "listed in this materialization's lake_objects",
                allow_retries=False,
            )

    return _redact


def reexport_check(table: TableConfig, catalog: Catalog) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=redaction_key(table.name),
        name=REEXPORT_CHECK,
        partitions_def=daily_partitions(catalog),
        description=(
            "Fails (warning) when the redaction of day D kept rows back in PostgreSQL because they were "
            f"inserted or changed after the export: re-export lake/{table.name} for D, and the redaction runs "
            "again by itself."
        ),
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=redaction_key(table.name), asset_partitions=[context.partition_key]),
            limit=1,
        ).records
        if not records:
            return dg.AssetCheckResult(
                passed=False, severity=dg.AssetCheckSeverity.WARN, metadata={"problem": "day not redacted yet"}
            )
        metadata = records[0].asset_materialization.metadata
        kept = metadata["kept_back"].value if "kept_back" in metadata else {}
        keys = metadata["kept_back_keys"].value if "kept_back_keys" in metadata else {}
        stale = {reason: kept.get(reason, 0) for reason in (INSERTED_AFTER_EXPORT, CHANGED_SINCE_EXPORT)}
        return dg.AssetCheckResult(
            passed=not any(stale.values()),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                **{reason: dg.MetadataValue.int(n) for reason, n in stale.items()},
                "keys": dg.MetadataValue.json({reason: keys.get(reason, []) for reason in stale}),
                "export_id": metadata["export_id"] if "export_id" in metadata else dg.MetadataValue.text("?"),
                "fix": dg.MetadataValue.text(
                    f"re-export lake/{table.name} for {context.partition_key}" if any(stale.values()) else "none needed"
                ),
            },
        )

    return _check


def redaction_definitions(table: TableConfig, catalog: Catalog) -> dg.Definitions:
    """Empty for tables without retention_days."""
    if table.retention_days is None:
        return dg.Definitions()
    return dg.Definitions(assets=[redaction_asset(table, catalog)], asset_checks=[reexport_check(table, catalog)])
