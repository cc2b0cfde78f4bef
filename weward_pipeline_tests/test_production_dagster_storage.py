"""deploy/dagster.yaml against a real PostgreSQL server: the production storage section, verbatim.

Only the run launcher is swapped (EcsRunLauncher needs ECS); everything else, storage, queue,
pools and run monitoring, is the production file. A materialization goes through it and is read
back from PostgreSQL by a second instance and by plain SQL.
"""

from pathlib import Path
from urllib.parse import unquote, urlsplit

import dagster as dg
import psycopg
import pytest
import yaml

PRODUCTION_YAML = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"
POOL = "postgres_source"  # weward_pipeline.defs.assets.SOURCE_POOL

partitions = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="Europe/Paris")


@dg.asset(key=["lake", "storage_probe"], partitions_def=partitions, pool=POOL)
def storage_probe(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"partition": context.partition_key, "rows": 42})


def production_config() -> dict:
    return yaml.safe_load(PRODUCTION_YAML.read_text())


def production_dagster_home(
    database_url: str, tmp_path: Path, monkeypatch, *, compute_log_bucket: str | None = None
) -> Path:
    """$DAGSTER_HOME holding deploy/dagster.yaml (default run launcher instead of ECS), its
    DAGSTER_PG_* pointing at `database_url`; step logs go to `compute_log_bucket` (S3, the
    production prefix), staged under $DAGSTER_HOME/storage instead of the image's path."""
    url = urlsplit(database_url)
    monkeypatch.setenv("DAGSTER_PG_HOST", url.hostname)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port))
    monkeypatch.setenv("DAGSTER_PG_DB", url.path.lstrip("/"))
    monkeypatch.setenv("DAGSTER_PG_USERNAME", unquote(url.username))
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", unquote(url.password))
    monkeypatch.delenv("PGSSLMODE", raising=False)  # production sets verify-full; the test server has no TLS

    monkeypatch.setenv("DAGSTER_COMPUTE_LOG_BUCKET", compute_log_bucket or "no-compute-logs-in-this-test")
    monkeypatch.setenv("DAGSTER_COMPUTE_LOG_PREFIX", "_dagster/compute-logs")

    config = production_config()
    config["run_launcher"] = {"module": "dagster", "class": "DefaultRunLauncher"}
    home = tmp_path / "dagster_home"
    home.mkdir()
    config["compute_logs"]["config"]["local_dir"] = str(home / "storage")
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def production_instance(fresh_database, tmp_path, monkeypatch):
    """A DagsterInstance from deploy/dagster.yaml whose DAGSTER_PG_* point at a fresh database."""
    home = production_dagster_home(fresh_database, tmp_path, monkeypatch)
    instance = dg.DagsterInstance.from_config(str(home))
    yield instance, home, fresh_database
    instance.dispose()


def test_production_config_names_psycopg2_the_ecs_launcher_and_the_source_pool_limit():
    config = production_config()
    postgres_db = config["storage"]["postgres"]["postgres_db"]
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which dagster-postgres cannot use.
    assert postgres_db["scheme"] == "postgresql+psycopg2"
    assert {postgres_db[k]["env"] for k in ("hostname", "port", "db_name", "username", "password")} == {
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_PORT",
        "DAGSTER_PG_DB",
        "DAGSTER_PG_USERNAME",
        "DAGSTER_PG_PASSWORD",
    }
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert (config["run_launcher"]["module"], config["run_launcher"]["class"]) == ("dagster_aws.ecs", "EcsRunLauncher")
    assert config["run_launcher"]["config"]["container_name"] == "run-worker"  # infra/modules/export_job
    assert config["concurrency"]["pools"]["default_limit"] == 2
    assert config["concurrency"]["runs"]["max_concurrent_runs"] >= 1
    assert config["run_monitoring"]["enabled"] is True
    # Killed runs must not hold their pool slots for good (issue 11, defect 6).
    assert 0 < config["run_monitoring"]["free_slots_after_run_end_seconds"] <= 300


def test_the_production_ecs_launcher_config_is_valid_for_dagster_aws():
    from dagster._config import process_config
    from dagster_aws.ecs import EcsRunLauncher

    launcher = production_config()["run_launcher"]["config"]
    result = process_config(EcsRunLauncher.config_type(), {**launcher, "task_definition": "weward-prod-export"})
    assert result.success, result.errors


def test_a_materialization_is_stored_in_and_read_back_from_postgres(production_instance):
    instance, home, database_url = production_instance
    stored = yaml.safe_load((home / "dagster.yaml").read_text())
    assert stored["storage"] == production_config()["storage"]
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"

    result = dg.materialize([storage_probe], instance=instance, partition_key="2024-03-31")
    assert result.success

    # A second instance, as the webserver would open it: nothing comes from process memory.
    reader = dg.DagsterInstance.from_config(str(home))
    try:
        event = reader.get_latest_materialization_event(dg.AssetKey(["lake", "storage_probe"]))
        assert event is not None and event.run_id == result.run_id
        materialization = event.asset_materialization
        assert materialization.partition == "2024-03-31"
        assert materialization.metadata["rows"].value == 42
        assert reader.get_run_by_id(result.run_id).is_success
        # The pool from dagster.yaml was created in the storage with its default limit.
        assert reader.event_log_storage.get_concurrency_info(POOL).slot_count == 2
    finally:
        reader.dispose()

    with psycopg.connect(database_url) as conn:
        (events,) = conn.execute(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND run_id = %s",
            (result.run_id,),
        ).fetchone()
        (status,) = conn.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,)).fetchone()
    assert events == 1
    assert status == "SUCCESS"
