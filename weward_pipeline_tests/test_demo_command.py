"""`weward-pipeline dev` on a stack it starts itself. (`make demo` twice in a row, stopping its servers,
and `dev` on a kept stack are in test_newcomer.py, which drives them from a fresh clone.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from weward_pipeline.devstack.processes import pid_alive

REPO = Path(__file__).resolve().parents[1]


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
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        graphql = f"http://127.0.0.1:{port}/graphql"

        def asset_keys() -> set[str]:
            request = urllib.request.Request(
                graphql,
                data=json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode(),
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
