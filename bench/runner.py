"""Running one export method in a process of its own, and what it cost (seconds, peak RSS)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench import data, impact
from bench.environment import REPO

BUCKET = "weward-bench"


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    modules: tuple[str, ...] = ()
    peer: bool = True  # runs in the benchmark venv; False: in the product's own venv
    scale: int = 1  # 3: the big day


METHODS = [
    Method("copy_floor", "COPY (one day) TO STDOUT (FORMAT binary) > /dev/null: the floor", peer=False),
    Method("product", "**weward_pipeline**: Extraction -> ParquetDayWriter, local Parquet", peer=False),
    Method("adbc_raw", "ADBC record batches -> ParquetWriter, no type fixes", ("adbc_driver_postgresql",), peer=False),
    Method("connectorx", "connectorx read_sql -> Arrow table -> write_table", ("connectorx",)),
    Method(
        "dlt_connectorx",
        "dlt sql_table (connectorx backend) -> filesystem Parquet",
        ("dlt", "connectorx", "sqlalchemy", "psycopg2"),
    ),
    Method("dlt_pyarrow", "dlt sql_table (pyarrow backend) -> filesystem Parquet", ("dlt", "sqlalchemy", "psycopg2")),
    Method("pandas", "pandas.read_sql (SQLAlchemy + psycopg2) -> to_parquet", ("pandas", "sqlalchemy", "psycopg2")),
]
SCALE_METHODS = [
    Method("copy_floor", "COPY floor, 3x day", peer=False, scale=3),
    Method("product", "weward_pipeline, 3x day", peer=False, scale=3),
]
S3_METHOD = Method("product_s3", "weward_pipeline export_day -> S3 (moto) + Glue", peer=False)
DEFAULT_METHODS = [m.name for m in METHODS] + ["product_s3"]


def key(method: Method) -> str:
    return method.name if method.scale == 1 else f"{method.name}@{method.scale}x"


class Runner:
    def __init__(
        self, args, pg_url: str, aws_env: dict[str, str], work: Path, rows: dict[str, int], dataset: data.Dataset
    ):
        self.args = args
        self.pg_url = pg_url
        self.aws_env = aws_env
        self.work = work
        self.rows = rows
        self.dataset = dataset
        self.psql = shutil.which("psql") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))), None)

    def run(
        self, method: Method, tag: str, cpus: set[int] | None = None, prefix: list[str] | None = None, **overrides
    ) -> dict:
        day = self.dataset.big_day if method.scale > 1 else self.dataset.day
        out = self.work / "out" / f"{key(method)}-{tag}"
        shutil.rmtree(out, ignore_errors=True)
        spec = {
            "method": method.name,
            "pg_url": self.pg_url,
            "day": day.isoformat(),
            "rows": self.rows[day.isoformat()],
            "out": str(out),
            "psql": str(self.psql) if self.psql else None,
            "bucket": BUCKET,
            **overrides,
        }
        spec_path = self.work / f"spec-{key(method)}-{tag}.json"
        result_path = self.work / f"result-{key(method)}-{tag}.json"
        spec_path.write_text(json.dumps(spec))
        result_path.unlink(missing_ok=True)
        python = self.args.peer_python if method.peer else self.args.product_python
        env = {**os.environ, **self.aws_env, "PYTHONPATH": str(REPO)}
        log_path = self.work / f"log-{key(method)}-{tag}.txt"
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [*(prefix or []), python, "-m", "bench.methods", str(spec_path), str(result_path)],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=impact.pinned(cpus),
            )
            status, rusage = _wait(process, self.args.method_timeout)
        try:
            if status != 0 or not result_path.exists():
                tail = log_path.read_text()[-1500:]
                return {"error": f"exit status {status}", "log": tail}
            result = json.loads(result_path.read_text())
            result["expected_rows"] = spec["rows"]
            result["peak_anon_kb"] = process.peak_anon_kb
            # The floor's COPY runs in psql, a child of the method's process: its RSS is the floor's.
            own = rusage.ru_maxrss if rusage else result.get("self_rss_kb", 0)
            result["peak_rss_kb"] = (
                result["children_rss_kb"]
                if result.get("transport") == "psql"
                else max(own, result.get("children_rss_kb", 0))
            )
            return result
        finally:
            shutil.rmtree(out, ignore_errors=True)


def _anon_kb(pid: int) -> int:
    """Private memory (heap, Arrow buffers) of a process: RSS without the shared library pages."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _wait(process: subprocess.Popen, timeout: float):
    """Wait for the method's process; its rusage has the peak RSS. Samples its anonymous memory too."""
    deadline = time.monotonic() + timeout
    process.peak_anon_kb = 0
    while True:
        pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, rusage
        process.peak_anon_kb = max(process.peak_anon_kb, _anon_kb(process.pid))
        if time.monotonic() > deadline:
            process.kill()
            _, status, rusage = os.wait4(process.pid, 0)
            process.returncode = -9
            return -9, rusage
        time.sleep(0.02)
