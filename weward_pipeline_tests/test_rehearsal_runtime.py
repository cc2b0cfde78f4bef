"""Each job under its ECS task's runtime (issue 11): non-root uid, read-only root file system,
only the task's volumes writable (Fargate's ownership rule), the task definition's environment
and secrets, the scheduler's exact command. See weward_pipeline_tests/rehearsal/runtime.py."""

from __future__ import annotations

import pytest

from weward_pipeline.config import SAMPLE_CATALOG
from weward_pipeline_tests.rehearsal import runtime
from weward_pipeline_tests.rehearsal.main_rendering import main_tasks
from weward_pipeline_tests.rehearsal.stage import Stage


@pytest.fixture(scope="module")
def stage(pg_server, aws_server, recording_proxy, stack_dir):
    if runtime.bwrap_available() is None:
        pytest.fail("bubblewrap is missing: run scripts/install-system-deps.sh (apt-get install bubblewrap)")
    base = stack_dir / "rehearsal-runtime"
    base.mkdir()
    base.chmod(0o755)
    return Stage.build(pg_server, aws_server, recording_proxy, base)


def test_volumes_follow_fargates_ownership_rule(tmp_path):
    image = runtime.Image(
        env={}, user=(10001, 10001), workdir="/", volumes=("/tmp", "/data"), owned={"/data": (10001, 10001)}, files={}
    )
    undeclared = runtime.volume_directory("/scratch", image, tmp_path, (10001, 10001))
    declared = runtime.volume_directory("/data", image, tmp_path, (10001, 10001))
    tmp = runtime.volume_directory("/tmp", image, tmp_path, (10001, 10001))
    assert (undeclared.stat().st_uid, oct(undeclared.stat().st_mode & 0o7777)) == (runtime.UNMAPPED_ID, "0o755")
    assert declared.stat().st_uid == 0 and oct(tmp.stat().st_mode & 0o7777) == "0o1777"


def test_mains_export_task_cannot_write_a_temporary_file_on_fargate(stage):
    """Defect 3 on main's deployment: the task's volumes are root-owned 0755 (no VOLUME in the
    image), the root file system is read-only, so the export fails before touching anything."""
    image = runtime.read_dockerfile(runtime.DOCKERFILE_AT_MAIN, tables_file=str(SAMPLE_CATALOG))
    run = stage.run("export-main", main_tasks()["export"], image)
    output = run.result.stdout + run.result.stderr
    assert run.result.returncode != 0, output[-2000:]
    assert "No usable temporary directory found in ['/tmp', '/var/tmp', '/usr/tmp', '/opt/dagster/app']" in output
    assert stage.proxy.for_job("export-main") == []  # nothing reached S3
