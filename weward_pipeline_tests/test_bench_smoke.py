"""A tiny run of the benchmark harness (bench/run.py), so `make bench` cannot rot unnoticed.

A few thousand rows, one round: the COPY floor and this product always run (locally and through
export_day to S3); peers whose packages are missing from the test venv are reported as skipped.
The numbers mean nothing at this size; the harness, the methods and the report are what is tested.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.impact import find_pgbench

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    results = out / "results.md"
    command = [
        sys.executable,
        "-m",
        "bench.run",
        "--rows-per-day",
        "3000",
        "--days",
        "1",
        "--big-factor",
        "3",
        "--rounds",
        "1",
        "--no-warmup",
        "--pgbench-scale",
        "1",
        "--calibrate-seconds",
        "1",
        "--quiet-seconds",
        "1",
        "--settle-seconds",
        "0.5",
        "--redact-seconds",
        "2",
        "--product-python",
        sys.executable,
        "--peer-python",
        sys.executable,
        "--results",
        str(results),
    ]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return results.read_text(), json.loads(results.with_suffix(".json").read_text())


def test_the_floor_and_the_product_export_every_row_of_the_day(smoke_run):
    _, report = smoke_run
    for method in ("copy_floor", "product", "product_s3", "copy_floor@3x", "product@3x"):
        summary = report["summaries"][method]
        assert summary["failed_runs"] == 0
        assert summary["rows_ok"], method
    assert report["summaries"]["product"]["rows"] == report["dataset"]["rows"] == 3000
    assert report["summaries"]["product@3x"]["rows"] == report["dataset"]["big_rows"] == 9000


def test_the_product_keeps_decimals_and_utc_microseconds(smoke_run):
    _, report = smoke_run
    for method in ("product", "product_s3"):
        assert report["summaries"][method]["wards_type"] == "decimal128(12, 2)"
        assert report["summaries"][method]["created_at_type"] == "timestamp[us, tz=UTC]"


def test_peers_either_ran_or_say_which_package_is_missing(smoke_run):
    text, report = smoke_run
    for peer in ("adbc_raw", "connectorx", "dlt_connectorx", "dlt_pyarrow", "pandas"):
        ran = peer in report["summaries"]
        assert ran or "no " in report["skipped"].get(peer, ""), peer
        if ran:
            assert report["summaries"][peer]["rows_ok"], peer


def test_the_report_has_the_table_the_scale_points_and_the_targets(smoke_run):
    text, _ = smoke_run
    assert "| method | seconds | rows/s | x floor | x product | peak RSS |" in text
    assert "COPY (one day) TO STDOUT (FORMAT binary)" in text
    assert "This product at two scale points" in text
    assert "`export_day` to the S3 endpoint" in text
    assert "peak RSS under 256 MB" in text


@pytest.mark.skipif(find_pgbench() is None, reason="pgbench is not installed")
def test_the_app_is_measured_quiet_while_exporting_throttled_and_redacting(smoke_run):
    text, report = smoke_run
    phases = {p["label"].split(",")[0].split(" (")[0]: p for p in report["impact"]["phases"]}
    assert set(phases) == {"quiet", "export", "redaction"}
    for phase in report["impact"]["phases"]:
        assert phase["app"]["transactions"] > 0, phase["label"]
    for label, phase in phases.items():
        if label == "export":
            assert phase["action"]["rows"] == 3000
        assert phase["locks"]["polls"] > 0, label  # the lock watcher ran alongside
    assert phases["redaction"]["action"]["rows_deleted"] > 0
    assert "throttled to" in text
    assert "| redaction (first 2 s) |" in text
