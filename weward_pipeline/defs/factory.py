"""Catalog -> Definitions. One table config gives one source asset, one export asset, its checks."""

from __future__ import annotations

import warnings

import dagster as dg

from weward_pipeline.config import Catalog, TableConfig
from weward_pipeline.defs.alerts import alert_sensors
from weward_pipeline.defs.assets import lake_asset, source_asset
from weward_pipeline.defs.checks import export_checks
from weward_pipeline.defs.erasure import erasure_job
from weward_pipeline.defs.executor import one_read_in_process_executor
from weward_pipeline.defs.liveness import beating, dead_run_sensor
from weward_pipeline.defs.query_resource import query_resource_from_env
from weward_pipeline.defs.redaction import redaction_definitions, redaction_sensor
from weward_pipeline.defs.resources import lake_resource_from_env
from weward_pipeline.defs.restatement import restatement_definitions
from weward_pipeline.defs.schedules import ScheduleSettings, schedule_definitions

# A run that reads PostgreSQL once (one table) executes in its own process; a run of several
# tables forks its steps (forkserver) so that exports overlap within the pool's limit (executor.py).
# beating: the run's process writes a heartbeat and frees the pool slots of runs whose worker is
# gone, before its steps claim any (defs/liveness.py): a killed run would hold them for good.
STEP_EXECUTOR = beating(one_read_in_process_executor)


def table_definitions(table: TableConfig, catalog: Catalog) -> dg.Definitions:
    exports = dg.Definitions(
        # Code references: the catalog entry of the table and the function that exports it.
        assets=dg.with_source_code_references([source_asset(table, catalog), lake_asset(table, catalog)]),
        asset_checks=export_checks(table, catalog),
    )
    # Tables with retention_days: redaction/<name> and its "needs re-export" check.
    return dg.Definitions.merge(exports, redaction_definitions(table, catalog))


def build_definitions(
    catalog: Catalog, resources: dict | None = None, schedules: ScheduleSettings | None = None
) -> dg.Definitions:
    # Code references and partitioned checks are beta/preview features of Dagster, used on purpose
    # on a pinned version: their warnings (one per table and process) buried everything else in
    # `make demo` (~100 lines) and `make dev` (~700).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return _build_definitions(catalog, resources, schedules)


def _build_definitions(catalog: Catalog, resources: dict | None, schedules: ScheduleSettings | None) -> dg.Definitions:
    per_table = [table_definitions(table, catalog) for table in catalog.tables]
    shared = dg.Definitions(
        resources=resources or {"lake": lake_resource_from_env(), "query": query_resource_from_env()},
        executor=STEP_EXECUTOR,
    )
    redaction = dg.Definitions(sensors=[redaction_sensor()] if any(t.retention_days for t in catalog.tables) else [])
    # GDPR erasure, launched by hand with a request file (defs/erasure.py); only if a table can be erased.
    erasure = dg.Definitions(jobs=[erasure_job(catalog)] if any(t.user_column for t in catalog.tables) else [])
    # Append tables with restate_days: the daily comparison with PostgreSQL and its re-exports.
    restatement = restatement_definitions(catalog, schedules)
    # Failed runs and failed blocking checks reach a person (SNS) when the Dagster service runs.
    alerts = dg.Definitions(sensors=alert_sensors())
    # With the daemon: runs whose worker stopped beating are failed and their slots freed.
    liveness = dg.Definitions(sensors=[dead_run_sensor()])
    return dg.Definitions.merge(
        *per_table, schedule_definitions(catalog, schedules), restatement, redaction, erasure, alerts, liveness, shared
    )
