"""redaction/<table> through Dagster: runs, refusals, audit metadata, dry run, and the automation
condition evaluated on an instance holding real exports of backfilled days."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from weward_pipeline import redact
from weward_pipeline.config import ConfigError, parse_catalog
from weward_pipeline.defs.checks import CHECK_NAMES
from weward_pipeline.defs.factory import build_definitions
from weward_pipeline.defs.redaction import (
    AUTOMATION_SENSOR,
    DRY_RUN_TAG,
    REEXPORT_CHECK,
    redaction_key,
    retention_passed,
)
from weward_pipeline.verify import published_manifest
from weward_pipeline_tests.conftest import TIMEZONE, make_catalog
from weward_pipeline_tests.test_redaction import STEP_EVENTS, Scenario, app_db  # noqa: F401 - fixture

LAKE = dg.AssetKey(["lake", "step_events"])
REDACTION = redaction_key("step_events")
DAYS = ["2024-03-30", "2024-03-31", "2024-04-01"]


class Pipeline(Scenario):
    """The real Definitions for a one-table catalog, on an ephemeral Dagster instance."""

    def __init__(self, lake_env, clients, pg_url, monkeypatch, retention_days=30):
        table = {**STEP_EVENTS, "retention_days": retention_days}
        super().__init__(lake_env, clients, pg_url, table)
        monkeypatch.setenv("WEWARD_PG_URL", pg_url)
        self.defs = build_definitions(self.catalog)
        self.instance = dg.DagsterInstance.ephemeral()

    def _checks(self, key, names):
        return [c for c in self.defs.asset_checks if any(k.asset_key == key and k.name in names for k in c.check_keys)]

    def run(self, *keys, day="2024-03-31", checks=True, **kwargs) -> dg.ExecuteInProcessResult:
        selection = [self.defs.get_assets_def(k) for k in keys]
        if checks:
            for key in keys:
                selection += self._checks(key, {*CHECK_NAMES.values(), REEXPORT_CHECK})
        return dg.materialize(
            selection,
            partition_key=day,
            instance=self.instance,
            resources=self.defs.resources,
            raise_on_error=False,
            **kwargs,
        )

    def run_checks(self, day="2024-03-31") -> dict[str, bool]:
        """The export's checks alone, as the UI's "Execute checks" does (partition given as the run tag:
        `partition_key=` wants a selected asset to take the partitions definition from)."""
        keys = [dg.AssetCheckKey(LAKE, name) for name in CHECK_NAMES.values()]
        job = dg.define_asset_job("export_checks", selection=dg.AssetSelection.checks(*keys))
        defs = dg.Definitions.merge(self.defs, dg.Definitions(jobs=[job]))
        result = defs.resolve_job_def("export_checks").execute_in_process(
            tags={"dagster/partition": day}, instance=self.instance, raise_on_error=False
        )
        return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}

    def object_key(self, day=DAYS[1]):
        manifest = published_manifest(self.glue, self.clients.s3, "step_events", day)[1]
        return self.settings.lake.bucket, manifest.objects[0].key


@pytest.fixture
def pipeline(app_db, lake_env, clients, monkeypatch):  # noqa: F811
    return Pipeline(lake_env, clients, app_db, monkeypatch)


def failure_of(result: dg.ExecuteInProcessResult) -> str:
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    return str(failure.event_specific_data.error)


# -- the definitions ------------------------------------------------------------------------------


def test_only_tables_with_retention_get_a_redaction_asset_and_the_sensor_runs_by_default(monkeypatch):
    monkeypatch.setenv("WEWARD_PG_URL", "postgresql://u:p@db.invalid/app")
    monkeypatch.setenv("WEWARD_LAKE_URL", "s3://lake-bucket/exports")
    catalog = make_catalog(
        STEP_EVENTS,
        {"name": "users", "mode": "snapshot", "primary_key": ["id"]},
        {"name": "reward_purchases", "mode": "append", "partition_column": "purchased_at", "primary_key": ["id"]},
    )
    defs = build_definitions(catalog)
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys() if k.path[0] == "redaction"} == {
        "redaction/step_events"
    }
    node = graph.get(REDACTION)
    assert node.parent_keys == {LAKE}
    assert node.partitions_def == graph.get(LAKE).partitions_def
    assert node.assets_def.op.pool == "postgres_source"
    assert node.automation_condition is not None
    assert dg.AssetCheckKey(REDACTION, REEXPORT_CHECK) in graph.asset_check_keys
    sensor = defs.get_sensor_def(AUTOMATION_SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.asset_selection.resolve(graph) == {REDACTION}


def test_retention_on_a_snapshot_table_is_a_config_error():
    with pytest.raises(ConfigError) as error:
        make_catalog({"name": "users", "mode": "snapshot", "primary_key": ["id"], "retention_days": 30})
    assert "table 'users'" in str(error.value) and "only allowed on append tables" in str(error.value)


def test_the_automation_retention_rule_agrees_with_redact_to_the_minute_across_dst():
    """Dagster's `~in_latest_time_window(N days)` selects exactly the days redact.check_redactable allows,
    a minute before and after each day's retention ends, for days around both 2024 DST changes."""
    instance = dg.DagsterInstance.ephemeral()
    partitions = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone=TIMEZONE)
    for retention_days in (1, 30):
        catalog = parse_catalog(
            {
                "start_date": "2024-01-01",
                "timezone": TIMEZONE,
                "tables": [{**STEP_EVENTS, "retention_days": retention_days}],
            }
        )
        table = catalog.tables[0]

        @dg.asset(partitions_def=partitions, automation_condition=retention_passed(table))
        def probe(): ...

        for day in ("2024-03-30", "2024-03-31", "2024-04-01", "2024-10-26", "2024-10-27", "2024-10-28"):
            ends = redact.retention_ends(catalog, table, dt.date.fromisoformat(day))
            for now in (ends - dt.timedelta(minutes=1), ends + dt.timedelta(minutes=1)):
                result = dg.evaluate_automation_conditions([probe], instance, evaluation_time=now)
                selected = set(result.get_requested_partitions(probe.key))
                allowed = {
                    d
                    for d in partitions.get_partition_keys(current_time=now)
                    if redact.retention_ends(catalog, table, dt.date.fromisoformat(d)) <= now
                }
                assert (day in selected) == (now > ends), (retention_days, day, now)
                assert selected == allowed, (retention_days, now)


# -- runs -----------------------------------------------------------------------------------------


def test_a_redaction_run_records_the_audit_and_flags_the_day_for_re_export(pipeline):
    everything = pipeline.pg_ids()
    day_rows = pipeline.pg_ids(dt.date(2024, 3, 31))
    assert pipeline.run(LAKE).success
    pipeline.execute(
        "INSERT INTO step_events (id, user_id, created_at, step_date, steps, source) "
        "VALUES (910001, 3, '2024-03-31 18:30:00+02', '2024-03-31', 99, 'manual')"
    )

    result = pipeline.run(REDACTION)

    assert result.success
    (materialization,) = [e.materialization for e in result.get_asset_materialization_events()]
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["rows_deleted"] == metadata["dagster/row_count"] == len(day_rows)
    assert metadata["kept_back"] == {redact.INSERTED_AFTER_EXPORT: 1}
    assert metadata["kept_back_keys"] == {redact.INSERTED_AFTER_EXPORT: [910001]}
    assert metadata["needs_reexport"] is True and metadata["status"] == "done"
    manifest = published_manifest(pipeline.glue, pipeline.clients.s3, "step_events", "2024-03-31")[1]
    assert metadata["export_id"] == manifest.export_id
    assert metadata["lake_objects"] == [
        {
            "url": f"s3://{pipeline.settings.lake.bucket}/{o.key}",
            "rows": o.rows,
            "bytes": o.bytes,
            "etag": o.etag,
            "version_id": o.version_id,
        }
        for o in manifest.objects
    ]
    assert metadata["first_delete_at"] <= metadata["last_delete_at"] <= metadata["finished_at"]
    assert "DELETE FROM" in metadata["delete_sql"] and metadata["lake_verified_after"] is True
    assert "postgresql://weward_admin@" in metadata["postgres"] and pipeline.pg_url not in str(metadata)
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == REEXPORT_CHECK and not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata[redact.INSERTED_AFTER_EXPORT].value == 1
    assert pipeline.pg_ids() == (everything - day_rows) | {910001}

    # The fix the check names: re-export the day; the redaction then takes the late row too.
    assert pipeline.run(LAKE).success
    result = pipeline.run(REDACTION)
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
    assert pipeline.pg_ids() == everything - day_rows
    assert pipeline.lake_ids() == day_rows | {910001}


def test_a_failed_check_blocks_the_redaction_even_once_the_lake_looks_right_again(pipeline):
    everything = pipeline.pg_ids()
    day_rows = pipeline.pg_ids(dt.date(2024, 3, 31))
    assert pipeline.run(LAKE).success
    bucket, key = pipeline.object_key()
    marker = pipeline.clients.s3.delete_object(Bucket=bucket, Key=key)["VersionId"]
    assert pipeline.run_checks() == {name: name == "glue_schema_matches_files" for name in CHECK_NAMES.values()}
    # Restored from its version (the bucket is versioned): the same object, the same ETag.
    pipeline.clients.s3.delete_object(Bucket=bucket, Key=key, VersionId=marker)

    result = pipeline.run(REDACTION, checks=False)

    assert not result.success
    assert "the export's checks have not passed (row_count_matches_source failed" in failure_of(result)
    assert not result.get_asset_materialization_events()
    assert pipeline.pg_ids() == everything
    assert pipeline.lake_ids() == day_rows

    assert all(pipeline.run_checks().values())
    assert pipeline.run(REDACTION).success
    assert pipeline.pg_ids() == everything - day_rows
    assert pipeline.lake_ids() == day_rows


def test_a_re_export_without_its_checks_is_not_redacted(pipeline):
    everything = pipeline.pg_ids()
    assert pipeline.run(LAKE).success
    assert pipeline.run(LAKE, checks=False).success  # a newer export nobody checked

    result = pipeline.run(REDACTION, checks=False)

    assert not result.success and "the published one is" in failure_of(result)
    assert pipeline.pg_ids() == everything


def test_a_day_inside_retention_fails_with_the_date_it_becomes_redactable(app_db, lake_env, clients, monkeypatch):  # noqa: F811
    retention = (dt.datetime.now(ZoneInfo(TIMEZONE)).date() - dt.date(2024, 3, 31)).days + 5
    pipeline = Pipeline(lake_env, clients, app_db, monkeypatch, retention_days=retention)
    everything = pipeline.pg_ids()
    assert pipeline.run(LAKE).success

    result = pipeline.run(REDACTION, checks=False)

    assert not result.success and f"inside its {retention}-day retention" in failure_of(result)
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    assert pipeline.pg_ids() == everything


def test_a_dry_run_by_tag_or_by_config_observes_what_would_go_and_materializes_nothing(pipeline):
    everything = pipeline.pg_ids()
    day_rows = pipeline.pg_ids(dt.date(2024, 3, 31))
    assert pipeline.run(LAKE).success

    for kwargs in (
        {"tags": {DRY_RUN_TAG: "true"}},
        {"run_config": {"ops": {"redaction__step_events": {"config": {"dry_run": True}}}}},
    ):
        result = pipeline.run(REDACTION, **kwargs)

        assert result.success and not result.get_asset_materialization_events()
        (observation,) = [
            e.event_specific_data.asset_observation
            for e in result.all_events
            if e.event_type_value == "ASSET_OBSERVATION"
        ]
        assert observation.metadata["rows_would_delete"].value == len(day_rows)
        assert observation.metadata["dry_run"].value is True
        assert "DELETE FROM" in observation.metadata["delete_sql"].value
        assert pipeline.instance.get_latest_materialization_event(REDACTION) is None
        assert pipeline.pg_ids() == everything
        assert pipeline.lake_ids() == day_rows


# -- automation -----------------------------------------------------------------------------------


def test_automation_redacts_backfilled_days_once_checked_and_past_retention_and_again_after_a_re_export(
    app_db, lake_env, clients, monkeypatch
):  # noqa: F811
    """Days exported by a backfill (old days, not the latest) are redacted; a day whose checks
    failed is not; a day still inside retention waits; a re-exported day is redacted again."""
    today = dt.datetime.now(ZoneInfo(TIMEZONE)).date()
    retention = (today - dt.date(2024, 4, 1)).days  # 03-30 and 03-31 are past it, 04-01 is not (until tomorrow)
    pipeline = Pipeline(lake_env, clients, app_db, monkeypatch, retention_days=retention)
    everything = pipeline.pg_ids()
    rows = {day: pipeline.pg_ids(dt.date.fromisoformat(day)) for day in DAYS}
    for day in DAYS:
        assert pipeline.run(LAKE, day=day, checks=day != "2024-03-30").success
    bucket, key = pipeline.object_key("2024-03-30")
    pipeline.clients.s3.delete_object(Bucket=bucket, Key=key)
    assert not all(pipeline.run_checks("2024-03-30").values())

    def tick(cursor=None, evaluation_time=None):
        result = dg.evaluate_automation_conditions(
            pipeline.defs, pipeline.instance, cursor=cursor, evaluation_time=evaluation_time
        )
        return result, sorted(result.get_requested_partitions(REDACTION))

    first, requested = tick()
    assert requested == ["2024-03-31"]
    assert pipeline.run(REDACTION, day="2024-03-31").success
    second, requested = tick(first.cursor)
    assert requested == []
    assert pipeline.pg_ids() == everything - rows["2024-03-31"]

    # A day later 2024-04-01 has served its retention too.
    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    third, requested = tick(second.cursor, evaluation_time=tomorrow)
    assert requested == ["2024-04-01"]

    # A late row, a re-export of 03-31: its redaction is requested again, and finishes the day.
    pipeline.execute(
        "INSERT INTO step_events (id, user_id, created_at, step_date, steps, source) "
        "VALUES (910002, 4, '2024-03-31 07:00:00+02', '2024-03-31', 5, 'manual')"
    )
    assert pipeline.run(LAKE, day="2024-03-31").success
    _, requested = tick(third.cursor)
    assert "2024-03-31" in requested and "2024-03-30" not in requested
    assert pipeline.run(REDACTION, day="2024-03-31").success
    assert pipeline.pg_ids() == everything - rows["2024-03-31"]
    assert pipeline.lake_ids(dt.date(2024, 3, 31)) == rows["2024-03-31"] | {910002}
    assert pipeline.pg_ids(dt.date(2024, 3, 30)) == rows["2024-03-30"]  # never redacted: its check failed
