"""Catalog -> Definitions. One table config gives one source asset, one export asset, its checks."""

from __future__ import annotations

import warnings

import dagster as dg

from weward_pipeline.config import Catalog, TableConfig
from weward_pipeline.defs.assets import lake_asset, source_asset
from weward_pipeline.defs.checks import export_checks
from weward_pipeline.defs.erasure import erasure_job
from weward_pipeline.defs.query_resource import query_resource_from_env
from weward_pipeline.defs.redaction import redaction_definitions, redaction_sensor
from weward_pipeline.defs.resources import lake_resource_from_env
from weward_pipeline.defs.restatement import restatement_definitions
from weward_pipeline.defs.schedules import ScheduleSettings, schedule_definitions


# Steps (one export per table, its checks) run in parallel subprocesses, within the pool's limit.
# forkserver: each step forks from a process that has already imported dagster, pyarrow, boto3
# and the code location, instead of a fresh interpreter importing them again for every step;
# a backfill is many one-day runs of several steps each.
STEP_EXECUTOR = dg.multiprocess_executor.configured({"start_method": {"forkserver": {}}})


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
    return dg.Definitions.merge(*per_table, schedule_definitions(catalog, schedules), restatement, redaction, erasure,
                                shared)
