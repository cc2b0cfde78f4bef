"""The benchmark: export one day by each method, interleaved over rounds, and what it costs the app.

    python -m bench.run                       # the published run (make bench)
    python -m bench.run --rows-per-day 3000 --rounds 1 --methods copy_floor,product,product_s3

Sets up its own PostgreSQL server and S3/Glue endpoint (moto), generates the table, runs each
method in its own process (so peak RSS is that method's), reports medians, and writes the table
to bench/results.md (and the raw numbers to bench/results.json).

One module per concern: environment (machine, interpreters), runner (one method in its own
process), measure (rounds, medians, targets), phases (the app under pgbench while the pipeline
runs; impact.py has the pgbench and lock-watch tools), profile (py-spy), report (the markdown).
After the rounds, each of STAGES adds one entry to the report; report.SECTIONS renders them. A new
measurement is one stage function here and one section function in report.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench import data, phases, profile
from bench.environment import REPO, default_python, has_modules, machine_line, versions
from bench.measure import evaluate, run_rounds, summarize
from bench.report import render
from bench.runner import BUCKET, DEFAULT_METHODS, METHODS, S3_METHOD, SCALE_METHODS, Method, Runner, key


@dataclass
class Context:
    """What a stage may use: the arguments, the servers, the runner, the rounds' medians."""

    args: argparse.Namespace
    say: Callable[[str], None]
    runner: Runner
    summaries: dict
    counts: dict[str, int]
    dataset: data.Dataset
    pg: object  # devstack LocalPostgres
    aws: object  # devstack LocalAws
    work: Path


def stage_profile(ctx: Context) -> dict | None:
    """One more product export under py-spy: where its time goes."""
    py_spy = profile.find_py_spy(ctx.args.peer_python, ctx.args.product_python) if not ctx.args.no_profile else None
    if not py_spy or "product" not in ctx.summaries:
        return None
    ctx.say("profiling one more product export with py-spy")
    raw = ctx.work / "product.pyspy.txt"
    prefix = [py_spy, "record", "--native", "--idle", "--threads", "-r", "200", "-f", "raw", "-o", str(raw), "--"]
    profiled = ctx.runner.run(Method("product", "", peer=False), "profile", prefix=prefix)
    if raw.exists() and "error" not in profiled:
        return {"seconds": profiled["seconds"], "stages": profile.summarize(raw)}
    ctx.say(f"  profiling failed: {profiled.get('error')}")
    return None


def stage_impact(ctx: Context) -> dict | None:
    """The app (pgbench) while the pipeline exports and redacts."""
    if ctx.args.no_impact or "product" not in ctx.summaries:
        return None
    return phases.measure_impact(
        ctx.runner,
        ctx.args,
        ctx.summaries["product"]["seconds"],
        ctx.counts[ctx.dataset.day.isoformat()],
        ctx.say,
        ctx.pg,
        ctx.aws,
    )


def stage_dagster_run(ctx: Context) -> dict | None:
    """The production entry point, `dagster asset materialize` of one table and day: the whole process
    tree's peak memory (what the Fargate task is sized by)."""
    if ctx.args.no_dagster_run:
        return None
    runs = []
    for round_ in range(max(1, min(ctx.args.rounds, 2))):
        ctx.say(f"dagster asset materialize, one day, round {round_ + 1} (process tree sampled)")
        result = ctx.runner.run(Method("dagster_run", "", peer=False), f"r{round_}")
        if "error" in result:
            ctx.say(f"  FAILED: {result['error']}\n{result.get('log', '')}")
            return {"error": result["error"], "log": result.get("log", "")}
        tree = result["tree"]
        ctx.say(
            f"  {result['seconds']:.1f} s, tree peak RSS {tree['rss_kb'] / 1024:.0f} MB "
            f"(PSS {tree['pss_kb'] / 1024:.0f} MB, {tree['processes']} processes)"
        )
        runs.append(result)
    worst = max(runs, key=lambda r: r["tree"]["rss_kb"])
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "runs": len(runs),
        "rows": worst["rows"],
        "tree": worst["tree"],
        "target_mb": TARGET_TREE_MB,
        "met": worst["tree"]["rss_kb"] < TARGET_TREE_MB * 1024,
    }


# The whole `dagster asset materialize` process tree (RSS summed over its processes) must stay under this.
TARGET_TREE_MB = 450

# (report key, stage): run in this order after the rounds; a stage returning None adds nothing.
STAGES: list[tuple[str, Callable[[Context], dict | None]]] = [
    ("dagster_run", stage_dagster_run),
    ("profile", stage_profile),
    ("impact", stage_impact),
]


def kept_sections(results: Path) -> str:
    """The sections other tools wrote into results.md between `<!-- name:begin -->` and
    `<!-- name:end -->` (bench/restate.py): kept as they are when this run rewrites the file."""
    if not results.exists():
        return ""
    text = results.read_text()
    kept = []
    for match in re.finditer(r"<!-- ([\w-]+):begin -->.*?<!-- \1:end -->", text, re.DOTALL):
        kept.append(match.group(0))
    return "\n\n".join(kept) + ("\n" if kept else "")


def write_results(report: dict, results_path: Path) -> str:
    """results.md (the report's sections, then the kept ones) and results.json beside it."""
    text = render(report)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    kept = kept_sections(results_path)
    results_path.write_text(
        "# Benchmark results\n\nWritten by `make bench` (bench/run.py); see bench/README.md.\n\n"
        + text
        + ("\n" + kept if kept else "")
    )
    results_path.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
    return text


# -- arguments -------------------------------------------------------------------------------------


def parse_args(argv: list[str]):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows-per-day", type=int, default=2_000_000)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--big-factor", type=int, default=3, help="the product's second scale point (0: none)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--methods", default=",".join(DEFAULT_METHODS), help=f"comma-separated, from {', '.join(DEFAULT_METHODS)}"
    )
    parser.add_argument("--no-impact", action="store_true", help="skip the pgbench measurements")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed cache-warming reads")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of the product")
    parser.add_argument(
        "--no-dagster-run",
        action="store_true",
        help="skip `dagster asset materialize` of one day (process-tree memory)",
    )
    parser.add_argument("--pgbench-scale", type=int, default=10)
    parser.add_argument(
        "--no-pin", action="store_true", help="do not give PostgreSQL its own CPU during the impact runs"
    )
    parser.add_argument("--calibrate-seconds", type=float, default=8)
    parser.add_argument("--quiet-seconds", type=float, default=15)
    parser.add_argument("--settle-seconds", type=float, default=2, help="app load before and after each pipeline run")
    parser.add_argument(
        "--app-load",
        type=float,
        default=0.3,
        help="app rate as a fraction of the server's quiet capacity (an OLTP primary with headroom)",
    )
    parser.add_argument("--throttles", default="0.5", help="fractions of the unthrottled rate to try, comma-separated")
    parser.add_argument(
        "--redact-seconds", type=float, default=60, help="how long the redaction runs under the app load (0: skip it)"
    )
    parser.add_argument("--method-timeout", type=float, default=900)
    parser.add_argument(
        "--slow-after",
        type=float,
        default=40,
        help="run a method only once if its first run took longer (seconds; 0: always repeat)",
    )
    parser.add_argument("--product-python", default=default_python(".venv"))
    parser.add_argument("--peer-python", default=default_python(".venv-bench"))
    parser.add_argument("--results", default=str(REPO / "bench" / "results.md"))
    parser.add_argument(
        "--render",
        action="store_true",
        help="measure nothing: write --results again from the results.json beside it (after a report change)",
    )
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
    if args.render:
        results = Path(args.results)
        write_results(json.loads(results.with_suffix(".json").read_text()), results)
        return 0
    started = time.monotonic()
    started_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")

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
                "rows": counts[dataset.day.isoformat()],
                "day": dataset.day.isoformat(),
                "days": dataset.days,
                "big_factor": dataset.big_factor,
                "big_day": dataset.big_day.isoformat(),
                "big_rows": counts.get(dataset.big_day.isoformat(), 0),
                "columns": "bigint, timestamptz, integer, double, numeric(12,2), text, varchar, jsonb, uuid, boolean",
            },
            "summaries": summaries,
            "runs": results,
            "skipped": skipped,
            "failed": failed,
            "scale": "product@3x" in summaries,
            "targets": evaluate(summaries),
            "python": {"product": args.product_python, "peer": args.peer_python},
            "loadavg": {"median": statistics.median(loads) if loads else 0, "max": max(loads, default=0)},
        }
        product_versions = versions(args.product_python, ["pyarrow", "adbc-driver-postgresql"])
        peer_versions = versions(args.peer_python, ["pandas", "dlt", "connectorx"])
        report["versions"] = {**product_versions, **peer_versions}
        report["machine"] = machine_line(pg_version, report["versions"])
        ctx = Context(
            args=args,
            say=say,
            runner=runner,
            summaries=summaries,
            counts=counts,
            dataset=dataset,
            pg=pg,
            aws=aws,
            work=work,
        )
        for name, stage in STAGES:
            outcome = stage(ctx)
            if outcome is not None:
                report[name] = outcome
        report["total_minutes"] = (time.monotonic() - started) / 60
        text = write_results(report, Path(args.results))
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
