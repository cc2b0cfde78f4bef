"""The Dagster behaviour `redact-due`, the redaction asset and its automation rely on, pinned.

redact-due reads the instance through the public API only (cli/redact.py); the automation's
retention rule leans on how `in_latest_time_window` subtracts its lookback. A Dagster upgrade that
changes any of these fails here, not silently in production.
"""

import datetime as dt
import warnings

import dagster as dg

from weward_pipeline import redact
from weward_pipeline.config import parse_catalog
from weward_pipeline.defs.redaction import retention_passed
from weward_pipeline_tests.conftest import TIMEZONE

PARTITIONS = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone=TIMEZONE)
DAY, OTHER = "2024-03-30", "2024-03-31"


@dg.asset(partitions_def=PARTITIONS)
def upstream():
    return 1


class Fail(dg.Config):
    fail: bool = False


@dg.asset(
    partitions_def=PARTITIONS,
    deps=[upstream],
    automation_condition=dg.AutomationCondition.any_deps_updated().since_last_handled(),
)
def downstream(config: Fail):
    if config.fail:
        raise dg.Failure("asked to fail", allow_retries=False)


@dg.asset_check(asset=upstream, partitions_def=PARTITIONS, blocking=True)
def verdict(context: dg.AssetCheckExecutionContext):
    context.op_execution_context.log_event(
        dg.AssetObservation(
            asset_key=upstream.key, partition=context.partition_key, metadata={"export_checks": {"ok": True}}
        )
    )
    return dg.AssetCheckResult(passed=True)


def test_the_instance_queries_redact_due_relies_on():
    warnings.simplefilter("ignore")
    instance = dg.DagsterInstance.ephemeral()
    defs = dg.Definitions(assets=[upstream, downstream], asset_checks=[verdict])
    # No event at all: get_status_by_partition says None, not {}.
    assert instance.get_status_by_partition(downstream.key, [DAY], PARTITIONS) is None

    assert dg.materialize([upstream, verdict], partition_key=DAY, instance=instance).success
    first = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=upstream.key, asset_partitions=[DAY]), limit=1
    ).records[0]
    assert instance.get_status_by_partition(upstream.key, [DAY, OTHER], PARTITIONS) == {
        DAY: dg.AssetPartitionStatus.MATERIALIZED,
        OTHER: None,
    }
    # An observation logged by a check op: fetched per partition, newest first; not an update of the asset.
    [observation] = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=upstream.key, asset_partitions=[DAY]), limit=5
    ).records
    assert observation.partition_key == DAY and observation.asset_observation.metadata["export_checks"].value == {
        "ok": True
    }

    job = defs.resolve_implicit_global_asset_job_def()
    failed = job.execute_in_process(
        partition_key=DAY,
        instance=instance,
        raise_on_error=False,
        asset_selection=[downstream.key],
        run_config={"ops": {"downstream": {"config": {"fail": True}}}},
    )
    assert not failed.success
    assert instance.get_status_by_partition(downstream.key, [DAY], PARTITIONS) == {DAY: dg.AssetPartitionStatus.FAILED}
    # Runs of a day: tagged with their partition, newest first, with their asset selection.
    [record, *_] = instance.get_run_records(filters=dg.RunsFilter(tags={"dagster/partition": DAY}), limit=10)
    assert record.dagster_run.run_id == failed.run_id and downstream.key in record.dagster_run.asset_selection
    assert record.dagster_run.status == dg.DagsterRunStatus.FAILURE
    assert record.create_timestamp.timestamp() > first.timestamp

    # A run created and never started (its process killed) counts as in progress.
    instance.create_run_for_job(
        job_def=job.get_subset(asset_selection={downstream.key}),
        asset_selection=frozenset({downstream.key}),
        tags={"dagster/partition": OTHER},
    )
    assert instance.get_status_by_partition(downstream.key, [OTHER], PARTITIONS) == {
        OTHER: dg.AssetPartitionStatus.IN_PROGRESS
    }

    assert dg.materialize([downstream], partition_key=DAY, instance=instance).success
    redacted = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=downstream.key, asset_partitions=[DAY]), limit=1
    ).records[0]
    assert redacted.storage_id > first.storage_id  # "redacted since the last export" compares storage ids
    # materialize() runs an ephemeral job: its runs carry no asset selection (so a failure is
    # recognised by the asset's status, and dated by the runs that do name the asset).
    [latest, *_] = instance.get_run_records(filters=dg.RunsFilter(tags={"dagster/partition": DAY}), limit=1)
    assert latest.dagster_run.asset_selection in (None, frozenset())


def test_the_retention_rule_selects_calendar_days_hour_by_hour_across_both_dst_changes():
    """`~in_latest_time_window(N days)` subtracts N days from a local midnight as wall-clock time (a 23-
    or 25-hour day counts as one day), exactly like redact.retention_ends, at every hour around both
    2024 DST changes, for short and long retentions."""
    warnings.simplefilter("ignore")
    instance = dg.DagsterInstance.ephemeral()
    for retention_days in (1, 2, 7, 30):
        catalog = parse_catalog(
            {
                "start_date": "2024-01-01",
                "timezone": TIMEZONE,
                "tables": [
                    {
                        "name": "t",
                        "mode": "append",
                        "partition_column": "c",
                        "primary_key": ["id"],
                        "retention_days": retention_days,
                    }
                ],
            }
        )
        table = catalog.tables[0]

        @dg.asset(partitions_def=PARTITIONS, automation_condition=retention_passed(table))
        def probe(): ...

        for change in (dt.datetime(2024, 3, 31, tzinfo=dt.UTC), dt.datetime(2024, 10, 27, tzinfo=dt.UTC)):
            for start in (change - dt.timedelta(days=1), change + dt.timedelta(days=retention_days - 1)):
                for hour in range(0, 72, 1):
                    now = start + dt.timedelta(hours=hour, minutes=30)
                    result = dg.evaluate_automation_conditions([probe], instance, evaluation_time=now)
                    selected = set(result.get_requested_partitions(probe.key))
                    allowed = {
                        d
                        for d in PARTITIONS.get_partition_keys(current_time=now)
                        if redact.retention_ends(catalog, table, dt.date.fromisoformat(d)) <= now
                    }
                    assert selected == allowed, (retention_days, now.isoformat(), sorted(selected ^ allowed))
