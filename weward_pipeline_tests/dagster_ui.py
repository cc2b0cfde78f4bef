"""The Dagster webserver and daemon as real subprocesses on a temp DAGSTER_HOME, and their GraphQL API.

Used by the UI tests: they drive the product the way its users do (the UI's own GraphQL
mutations, the daemon's schedules, sensors, run queue and backfills), not through Python calls.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from weward_pipeline.devstack.processes import free_port, pid_alive, wait_for

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCATION = "weward_pipeline"

WORKSPACE_QUERY = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { repositories { name } }
          ... on PythonError { message }
        }
      }
    }
  }
}
"""

DAEMONS_QUERY = """
query Daemons {
  instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } }
}
"""


class DagsterProcesses:
    """`dagster-webserver` (and optionally `dagster-daemon run`) on free ports, stopped by PID."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / "dagster.yaml", self.home / "dagster.yaml")
        # Dagster's beta/preview warnings would bury the lines that matter in the logs we show.
        self.env = {**os.environ, **env, "DAGSTER_HOME": str(self.home), "PYTHONWARNINGS": "ignore"}
        self.port = free_port()
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.home / f"{name}.log", "wb")
        # Own process group: the webserver and daemon start code servers; stopping the group by its
        # id (the PID we started) stops those too, and nothing else.
        self.procs[name] = subprocess.Popen(
            args, env=self.env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def start(self, daemon: bool = True) -> DagsterProcesses:
        workspace = str(REPO_ROOT / "workspace.yaml")
        self._spawn(
            "webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.port), "-w", workspace]
        )
        if daemon:
            self._spawn("daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace])
        return self

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for name in self.procs:
            path = self.home / f"{name}.log"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            out.append(f"--- {name}.log (last {len(text)} lines) ---\n" + "\n".join(text))
        return "\n".join(out)

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"dagster {name} exited with {proc.returncode}\n{self.log_tail()}")

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # a query the schema rejects: show why
            raise AssertionError(f"GraphQL HTTP {exc.code}: {exc.read().decode(errors='replace')[:2000]}") from None
        if payload.get("errors"):
            raise AssertionError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def wait_ready(self, timeout: float = 180, daemons: tuple[str, ...] = ()) -> None:
        """Webserver answers, the code location is loaded, and the named daemons report healthy."""

        def location_loaded() -> bool:
            self._check_alive()
            entries = self.graphql(WORKSPACE_QUERY, timeout=10)["workspaceOrError"]["locationEntries"]
            entry = next(e for e in entries if e["name"] == LOCATION)
            result = entry["locationOrLoadError"]
            if result and result["__typename"] == "PythonError":
                raise RuntimeError(f"code location failed to load: {result['message']}")
            return entry["loadStatus"] == "LOADED" and result["__typename"] == "RepositoryLocation"

        def daemons_healthy() -> bool:
            self._check_alive()
            statuses = self.graphql(DAEMONS_QUERY, timeout=10)["instance"]["daemonHealth"]["allDaemonStatuses"]
            healthy = {s["daemonType"] for s in statuses if s["healthy"]}
            return set(daemons) <= healthy

        try:
            wait_for(location_loaded, timeout, "the Dagster webserver to load the code location", interval=1)
            if daemons:
                wait_for(daemons_healthy, timeout, f"daemons {', '.join(daemons)} to be healthy", interval=1)
        except (TimeoutError, RuntimeError) as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The group may outlive its leader (a code server still shutting down).
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.procs.clear()


def wait_http(url: str, timeout: float) -> None:
    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except urllib.error.URLError:
            return False

    wait_for(answers, timeout, f"{url} to answer", interval=0.5)


__all__ = ["DagsterProcesses", "pid_alive", "wait_http"]
