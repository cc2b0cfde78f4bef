"""The Dagster code location as users see it: asset keys, lineage, partitions, checks, and
materializations run through Dagster itself (Python API and the documented CLI command)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml
from psycopg import sql

from weward_pipeline.config import ConfigError, load_catalog
from weward_pipeline.defs.factory import build_definitions
from weward_pipeline.defs.resources import LakeResource
from weward_pipeline.glue import GlueCatalog
from weward_pipeline.verify import verify_published_day
from weward_pipeline_tests.conftest import materialize_command
from weward_pipeline_tests.lake_reader import read_table

REPO = Path(__file__).resolve().parents[1]
EXPORT_CHECKS = ("row_count_matches_source", "glue_points_at_export", "glue_schema_matches_files")
PLACEHOLDER_ENV = {"WEWARD_PG_URL": "postgresql://u:p@localhost:1/db", "WEWARD_LAKE_URL": "s3://bucket/prefix"}


@pytest.fixture
def sample_catalog_file(tmp_path, sample_database, lake_env, monkeypatch):
    """The shipped sample catalog, pointed at the session's sample database."""
    path = tmp_path / "tables.yaml"
    catalog = yaml.safe_load((REPO / "weward_pipeline" / "sample" / "tables.yaml").read_text())
    path.write_text(yaml.safe_dump(catalog))
    monkeypatch.setenv("WEWARD_TABLES_FILE", str(path))
    monkeypatch.setenv("WEWARD_PG_URL", sample_database)
    return path


def test_every_catalog_table_is_a_source_an_export_and_checks(monkeypatch):
    for key, value in PLACEHOLDER_ENV.items():
        monkeypatch.setenv(key, value)
    catalog = load_catalog()
    defs = build_definitions(catalog)
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    for table in catalog.tables:
        assert {f"postgres/{table.name}", f"lake/{table.name}"} <= keys
        lake_node = graph.get(dg.AssetKey(["lake", table.name]))
        assert dg.AssetKey(["postgres", table.name]) in lake_node.parent_keys
        assert lake_node.partitions_def.timezone == "Europe/Paris"
        assert lake_node.assets_def.op.pool == "postgres_source"
        assert {"s3", "parquet", "glue"} <= set(lake_node.kinds)
        assert not graph.get(dg.AssetKey(["postgres", table.name])).is_materializable  # external source
    check_names = {key.name for key in graph.asset_check_keys if key.asset_key == dg.AssetKey(["lake", "step_events"])}
    assert {"row_count_matches_source", "glue_points_at_export", "glue_schema_matches_files"} <= check_names


def test_runs_are_planned_where_no_database_secret_is_set_and_fail_clearly_where_they_run(monkeypatch, lake_env):
    """The Dagster service's webserver and daemon plan every run (config resolved in their own task)
    and hold no database secret; the run worker reads WEWARD_PG_URL. Was: every launch failed there."""
    monkeypatch.delenv("WEWARD_PG_URL", raising=False)
    defs = build_definitions(load_catalog())
    for job in (defs.resolve_job_def("daily_export"), defs.resolve_implicit_global_asset_job_def()):
        assert dg.validate_run_config(job, {}) is not None
    assert defs.resources["lake"].pg_url is None  # nothing for the planner to resolve
    lake = LakeResource(lake_url=lake_env["WEWARD_LAKE_URL"])  # as the run worker resolves it
    with pytest.raises(ConfigError, match="missing environment variable.s. WEWARD_PG_URL"):
        lake.settings()  # in the run worker, without the secret
    monkeypatch.setenv("WEWARD_PG_URL", "postgresql://exp@db:5432/app")
    assert lake.settings().pg_url == "postgresql://exp@db:5432/app"


def test_the_glue_console_link_is_shown_for_aws_and_left_out_for_a_local_endpoint(monkeypatch):
    for key, value in PLACEHOLDER_ENV.items():
        monkeypatch.setenv(key, value)
    key = dg.AssetKey(["lake", "step_events"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", "")
    assert "glue_console" in build_definitions(load_catalog()).resolve_asset_graph().get(key).metadata
    monkeypatch.setenv(
        "AWS_ENDPOINT_URL", "http://127.0.0.1:5000"
    )  # the local stack: the AWS console has no such table
    assert "glue_console" not in build_definitions(load_catalog()).resolve_asset_graph().get(key).metadata


def test_documented_mistakes_of_dagster_asset_materialize_print_one_line(tmp_path):
    """A catalog typo or a variable left unset: the line that says what to do, not 100 lines of traceback."""
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    typo = tmp_path / "tables.yaml"
    typo.write_text("start_date: '2024-01-01'\ntables:\n  - name: step_events\n    mod: append\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEWARD_")}
    command = materialize_command("lake/step_events", "2024-03-31")
    for extra, expected in (
        ({"WEWARD_TABLES_FILE": str(typo)}, "unknown key(s) mod"),
        ({}, "missing environment variable(s) WEWARD_PG_URL, WEWARD_LAKE_URL"),
        # read where the run executes, which this command does in its own process
        ({"WEWARD_LAKE_URL": "s3://lake/prefix"}, "missing environment variable(s) WEWARD_PG_URL"),
    ):
        result = subprocess.run(
            command,
            cwd=tmp_path,
            env={**env, **extra, "DAGSTER_HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 1
        assert "Traceback" not in result.stderr and expected in result.stderr, result.stderr[-2000:]
        assert len(result.stderr.splitlines()) < 12, result.stderr


def test_dagster_definitions_validate_passes_on_the_workspace():
    env = {**os.environ, **PLACEHOLDER_ENV}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def source_rows(url: str, table: str, column: str, day: str) -> int:
    """Rows of the day in PostgreSQL (Europe/Paris local day), what the export must hold."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE ({} AT TIME ZONE 'Europe/Paris')::date = %s").format(
                sql.Identifier(table), sql.Identifier(column)
            ),
            (day,),
        ).fetchone()[0]


def test_materializing_a_day_through_dagster_exports_registers_and_passes_its_checks(
    sample_catalog_file, lake_env, sample_database
):
    defs = build_definitions(load_catalog())
    key = dg.AssetKey(["lake", "step_events"])
    checks = [c for c in defs.asset_checks if any(k.asset_key == key for k in c.check_keys)]
    checks = [c for c in checks if {k.name for k in c.check_keys} & set(EXPORT_CHECKS)]
    result = dg.materialize(
        [defs.get_assets_def(key), *checks],
        partition_key="2024-03-31",
        resources=defs.resources,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    (materialization,) = [e.materialization for e in result.get_asset_materialization_events()]
    metadata = materialization.metadata
    assert materialization.partition == "2024-03-31"
    assert (
        metadata["dagster/row_count"].value
        == source_rows(sample_database, "step_events", "created_at", "2024-03-31")
        > 500
    )
    assert metadata["window_start"].value == "2024-03-31T00:00:00+01:00"
    assert metadata["window_end"].value == "2024-04-01T00:00:00+02:00"
    assert metadata["glue_table"].value == f"{lake_env['WEWARD_GLUE_DATABASE']}.step_events"
    assert metadata["s3_location"].value.startswith(lake_env["WEWARD_LAKE_URL"] + "/step_events/dt=2024-03-31/v=")
    assert [c.name for c in metadata["dagster/column_schema"].schema.columns][:3] == ["id", "user_id", "created_at"]
    assert "password" not in str(metadata) and sample_database not in str(metadata)
    evaluations = {
        e.check_name: e.passed for e in result.get_asset_check_evaluations() if e.check_name in EXPORT_CHECKS
    }
    assert evaluations == {
        "row_count_matches_source": True,
        "glue_points_at_export": True,
        "glue_schema_matches_files": True,
    }

    from weward_pipeline.config import Settings
    from weward_pipeline.export import AwsClients

    clients = AwsClients.from_settings(Settings.from_env())
    glue = GlueCatalog(clients.glue, lake_env["WEWARD_GLUE_DATABASE"])
    assert read_table(glue, clients.filesystem, "step_events").num_rows == metadata["dagster/row_count"].value

    # A published object disappears: verification (the checks' body) now fails on rows and objects.
    bucket, _, prefix = metadata["s3_location"].value.removeprefix("s3://").partition("/")
    clients.s3.delete_object(Bucket=bucket, Key=prefix + "part-00000.parquet")
    verification = verify_published_day(glue, clients.s3, clients.filesystem, "step_events", "2024-03-31")
    assert (verification.passed("row_count"), verification.passed("objects"), verification.passed("schema")) == (
        False,
        False,
        True,
    )
    assert "is missing" in verification.summary()


def test_a_bad_catalog_entry_fails_once_with_the_fix_and_is_not_retried(sample_catalog_file, lake_env):
    catalog = yaml.safe_load(sample_catalog_file.read_text())
    catalog["tables"] = [
        {"name": "step_events", "mode": "append", "partition_column": "created", "primary_key": ["id"]}
    ]
    sample_catalog_file.write_text(yaml.safe_dump(catalog))
    defs = build_definitions(load_catalog())
    result = dg.materialize(
        [defs.get_assets_def(dg.AssetKey(["lake", "step_events"]))],
        partition_key="2024-03-31",
        resources=defs.resources,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    events = result.all_events
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in events)
    failure = next(e for e in events if e.event_type_value == "STEP_FAILURE")
    assert "partition_column 'created' does not exist in public.step_events" in str(failure.event_specific_data.error)


def test_the_documented_cli_command_materializes_a_partition(sample_catalog_file, lake_env, tmp_path, sample_database):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    result = subprocess.run(
        materialize_command("lake/reward_purchases", "2024-03-31"),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    from weward_pipeline.config import Settings
    from weward_pipeline.export import AwsClients

    clients = AwsClients.from_settings(Settings.from_env())
    partition = GlueCatalog(clients.glue, lake_env["WEWARD_GLUE_DATABASE"]).get_partition(
        "reward_purchases", "2024-03-31"
    )
    assert partition["Parameters"]["weward.rows"] == str(
        source_rows(sample_database, "reward_purchases", "purchased_at", "2024-03-31")
    )
