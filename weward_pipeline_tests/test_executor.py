"""The run executor (defs/executor.py): a run reading PostgreSQL once executes in its own process,
a run of several tables forks its steps. Through the production entry point, `dagster asset
materialize`, on the local instance settings; the engine's own events say which executor ran."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from weward_pipeline_tests.conftest import materialize_command
from weward_pipeline_tests.test_definitions import REPO, sample_catalog_file  # noqa: F401 - fixture


def materialize(selection: str, tmp_path: Path) -> str:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    result = subprocess.run(
        materialize_command(selection, "2024-03-31"),
        cwd=REPO,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def test_a_one_table_run_executes_its_export_and_checks_in_the_run_process(sample_catalog_file, lake_env, tmp_path):
    output = materialize("lake/reward_purchases", tmp_path)
    assert "Executing steps in process" in output
    assert "multiprocess executor" not in output
    assert "RUN_SUCCESS" in output


def test_a_run_of_two_tables_forks_its_steps_so_the_exports_overlap(sample_catalog_file, lake_env, tmp_path):
    output = materialize("lake/reward_purchases,lake/ward_transactions", tmp_path)
    assert "Executing steps using multiprocess executor" in output
    assert "RUN_SUCCESS" in output
