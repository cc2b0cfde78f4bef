"""The daily restatement comparison: what checking 7 exported days of a 2M-rows/day table costs.

    python -m bench.restate                          # 7 days x 2M rows, app impact included
    python -m bench.restate --rows-per-day 3000 --no-impact   # the smoke size

Starts its own PostgreSQL and S3/Glue endpoint (moto), generates bench.step_events (bench/data.py)
for the window plus the day the daily run exports, adds an `updated_at` column (a constant default:
no table rewrite) with its index, exports the window through `export_day`, changes a few rows, then
times `restate.compare_days` over the window (counts only, and with updated_column), as the daily
schedule runs it: median of rounds, and the app's p99 under pgbench while it runs (bench/impact.py).
Writes a section of bench/results.md between the `restate` markers, and bench/results-restate.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench import data, impact

REPO = Path(__file__).resolve().parents[1]
BUCKET = "weward-bench-restate"
BEGIN, END = "<!-- restate:begin -->", "<!-- restate:end -->"


def catalog(restate_days: int, updated: bool):
    from weward_pipeline.config import parse_catalog

    table = {
        "name": "step_events",
        "schema": data.SCHEMA,
        "source_table": data.TABLE,
        "mode": "append",
        "partition_column": "created_at",
        "primary_key": ["id"],
        "restate_days": restate_days,
    }
    if updated:
        table["updated_column"] = "updated_at"
    return parse_catalog({"start_date": "2024-01-01", "timezone": data.TIMEZONE, "tables": [table]})


def prepare(url: str, dataset: data.Dataset, say) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        # A constant default is stored once (PostgreSQL 11+): no rewrite of the table.
        conn.execute(
            "ALTER TABLE bench.step_events ADD COLUMN updated_at timestamptz NOT NULL DEFAULT '2024-03-01 00:00+00'"
        )
        say("  indexing updated_at")
        conn.execute("CREATE INDEX step_events_updated_at_idx ON bench.step_events (updated_at)")
        conn.execute("VACUUM (ANALYZE) bench.step_events")


def change_rows(url: str, days: list[dt.date]) -> None:
    """What a day of the app does to the window: a late row, an update and a delete in every day."""
    with psycopg.connect(url, autocommit=True) as conn:
        for day in days:
            start, end = data.window(day)
            first = conn.execute(
                "SELECT min(id) FROM bench.step_events WHERE created_at >= %s AND created_at < %s", (start, end)
            ).fetchone()[0]
            conn.execute("UPDATE bench.step_events SET steps = steps + 1, updated_at = now() WHERE id = %s", (first,))
            conn.execute("DELETE FROM bench.step_events WHERE id = %s", (first + 1,))
            conn.execute(
                "INSERT INTO bench.step_events (user_id, created_at, steps, wards, source, is_manual, updated_at) "
                "VALUES (1, %s, 10, 1, 'manual', true, now())",
                (start + dt.timedelta(hours=20),),
            )


def compare(settings, updated: bool, days: list[dt.date], clients) -> dict:
    from weward_pipeline import restate

    cat = catalog(len(days), updated)
    started = time.monotonic()
    statuses, unpublished = restate.compare_days(settings, cat, cat.tables[0], days, clients=clients)
    seconds = time.monotonic() - started
    return {
        "seconds": seconds,
        "ended_epoch": time.time(),
        "changed": sum(s.changed for s in statuses),
        "days": len(statuses),
        "unpublished": len(unpublished),
    }


def plans(url: str, settings, days: list[dt.date], clients) -> dict[str, str]:
    """EXPLAIN (ANALYZE, BUFFERS) of one day's statements, as evidence of index-only work."""
    from weward_pipeline import restate
    from weward_pipeline.extract import DayWindow
    from weward_pipeline.glue import GlueCatalog
    from weward_pipeline.verify import published_manifest

    cat = catalog(len(days), True)
    _, manifest = published_manifest(
        GlueCatalog(clients.glue, settings.glue_database), clients.s3, "step_events", days[0].isoformat()
    )
    statements = restate.detection_sql(
        cat.tables[0], DayWindow(days[0], data.TIMEZONE), "timestamptz", "timestamptz", manifest.snapshot_at
    )
    out = {}
    with psycopg.connect(url) as conn:
        for name, statement in statements.items():
            rows = conn.execute(
                psycopg.sql.SQL("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {}").format(statement)
            ).fetchall()
            out[name] = "\n".join(r[0] for r in rows)
    return out


def render(report: dict) -> str:
    d = report["dataset"]
    lines = [
        BEGIN,
        "",
        "## Restatement: the daily comparison of exported days with PostgreSQL",
        "",
        f"`python -m bench.restate`, run {report['started']} in {report['minutes']:.1f} min: "
        f"{d['days']} exported days of `bench.step_events` ({d['rows_per_day']:,} rows a day, index on "
        f"`created_at`, and on `updated_at` for the second configuration), each day changed by one late row, "
        f"one update and one delete; `restate.compare_days` over the {d['days']} days as the daily schedule runs "
        f"it, median of {report['rounds']} rounds (load average before: {report['loadavg']}).",
        "",
        "| configuration | seconds for the window | per day | days found changed | queries per day |",
        "|---|---:|---:|---:|---|",
    ]
    for name, label, queries in (
        ("counts", "counts only (no `updated_column`)", "1 count (index range)"),
        ("updated", "with `updated_column`", "1 count + 1 stamped-since count"),
    ):
        r = report["results"][name]
        lines.append(
            f"| {label} | {r['median_s']:.2f} | {r['median_s'] / d['days']:.2f} | {r['changed']} of {d['days']} "
            f"| {queries} |"
        )
    lines += [
        "",
        "Counts alone see nothing here: each day's late row and delete cancel out, and an update leaves the "
        "count as it was; `updated_column` sees every day (docs/restatement.md says what each configuration "
        f"detects). For comparison, exporting one of those days through `export_day` took {report['export_s']:.1f} s "
        "(median over the window).",
    ]
    imp = report.get("impact")
    if imp and "phases" in imp:
        lines += [
            "",
            f"Impact on the application: pgbench at {imp['rate_tps']:.0f} tps (30% of {imp['capacity_tps']:.0f} "
            "quiet), as in the export's impact table above.",
            "",
            "| while | pipeline s | app tps | app p50 ms | app p99 ms | longest app wait on a pipeline lock |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for phase in imp["phases"]:
            app, action = phase["app"], phase["action"]
            seconds = f"{action['seconds']:.2f}" if isinstance(action, dict) and "seconds" in action else "-"
            lines.append(
                f"| {phase['label']} | {seconds} | {app['tps']:.0f} | {app['p50_ms']:.1f} | {app['p99_ms']:.1f} "
                f"| {phase['locks']['longest_app_wait_on_pipeline_s']:.2f} s |"
            )
    elif imp:
        lines += ["", f"Impact on the application: not measured ({imp.get('skipped', 'skipped')})."]
    lines += ["", "Plans of one day (EXPLAIN ANALYZE, BUFFERS):", "", "```"]
    for name, plan in report["plans"].items():
        lines += [f"-- {name}", plan]
    lines += ["```", "", END]
    return "\n".join(lines)


def write_results(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    from weward_pipeline.aws import AwsClients
    from weward_pipeline.config import Settings
    from weward_pipeline.devstack.aws import LocalAws
    from weward_pipeline.devstack.postgres import LocalPostgres
    from weward_pipeline.export import export_day

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows-per-day", type=int, default=2_000_000)
    parser.add_argument("--days", type=int, default=7, help="the restatement window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-impact", action="store_true")
    parser.add_argument("--app-load", type=float, default=0.3)
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--results", default=str(REPO / "bench" / "results.md"))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    started_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {message}", flush=True)

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="weward-bench-restate-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    pg, aws = LocalPostgres(work / "pg"), LocalAws(work / "aws")
    try:
        pg.start()
        url = pg.create_database("weward")
        aws.start()
        aws.create_bucket(BUCKET, versioning=False)
        os.environ.update(aws.env())  # boto3 and pyarrow take the endpoint's credentials from the environment
        # The window, then the day the daily run exports (not compared).
        dataset = data.Dataset(rows_per_day=args.rows_per_day, days=args.days + 1, big_factor=0)
        say(f"generating {args.rows_per_day * (args.days + 1):,} rows")
        data.load(url, dataset, on_progress=say)
        prepare(url, dataset, say)
        env = {
            **aws.env(),
            "WEWARD_PG_URL": url,
            "WEWARD_LAKE_URL": f"s3://{BUCKET}/lake",
            "WEWARD_GLUE_DATABASE": "bench_restate",
        }
        settings = Settings.from_env(env)
        clients = AwsClients.from_settings(settings)
        days = [dataset.first_day + dt.timedelta(days=i) for i in range(args.days)]
        cat = catalog(args.days, True)
        export_seconds = []
        for day in days:
            say(f"exporting {day}")
            result = export_day(settings, cat, cat.tables[0], day, clients=clients, on_progress=lambda m: None)
            export_seconds.append(result.duration_s)
        change_rows(url, days)
        results = {}
        for name, updated in (("counts", False), ("updated", True)):
            runs = []
            for _ in range(args.rounds):
                runs.append(compare(settings, updated, days, clients))
                say(f"compare {name}: {runs[-1]['seconds']:.2f} s, {runs[-1]['changed']} changed")
            results[name] = {
                "median_s": statistics.median(r["seconds"] for r in runs),
                "runs": runs,
                "changed": runs[-1]["changed"],
            }
        report = {
            "started": started_at,
            "rounds": args.rounds,
            "results": results,
            "export_s": statistics.median(export_seconds),
            "dataset": {"days": args.days, "rows_per_day": args.rows_per_day},
            "loadavg": f"{impact_loadavg():.1f}",
            "plans": plans(url, settings, days, clients),
        }
        if not args.no_impact:
            report["impact"] = measure_impact(url, settings, days, clients, args, say)
        report["minutes"] = (time.monotonic() - started) / 60
        write_results(Path(args.results), render(report))
        Path(args.results).with_name("results-restate.json").write_text(json.dumps(report, indent=1, default=str))
        say(f"wrote {args.results}")
        return 0
    finally:
        aws.stop()
        pg.stop()


def impact_loadavg() -> float:
    return os.getloadavg()[0]


def measure_impact(url: str, settings, days, clients, args, say) -> dict:
    pgbench = impact.find_pgbench()
    if not pgbench:
        return {"skipped": "pgbench not found (Debian package postgresql-client)"}
    say("impact: pgbench -i")
    impact.pgbench_init(pgbench, url, 10)
    capacity = impact.max_tps(pgbench, url, 8)
    rate = max(10.0, round(capacity * args.app_load))
    phases = []
    for label, action, expected in (
        ("quiet (no pipeline)", lambda: (time.sleep(10), {"seconds": 10.0})[1], 10),
        ("comparison, counts only", lambda: compare(settings, False, days, clients), 20),
        ("comparison, with updated_column", lambda: compare(settings, True, days, clients), 20),
    ):
        say(f"impact: {label}")
        measured = impact.run_under_load(pgbench, url, rate, expected, action)
        measured["label"] = label
        phases.append(measured)
    return {
        "capacity_tps": capacity,
        "rate_tps": rate,
        "phases": [dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p for p in phases],
    }


if __name__ == "__main__":
    sys.exit(main())
