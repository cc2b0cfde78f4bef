"""The README's first command: one call sets up the local stack and runs the export."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import sys
from pathlib import Path

from weward_pipeline.devstack.processes import pid_alive

REPO = Path(__file__).resolve().parents[1]


def run_demo(stack_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEWARD_", "AWS_"))}
    env.update(WEWARD_STACK_DIR=str(stack_dir))
    return subprocess.run(
        [str(Path(sys.executable).parent / "weward-pipeline"), "demo", "--days", "2", "--users", "200", *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )


def test_demo_runs_twice_in_a_row_and_stops_its_servers():
    base = Path(tempfile.mkdtemp(prefix="weward-demo-"))
    os.chmod(base, 0o755)  # pytest's tmp_path is private to root; the PostgreSQL user must traverse it
    stack_dir = base / "stack"
    first = run_demo(stack_dir, "--keep")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert "demo OK" in first.stdout
    for table in ("users", "step_events", "ward_transactions", "reward_offers", "reward_purchases", "contest_participations"):
        assert f"\n{table} " in first.stdout, f"{table} missing from the summary"
    state = json.loads((stack_dir / "state.json").read_text())
    moto_pid = state["moto_pid"]
    pg_pid = int((stack_dir / "postgres" / "pgdata" / "postmaster.pid").read_text().split()[0])
    assert pid_alive(moto_pid) and pid_alive(pg_pid)

    second = run_demo(stack_dir)  # replaces the kept stack, then stops everything
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    assert not pid_alive(moto_pid) and not pid_alive(pg_pid)
    assert not stack_dir.exists()


def test_dev_serves_the_dagster_ui_on_the_local_stack_and_cleans_up_on_sigterm():
    import signal
    import urllib.request

    from weward_pipeline.devstack.processes import free_port, wait_for

    base = Path(tempfile.mkdtemp(prefix="weward-dev-"))
    os.chmod(base, 0o755)
    stack_dir = base / "stack"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEWARD_", "AWS_"))}
    env.update(WEWARD_STACK_DIR=str(stack_dir))
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "weward-pipeline"), "dev", "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        graphql = f"http://127.0.0.1:{port}/graphql"

        def asset_keys() -> set[str]:
            request = urllib.request.Request(
                graphql, data=json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                nodes = json.loads(response.read())["data"]["assetNodes"]
            return {"/".join(n["assetKey"]["path"]) for n in nodes}

        wait_for(lambda: "lake/step_events" in asset_keys(), 240, "the Dagster UI to serve the code location")
        assert {"postgres/users", "lake/users", "redaction/step_events"} <= asset_keys()
        state = json.loads((stack_dir / "state.json").read_text())
        assert pid_alive(state["moto_pid"])
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) is not None
    assert not pid_alive(state["moto_pid"])
    assert not stack_dir.exists()
