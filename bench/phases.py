"""What an export and a redaction cost the application: the pgbench phases (impact.py's tools)."""

from __future__ import annotations

import time

from bench import impact
from bench.measure import day_ids
from bench.runner import S3_METHOD, Method, Runner


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
            # moto stands in for S3, which is not on the app's machines either: niced like the pipeline
            # (NICE below), its request handling does not delay pgbench's client.
            impact.nice_tree(aws.pid, 10)
        say(
            f"impact: PostgreSQL pinned to CPU {sorted(server_cpus)}, pipeline and pgbench to CPU {sorted(client_cpus)}"
        )
    capacity = impact.max_tps(pgbench, url, args.calibrate_seconds, cpus=client_cpus, touch_ids=touch)
    rate = max(10.0, round(capacity * args.app_load))
    say(f"impact: app capacity {capacity:.0f} tps quiet; the app runs at {rate:.0f} tps ({args.app_load:.0%})")

    def quiet():
        time.sleep(args.quiet_seconds)
        return {"seconds": args.quiet_seconds}

    def export(throttle: float | None, pacing: str | None = None):
        def action():
            overrides = {"max_rows_per_second": throttle} if throttle else {}
            if pacing:
                overrides["pacing"] = pacing
            return runner.run(
                Method("product", "", peer=False),
                f"impact-{int(throttle or 0)}-{pacing}",
                cpus=client_cpus,
                prefix=NICE,
                **overrides,
            )

        return action

    phases: list[dict] = []

    def measure(label: str, action, expected: float) -> None:
        """One phase under the app load, appended to `phases`."""
        phases.append(_phase(label, action, expected, pgbench, url, rate, args, client_cpus, touch, say))

    measure("quiet (no pipeline)", quiet, args.quiet_seconds)
    measure(
        "export, unpaced (reads as fast as it can)",
        export(None),
        product_seconds * 2 + 10,
    )
    measure(
        "export, default pacing",
        export(None, "default"),
        product_seconds * 4 + 10,
    )
    # Throttles are fractions of what the export did here, under the app load, on its own CPU.
    unthrottled = phases[1]["action"]
    product_rate = rows / (unthrottled["seconds"] if "seconds" in unthrottled else product_seconds)
    for fraction in args.throttles:
        throttle = round(product_rate * fraction, -3) or 1000
        measure(
            f"export, throttled to {throttle:,.0f} rows/s ({fraction:.0%})",
            export(throttle),
            rows / throttle * 1.3 + 5,
        )
        phases[-1]["throttle"] = throttle
    keyed_export = None
    if args.redact_seconds > 0:
        say("impact: export_day with redaction keys (retention_days set), for the redaction")
        keyed_export = runner.run(S3_METHOD, "keys", cpus=client_cpus, retention_days=REDACT_RETENTION_DAYS)
        if "error" in keyed_export:
            say(f"  FAILED: {keyed_export['error']}\n{keyed_export.get('log', '')}")
        else:

            def redaction(pace: str, **day):
                def action():
                    return runner.run(
                        Method("redact", "", peer=False),
                        f"impact-{pace}",
                        cpus=client_cpus,
                        prefix=NICE,
                        retention_days=REDACT_RETENTION_DAYS,
                        redact_seconds=args.redact_seconds,
                        pace=pace,
                        **day,
                    )

                return action

            measure(
                f"redaction (first {args.redact_seconds:.0f} s)",
                redaction("default"),
                args.redact_seconds + 15,
            )
            # For comparison, the fixed pace the redaction had before pacing, on another day of the same
            # size (a re-run of the same day would only skip the rows already gone).
            other = next(
                (d for d, _ in runner.dataset.plan() if d not in (runner.dataset.day, runner.dataset.big_day)), None
            )
            if other is not None:
                say(f"impact: export_day of {other} with redaction keys, for the fixed-pace redaction")
                day = {"day": other.isoformat(), "rows": runner.rows[other.isoformat()]}
                keyed_other = runner.run(
                    S3_METHOD, "keys-other", cpus=client_cpus, retention_days=REDACT_RETENTION_DAYS, **day
                )
                if "error" in keyed_other:
                    say(f"  FAILED: {keyed_other['error']}\n{keyed_other.get('log', '')}")
                else:
                    measure(
                        f"redaction (first {args.redact_seconds:.0f} s of another day), fixed pace "
                        "before pacing: 1000-row batches, 50 ms pauses",
                        redaction("fixed", **day),
                        args.redact_seconds + 15,
                    )
    # The machine is shared: the quiet baseline again at the end (the report compares with the lower).
    measure(
        "quiet (no pipeline, again at the end)",
        quiet,
        args.quiet_seconds,
    )
    return {
        "capacity_tps": capacity,
        "rate_tps": rate,
        "phases": phases,
        "keyed_export": keyed_export,
        "server_cpus": sorted(server_cpus) if server_cpus else None,
        "pgbench_scale": args.pgbench_scale,
        "lock_timeout_s": _lock_timeout(),
    }


REDACT_RETENTION_DAYS = 30
# The pipeline shares its CPU with pgbench's client (2 cores: PostgreSQL has the other). Niced, it does
# not delay the client's own scheduling, which p99 would count as the database's latency: in
# production the app's clients and the pipeline run on different machines.
NICE = ["nice", "-n", "10"]


def _phase(label, action, expected, pgbench, url, rate, args, cpus, touch, say) -> dict:
    say(f"impact: {label}")
    measured = impact.run_under_load(
        pgbench, url, rate, expected, action, settle_s=args.settle_seconds, cpus=cpus, touch_ids=touch
    )
    measured["label"] = label
    outcome = measured["action"]
    if isinstance(outcome, dict) and "error" in outcome:
        say(f"  FAILED: {outcome['error']}\n{outcome.get('log', '')}")
    app = measured["app"]
    say(
        f"  app {app['tps']:.0f} tps, p99 {app['p99_ms']:.1f} ms; pipeline xact "
        f"{measured['locks']['longest_pipeline_xact_s']:.1f} s; app waited on pipeline "
        f"{measured['locks']['longest_app_wait_on_pipeline_s']:.2f} s"
    )
    return measured


def _lock_timeout() -> int:
    from weward_pipeline.extract import ExtractLimits

    return ExtractLimits().lock_timeout_s
