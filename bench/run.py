"""The benchmark: export one day by each method, interleaved over rounds, and what it costs the app.

    python -m bench.run                       # the published run (make bench)
    python -m bench.run --rows-per-day 3000 --rounds 1 --methods copy_floor,product,product_s3

Sets up its own PostgreSQL server and S3/Glue endpoint (moto), generates the table, runs each
method in its own process (so peak RSS is that method's), reports medians, and writes the table
to bench/results.md (and the raw numbers to bench/results.json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench import data, impact, profile

REPO = Path(__file__).resolve().parent.parent
BUCKET = "weward-bench"
TARGET_FLOOR_RATIO = 1.3
TARGET_RSS_MB = 256
# "Flat" memory: the 3x day may use at most this much more than the 1x day.
RSS_FLAT_TOLERANCE = 0.10


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
    Method("dlt_connectorx", "dlt sql_table (connectorx backend) -> filesystem Parquet", ("dlt", "connectorx", "sqlalchemy", "psycopg2")),
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


# -- environment ---------------------------------------------------------------------------------

def default_python(venv: str) -> str:
    candidate = REPO / venv / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def has_modules(python: str, modules: tuple[str, ...]) -> list[str]:
    """The modules in `modules` that `python` cannot import."""
    if not modules:
        return []
    code = "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
    out = subprocess.run([python, "-c", code, *modules], capture_output=True, text=True, check=True).stdout
    return out.split()


def versions(python: str, packages: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(p):\n try: return m.version(p)\n except m.PackageNotFoundError: return None\n"
        "print(json.dumps({p: v(p) for p in sys.argv[1:]}))"
    )
    out = subprocess.run([python, "-c", code, *packages], capture_output=True, text=True, check=True).stdout
    return {k: v for k, v in json.loads(out).items() if v}


def machine_line(pg_version: str, product_versions: dict[str, str]) -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    libs = ", ".join(f"{k} {v}" for k, v in product_versions.items())
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, {platform.system()} {platform.release()}; "
        f"PostgreSQL {pg_version} (local, same machine); Python {platform.python_version()}; {libs}"
    )


# -- running one method --------------------------------------------------------------------------

class Runner:
    def __init__(self, args, pg_url: str, aws_env: dict[str, str], work: Path, rows: dict[str, int], dataset: data.Dataset):
        self.args = args
        self.pg_url = pg_url
        self.aws_env = aws_env
        self.work = work
        self.rows = rows
        self.dataset = dataset
        self.psql = shutil.which("psql") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))), None)

    def run(self, method: Method, tag: str, cpus: set[int] | None = None, prefix: list[str] | None = None,
            **overrides) -> dict:
        day = self.dataset.big_day if method.scale > 1 else self.dataset.day
        out = self.work / "out" / f"{key(method)}-{tag}"
        shutil.rmtree(out, ignore_errors=True)
        spec = {
            "method": method.name, "pg_url": self.pg_url, "day": day.isoformat(), "rows": self.rows[day.isoformat()],
            "out": str(out), "psql": str(self.psql) if self.psql else None, "bucket": BUCKET, **overrides,
        }
        spec_path = self.work / f"spec-{key(method)}-{tag}.json"
        result_path = self.work / f"result-{key(method)}-{tag}.json"
        spec_path.write_text(json.dumps(spec))
        result_path.unlink(missing_ok=True)
        python = self.args.peer_python if method.peer else self.args.product_python
        env = {**os.environ, **self.aws_env, "PYTHONPATH": str(REPO)}
        log_path = self.work / f"log-{key(method)}-{tag}.txt"
        with open(log_path, "w") as log:
            process = subprocess.Popen([*(prefix or []), python, "-m", "bench.methods", str(spec_path), str(result_path)],
                                       cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       preexec_fn=impact.pinned(cpus))
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
            result["peak_rss_kb"] = result["children_rss_kb"] if result.get("transport") == "psql" else max(own, result.get("children_rss_kb", 0))
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


# -- the measurement -----------------------------------------------------------------------------

def run_rounds(runner: Runner, methods: list[Method], rounds: int, say, slow_after: float = 0) -> dict[str, list[dict]]:
    """Every method once per round, the order rotating. A method slower than `slow_after` seconds
    in round 1 (pandas, dlt: minutes) is not repeated: its median would not change a conclusion."""
    results: dict[str, list[dict]] = {key(m): [] for m in methods}
    for round_ in range(rounds):
        shift = round_ % len(methods)
        order = methods[shift:] + methods[:shift]  # rotate so no method always runs first or last
        for method in order:
            done = results[key(method)]
            if slow_after and done and all(r.get("seconds", 0) > slow_after for r in done):
                continue
            load = os.getloadavg()[0]
            result = runner.run(method, f"r{round_}")
            result["loadavg_before"] = load
            results[key(method)].append(result)
            if "error" in result:
                say(f"  round {round_ + 1}: {key(method):16s} FAILED ({result['error']})\n{result['log']}")
            else:
                say(f"  round {round_ + 1}: {key(method):16s} {result['seconds']:7.2f} s  "
                    f"{result['peak_rss_kb'] / 1024:7.0f} MB")
    return results


def summarize(runs: list[dict]) -> dict | None:
    good = [r for r in runs if "error" not in r]
    if not good:
        return None
    # The run with the median time stands for the method (its read_s, bytes...); RSS is the worst run's.
    summary = dict(sorted(good, key=lambda r: r["seconds"])[(len(good) - 1) // 2])
    summary["seconds"] = statistics.median(r["seconds"] for r in good)
    summary["seconds_all"] = [round(r["seconds"], 2) for r in good]
    summary["peak_rss_kb"] = max(r["peak_rss_kb"] for r in good)
    summary["peak_anon_kb"] = max(r.get("peak_anon_kb", 0) for r in good)
    summary["runs"] = len(good)
    summary["loadavg_max"] = max(r.get("loadavg_before", 0) for r in good)
    summary["failed_runs"] = len(runs) - len(good)
    summary["rows_ok"] = all(r.get("rows", r["expected_rows"]) == r["expected_rows"] for r in good)
    return summary


def day_ids(dataset: data.Dataset) -> tuple[int, int]:
    """The id range of the exported day (data.load numbers rows day after day from 1)."""
    index = (dataset.day - dataset.first_day).days
    first = 1 + index * dataset.rows_per_day
    return first, first + dataset.rows_per_day - 1


def measure_impact(runner: Runner, args, product_seconds: float, rows: int, say, pg, aws) -> dict:
    pgbench = impact.find_pgbench()
    if not pgbench:
        return {"skipped": "pgbench not found (Debian package postgresql-client)"}
    url = runner.pg_url
    touch = day_ids(runner.dataset)
    say("impact: pgbench -i")
    impact.pgbench_init(pgbench, url, args.pgbench_scale)
    split = impact.split_cpus() if not args.no_pin else None
    server_cpus, client_cpus = split or (None, None)
    if split:
        # The database and the pipeline run on different machines in production: give the server its
        # own CPU(s) so the pipeline's Parquet encoding and moto do not pass for load on the database.
        impact.pin_tree(pg.pid(), server_cpus)
        if aws.pid:
            impact.pin_tree(aws.pid, client_cpus)
        say(f"impact: PostgreSQL pinned to CPU {sorted(server_cpus)}, pipeline and pgbench to CPU {sorted(client_cpus)}")
    capacity = impact.max_tps(pgbench, url, args.calibrate_seconds, cpus=client_cpus, touch_ids=touch)
    rate = max(10.0, round(capacity * args.app_load))
    say(f"impact: app capacity {capacity:.0f} tps quiet; the app runs at {rate:.0f} tps ({args.app_load:.0%})")

    def quiet():
        time.sleep(args.quiet_seconds)
        return {"seconds": args.quiet_seconds}

    def export(throttle: float | None):
        def action():
            overrides = {"max_rows_per_second": throttle} if throttle else {}
            return runner.run(Method("product", "", peer=False), f"impact-{int(throttle or 0)}", cpus=client_cpus, **overrides)
        return action

    phases = [_phase("quiet (no pipeline)", quiet, args.quiet_seconds, pgbench, url, rate, args, client_cpus, touch, say)]
    phases.append(_phase("export, unthrottled", export(None), product_seconds * 2 + 10, pgbench, url, rate, args,
                         client_cpus, touch, say))
    # Throttles are fractions of what the export did here, under the app load, on its own CPU.
    unthrottled = phases[-1]["action"]
    product_rate = rows / (unthrottled["seconds"] if "seconds" in unthrottled else product_seconds)
    for fraction in args.throttles:
        throttle = round(product_rate * fraction, -3) or 1000
        phases.append(_phase(f"export, throttled to {throttle:,.0f} rows/s ({fraction:.0%})", export(throttle),
                             rows / throttle * 1.3 + 5, pgbench, url, rate, args, client_cpus, touch, say))
        phases[-1]["throttle"] = throttle
    keyed_export = None
    if args.redact_seconds > 0:
        say("impact: export_day with redaction keys (retention_days set), for the redaction")
        keyed_export = runner.run(S3_METHOD, "keys", cpus=client_cpus, retention_days=REDACT_RETENTION_DAYS)
        if "error" in keyed_export:
            say(f"  FAILED: {keyed_export['error']}\n{keyed_export.get('log', '')}")
        else:
            def redaction():
                return runner.run(Method("redact", "", peer=False), "impact", cpus=client_cpus,
                                  retention_days=REDACT_RETENTION_DAYS, redact_seconds=args.redact_seconds)
            phases.append(_phase(f"redaction (first {args.redact_seconds:.0f} s)", redaction,
                                 args.redact_seconds + 15, pgbench, url, rate, args, client_cpus, touch, say))
    return {"capacity_tps": capacity, "rate_tps": rate, "phases": phases, "keyed_export": keyed_export,
            "server_cpus": sorted(server_cpus) if server_cpus else None,
            "pgbench_scale": args.pgbench_scale, "lock_timeout_s": _lock_timeout()}


REDACT_RETENTION_DAYS = 30


def _phase(label, action, expected, pgbench, url, rate, args, cpus, touch, say) -> dict:
    say(f"impact: {label}")
    measured = impact.run_under_load(pgbench, url, rate, expected, action, settle_s=args.settle_seconds,
                                     cpus=cpus, touch_ids=touch)
    measured["label"] = label
    outcome = measured["action"]
    if isinstance(outcome, dict) and "error" in outcome:
        say(f"  FAILED: {outcome['error']}\n{outcome.get('log', '')}")
    app = measured["app"]
    say(f"  app {app['tps']:.0f} tps, p99 {app['p99_ms']:.1f} ms; pipeline xact "
        f"{measured['locks']['longest_pipeline_xact_s']:.1f} s; app waited on pipeline "
        f"{measured['locks']['longest_app_wait_on_pipeline_s']:.2f} s")
    return measured


def _lock_timeout() -> int:
    from weward_pipeline.extract import ExtractLimits

    return ExtractLimits().lock_timeout_s


# -- report --------------------------------------------------------------------------------------

def _mb(kb: float) -> str:
    return f"{kb / 1024:,.0f} MB"


def _decimal_verdict(arrow_type: str | None) -> str:
    if not arrow_type:
        return "n/a"
    if arrow_type == "decimal128(12, 2)":
        return "decimal(12,2) exact"
    if arrow_type.startswith("decimal"):
        return arrow_type.replace("decimal128", "decimal").replace(" ", "") + " (p,s changed)"
    return f"{arrow_type}: LOST"


def _tz_verdict(arrow_type: str | None) -> str:
    if not arrow_type:
        return "n/a"
    if "tz=" not in arrow_type:
        return f"{arrow_type}: zone LOST"
    unit = arrow_type.split("[", 1)[1].split(",", 1)[0]
    zone = arrow_type.split("tz=", 1)[1].rstrip("]")
    utc = zone in ("UTC", "+00:00", "Etc/UTC")
    return f"UTC {unit}" + (" exact" if utc and unit == "us" else "") if utc else f"{zone} {unit}"


def render(report: dict) -> str:
    lines = []
    ds = report["dataset"]
    lines.append(f"Machine: {report['machine']}")
    lines.append("")
    lines.append(
        f"One day of `bench.step_events` ({ds['rows']:,} rows, {ds['day']}, {ds['columns']}), zstd; "
        f"{report['rounds']} interleaved round(s), median seconds, peak RSS = max over rounds; "
        f"run {report['started']} in {report['total_minutes']:.1f} min; 1-minute load average before each run: "
        f"median {report['loadavg']['median']:.1f}, max {report['loadavg']['max']:.1f} (the machine has {os.cpu_count()} cores; "
        "above that, other processes were competing for them)."
    )
    lines.append("")
    lines.append("| method | seconds | rows/s | x floor | x product | peak RSS | of it private | output | numeric(12,2) became | timestamptz became |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    summaries = report["summaries"]
    floor = summaries.get("copy_floor")
    product = summaries.get("product")
    for method in METHODS:
        s = summaries.get(method.name)
        if method.name in report["skipped"]:
            lines.append(f"| {method.label} | skipped: {report['skipped'][method.name]} | | | | | | | | |")
            continue
        if s is None:
            if method.name in report["failed"]:
                lines.append(f"| {method.label} | failed: {report['failed'][method.name]} | | | | | | | | |")
            continue
        rows = s["expected_rows"]
        runs = "" if s["runs"] == report["rounds"] else f" ({s['runs']} run{'s' if s['runs'] > 1 else ''})"
        cells = [
            method.label, f"{s['seconds']:.2f}{runs}", f"{rows / s['seconds']:,.0f}",
            f"{s['seconds'] / floor['seconds']:.2f}" if floor else "", f"{s['seconds'] / product['seconds']:.2f}" if product else "",
            _mb(s["peak_rss_kb"]), _mb(s["peak_anon_kb"]) if method.name != "copy_floor" else "",
            _mb(s["bytes"] / 1024) if s.get("bytes") else "-",
            _decimal_verdict(s.get("wards_type")) if method.name != "copy_floor" else "(binary, not decoded)",
            _tz_verdict(s.get("created_at_type")) if method.name != "copy_floor" else "",
        ]
        if not s["rows_ok"]:
            cells[0] += f" (WRONG ROW COUNT: {s.get('rows')})"
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    scale = report.get("scale")
    if scale:
        lines.append(f"This product at two scale points (the {ds['big_factor']}x day: {ds['big_rows']:,} rows, {ds['big_day']}):")
        lines.append("")
        lines.append("| day | rows | floor s | product s | x floor | rows/s | peak RSS |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for label, f_key, p_key in (("1x", "copy_floor", "product"), (f"{ds['big_factor']}x", "copy_floor@3x", "product@3x")):
            f, p = summaries.get(f_key), summaries.get(p_key)
            if not p:
                continue
            lines.append(
                f"| {label} | {p['expected_rows']:,} | {f['seconds']:.2f} | {p['seconds']:.2f} | {p['seconds'] / f['seconds']:.2f} | "
                f"{p['expected_rows'] / p['seconds']:,.0f} | {_mb(p['peak_rss_kb'])} |"
            )
        lines.append("")
    s3 = summaries.get("product_s3")
    if s3:
        lines.append(
            f"Through the public path, `export_day` to the S3 endpoint (moto, a Python server on the same 2 cores) and Glue: "
            f"{s3['seconds']:.2f} s end to end ({s3['seconds'] / floor['seconds']:.2f}x the floor; reading and writing "
            f"{s3['read_s']:.2f} s, the rest is the manifest, Glue and cleanup), peak RSS {_mb(s3['peak_rss_kb'])}, "
            f"{_mb(s3['bytes'] / 1024)} in {s3['files']} object(s), {_decimal_verdict(s3['wards_type'])}, {_tz_verdict(s3['created_at_type'])}."
            if floor else f"export_day to S3: {s3['seconds']:.2f} s"
        )
        lines.append("")
    targets = report.get("targets")
    if targets:
        lines.append("Targets for this product (local Parquet, like the others):")
        lines.append("")
        for name, (ok, detail) in targets.items():
            lines.append(f"- {'met' if ok else 'MISSED'}: {name} ({detail})")
        lines.append("")
    prof = report.get("profile")
    if prof:
        lines.append(f"Where this product's time goes: one more export under py-spy ({prof['seconds']:.2f} s with the "
                     "profiler's overhead), each thread's samples, waiting included.")
        lines.append("")
        lines.append("| the export's timeline (main thread) | share | the Parquet writer thread beside it | share |")
        lines.append("|---|---:|---|---:|")
        main, writer = prof["stages"]["main"], prof["stages"]["writer"]
        for index in range(max(len(main), len(writer))):
            left = main[index] if index < len(main) else ("", None)
            right = writer[index] if index < len(writer) else ("", None)
            lines.append(f"| {left[0]} | {'' if left[1] is None else f'{left[1]:.0%}'} | "
                         f"{right[0]} | {'' if right[1] is None else f'{right[1]:.0%}'} |")
        lines.append("")
    imp = report.get("impact")
    if imp:
        lines.extend(render_impact(imp))
    return "\n".join(lines).rstrip() + "\n"


def render_impact(imp: dict) -> list[str]:
    if "skipped" in imp:
        return [f"Impact on the application: skipped ({imp['skipped']}).", ""]
    pinned = (f" PostgreSQL had CPU {imp['server_cpus']} to itself, the pipeline and pgbench the other(s), as the "
              "database and the pipeline run on different machines in production." if imp.get("server_cpus") else "")
    lines = [
        f"Impact on the application: pgbench at a fixed {imp['rate_tps']:.0f} tps, 4 clients "
        f"({imp['rate_tps'] / imp['capacity_tps']:.0%} of the {imp['capacity_tps']:.0f} tps the server does when quiet): TPC-B-like read/write mix on its own tables "
        f"(scale {imp['pgbench_scale']}), plus the app inserting step syncs into the exported table and updating "
        f"random old rows of the exported day. p99 includes schedule lag, i.e. what a user waits.{pinned} "
        f"The export's lock_timeout is {imp['lock_timeout_s']} s.",
        "",
        "| while | pipeline s | app tps | app p50 ms | app p99 ms | longest app wait on a pipeline lock | longest pipeline transaction |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for phase in imp["phases"]:
        action = phase["action"] if isinstance(phase["action"], dict) else {}
        app, locks = phase["app"], phase["locks"]
        if phase["label"].startswith("quiet"):
            pipeline = "-"
        elif "error" in action:
            pipeline = "failed"
        elif "rows_deleted" in action:
            pipeline = f"{action['seconds']:.1f} ({action['rows_deleted']:,} rows deleted in {action['batches']:,} batches)"
        else:
            pipeline = f"{action['seconds']:.1f}"
        lines.append(
            f"| {phase['label']} | {pipeline} | {app['tps']:.0f} | {app['p50_ms']:.1f} | {app['p99_ms']:.1f} | "
            f"{locks['longest_app_wait_on_pipeline_s']:.2f} s | {locks['longest_pipeline_xact_s']:.2f} s |"
        )
    lines.append("")
    keyed = imp.get("keyed_export")
    if keyed and "error" not in keyed:
        lines.append(
            f"Before the redaction, the day was exported again with `retention_days` set (export_day to S3, which then "
            f"also records a fingerprint per row for redaction): {keyed['seconds']:.2f} s, peak RSS {_mb(keyed['peak_rss_kb'])}."
        )
        lines.append("")
    return lines


def evaluate(summaries: dict) -> dict:
    floor, product = summaries.get("copy_floor"), summaries.get("product")
    if not floor or not product:
        return {}
    targets = {}
    ratio = product["seconds"] / floor["seconds"]
    targets[f"within {TARGET_FLOOR_RATIO}x of the COPY floor"] = (ratio <= TARGET_FLOOR_RATIO, f"{ratio:.2f}x")
    peers = {k: v for k, v in summaries.items() if k not in ("copy_floor", "product", "product_s3") and "@" not in k}
    if peers:
        slowest_gap = min(v["seconds"] / product["seconds"] for v in peers.values())
        fastest = min(peers, key=lambda k: peers[k]["seconds"])
        targets["faster than every peer"] = (slowest_gap > 1, f"fastest peer {fastest} takes {slowest_gap:.2f}x the product's time")
    rss = [product["peak_rss_kb"]]
    big = summaries.get("product@3x")
    if big:
        rss.append(big["peak_rss_kb"])
    targets[f"peak RSS under {TARGET_RSS_MB} MB"] = (max(rss) < TARGET_RSS_MB * 1024, " and ".join(_mb(r) for r in rss))
    if big:
        growth = big["peak_rss_kb"] / product["peak_rss_kb"] - 1
        targets["same peak RSS at 1x and 3x rows"] = (abs(growth) <= RSS_FLAT_TOLERANCE, f"{growth:+.0%} at 3x the rows")
    exact = product.get("wards_type") == "decimal128(12, 2)" and product.get("created_at_type") == "timestamp[us, tz=UTC]"
    targets["exact types"] = (exact, f"{product.get('wards_type')}, {product.get('created_at_type')}")
    return targets


# -- main ----------------------------------------------------------------------------------------

def parse_args(argv: list[str]):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows-per-day", type=int, default=2_000_000)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--big-factor", type=int, default=3, help="the product's second scale point (0: none)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated, from {', '.join(DEFAULT_METHODS)}")
    parser.add_argument("--no-impact", action="store_true", help="skip the pgbench measurements")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed cache-warming reads")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of the product")
    parser.add_argument("--pgbench-scale", type=int, default=10)
    parser.add_argument("--no-pin", action="store_true", help="do not give PostgreSQL its own CPU during the impact runs")
    parser.add_argument("--calibrate-seconds", type=float, default=8)
    parser.add_argument("--quiet-seconds", type=float, default=15)
    parser.add_argument("--settle-seconds", type=float, default=2, help="app load before and after each pipeline run")
    parser.add_argument("--app-load", type=float, default=0.3,
                        help="app rate as a fraction of the server's quiet capacity (an OLTP primary with headroom)")
    parser.add_argument("--throttles", default="0.5", help="fractions of the unthrottled rate to try, comma-separated")
    parser.add_argument("--redact-seconds", type=float, default=60,
                        help="how long the redaction runs under the app load (0: skip it)")
    parser.add_argument("--method-timeout", type=float, default=900)
    parser.add_argument("--slow-after", type=float, default=40,
                        help="run a method only once if its first run took longer (seconds; 0: always repeat)")
    parser.add_argument("--product-python", default=default_python(".venv"))
    parser.add_argument("--peer-python", default=default_python(".venv-bench"))
    parser.add_argument("--results", default=str(REPO / "bench" / "results.md"))
    parser.add_argument("--work-dir", help="default: a new directory under /tmp, removed at the end")
    args = parser.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    args.throttles = [float(x) for x in args.throttles.split(",") if x]
    unknown = set(args.methods) - set(DEFAULT_METHODS)
    if unknown:
        parser.error(f"unknown method(s) {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    from weward_pipeline.devstack.aws import LocalAws
    from weward_pipeline.devstack.postgres import LocalPostgres

    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    started_at = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {message}", flush=True)

    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="weward-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)  # the PostgreSQL server runs as its own user when we are root
    pg = LocalPostgres(work / "pg")
    aws = LocalAws(work / "aws")
    try:
        say(f"starting PostgreSQL and moto under {work}")
        pg.start()
        url = pg.create_database("weward")
        with psycopg.connect(pg.admin_url(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET max_wal_size = '4GB'")
            conn.execute("SELECT pg_reload_conf()")
            pg_version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
        aws.start()
        aws.create_bucket(BUCKET, versioning=False)
        dataset = data.Dataset(rows_per_day=args.rows_per_day, days=args.days, big_factor=args.big_factor)
        say(f"generating {sum(r for _, r in dataset.plan()):,} rows")
        counts = {d.isoformat(): n for d, n in data.load(url, dataset, on_progress=say).items()}

        chosen = [m for m in METHODS if m.name in args.methods]
        if "product_s3" in args.methods:
            chosen.append(S3_METHOD)
        if args.big_factor and "product" in args.methods and "copy_floor" in args.methods:
            chosen += SCALE_METHODS
        skipped = {}
        for method in list(chosen):
            python = args.peer_python if method.peer else args.product_python
            missing = has_modules(python, method.modules)
            if missing:
                skipped[method.name] = f"no {', '.join(missing)} in {python}"
                chosen.remove(method)
        runner = Runner(args, url, aws.env(), work, counts, dataset)
        if not args.no_warmup:
            say("warming the cache (untimed floor runs)")
            runner.run(Method("copy_floor", "", peer=False), "warmup")
            if args.big_factor:
                runner.run(Method("copy_floor", "", peer=False, scale=3), "warmup")
        say(f"{args.rounds} round(s) of {', '.join(key(m) for m in chosen)}")
        results = run_rounds(runner, chosen, args.rounds, say, slow_after=args.slow_after)
        summaries = {k: s for k, runs in results.items() if (s := summarize(runs))}
        loads = [r["loadavg_before"] for runs in results.values() for r in runs if "loadavg_before" in r]
        failed = {k.split("@")[0]: runs[-1]["error"] for k, runs in results.items() if k not in summaries}
        report = {
            "started": started_at,
            "rounds": args.rounds,
            "dataset": {
                "rows": counts[dataset.day.isoformat()], "day": dataset.day.isoformat(), "days": dataset.days,
                "big_factor": dataset.big_factor, "big_day": dataset.big_day.isoformat(),
                "big_rows": counts.get(dataset.big_day.isoformat(), 0),
                "columns": "bigint, timestamptz, integer, double, numeric(12,2), text, varchar, jsonb, uuid, boolean",
            },
            "summaries": summaries,
            "runs": results,
            "skipped": skipped,
            "failed": failed,
            "scale": "product@3x" in summaries,
            "targets": {k: list(v) for k, v in evaluate(summaries).items()},
            "python": {"product": args.product_python, "peer": args.peer_python},
            "loadavg": {"median": statistics.median(loads) if loads else 0, "max": max(loads, default=0)},
        }
        product_versions = versions(args.product_python, ["pyarrow", "adbc-driver-postgresql"])
        peer_versions = versions(args.peer_python, ["pandas", "dlt", "connectorx"])
        report["versions"] = {**product_versions, **peer_versions}
        report["machine"] = machine_line(pg_version, report["versions"])
        py_spy = profile.find_py_spy(args.peer_python, args.product_python) if not args.no_profile else None
        if py_spy and "product" in summaries:
            say("profiling one more product export with py-spy")
            raw = work / "product.pyspy.txt"
            prefix = [py_spy, "record", "--native", "--idle", "--threads", "-r", "200", "-f", "raw", "-o", str(raw), "--"]
            profiled = runner.run(Method("product", "", peer=False), "profile", prefix=prefix)
            if raw.exists() and "error" not in profiled:
                report["profile"] = {"seconds": profiled["seconds"], "stages": profile.summarize(raw)}
            else:
                say(f"  profiling failed: {profiled.get('error')}")
        if not args.no_impact and "product" in summaries:
            report["impact"] = measure_impact(
                runner, args, summaries["product"]["seconds"], counts[dataset.day.isoformat()], say, pg, aws,
            )
        report["total_minutes"] = (time.monotonic() - started) / 60
        report["targets"] = {k: tuple(v) for k, v in report["targets"].items()}
        text = render(report)
        results_path = Path(args.results)
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text("# Benchmark results\n\nWritten by `make bench` (bench/run.py); see bench/README.md.\n\n" + text)
        results_path.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
        print()
        print(text)
        return 0 if summaries.get("product") and summaries.get("copy_floor") else 1
    finally:
        aws.stop()
        pg.stop()
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
