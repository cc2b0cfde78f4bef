"""Sub-commands for the local stack: `stack up|down|env|status`, `demo`, `dev`.

`demo` is a new user's first contact, so it is held to what it shows: every run through Dagster
as production runs it (the `daily_export` job, one run per day; the redaction materialized as the
automation sensor materializes it), every check green at the end (or the summary says why not),
a redaction with its audit, a short output, and next commands that work as printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from weward_pipeline.devstack.demo_questions import demo_epilogue
from weward_pipeline.devstack.stack import LOCAL_RETENTION_DAYS, REPO_ROOT, LocalStack


def register(subparsers: argparse._SubParsersAction) -> None:
    stack = subparsers.add_parser(
        "stack",
        help="start/stop the local PostgreSQL + S3/Glue stack, or print its environment",
        description="The local stack: a real PostgreSQL server with the sample app data and a moto S3+Glue "
        "endpoint on free ports, its state under .local/stack (WEWARD_STACK_DIR).",
    )
    stack.add_argument(
        "action",
        choices=["up", "down", "env", "status"],
        help="up: start it and load the sample data (idempotent); down: stop it and delete its data; "
        'env: print `export` lines for eval "$(weward-pipeline stack env)"; '
        "status: what runs (exit 0 only if everything does)",
    )
    stack.add_argument("--users", type=int, default=2_000, help="sample users to generate (up; default 2000)")
    stack.add_argument("--days", type=int, default=5, help="days of sample activity, ending yesterday (up; default 5)")
    stack.set_defaults(handler=cmd_stack)

    demo = subparsers.add_parser(
        "demo",
        help="fresh local stack + sample data, export the last days and redact through Dagster, print a summary",
        description="Starts a fresh local stack, exports the last DAYS days of every table through Dagster, redacts "
        f"the days past their retention (the local catalog shortens it: "
        f"{', '.join(f'{t} {d} days' for t, d in LOCAL_RETENTION_DAYS.items())}), answers a few analyst "
        "questions from the lake, and stops the stack unless --keep.",
    )
    demo.add_argument("--days", type=int, default=5, help="how many recent days to export (default 5)")
    demo.add_argument("--users", type=int, default=5_000, help="sample users to generate (default 5000)")
    demo.add_argument(
        "--keep", action="store_true", help="leave the stack running: query it, open it in the Dagster UI (make dev)"
    )
    demo.set_defaults(handler=cmd_demo)

    dev = subparsers.add_parser(
        "dev",
        help="the Dagster UI (webserver + daemon) on the local stack; Ctrl-C stops everything",
        description="Runs `dagster dev` on the local stack (started and loaded with sample data if it is not "
        "running, and then stopped again on Ctrl-C).",
    )
    dev.add_argument("--port", type=int, default=3000, help="port of the UI on 127.0.0.1 (default 3000)")
    dev.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="of the webserver and daemon (default warning: at info the daemon logs ~6 lines every "
        "30 s; runs' own logs are in the UI either way)",
    )
    dev.set_defaults(handler=cmd_dev)


def self_command() -> str:
    """How the user ran this command (`.venv/bin/weward-pipeline` from `make`), for the hints we print."""
    invoked = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if os.path.basename(invoked) != "weward-pipeline":
        return "weward-pipeline"
    relative = os.path.relpath(invoked)
    return shlex.quote(relative if not relative.startswith("..") else invoked)


def _apply_env(stack: LocalStack) -> dict[str, str]:
    env = stack.env()
    os.environ.update(env)
    return env


def cmd_stack(args: argparse.Namespace) -> int:
    stack = LocalStack()
    me = self_command()
    if args.action == "up":
        stack.up()
        rows = stack.seed(days=args.days, users=args.users, timezone=stack.catalog().timezone)
        print(f"local stack up: PostgreSQL on 127.0.0.1:{stack.postgres.port}, S3/Glue at {stack.aws.endpoint_url}")
        print("sample rows: " + ", ".join(f"{t}={n:,}" for t, n in rows.items()))
        print(
            f'environment: eval "$({me} stack env)"; nothing is exported yet ({me} demo --keep exports and '
            "redacts a few days)"
        )
    elif args.action == "env":
        if not stack.running():
            print(f"# the local stack is not running: {me} demo --keep (or {me} stack up)", file=sys.stderr)
            return 1
        for key, value in stack.env().items():
            print(f"export {key}={shlex.quote(value)}")
    elif args.action == "status":
        status = stack.status()
        width = max(len(name) for name, _, _ in status)
        for name, up, detail in status:
            state = ("loaded" if up else "none") if name == "sample data" else ("running" if up else "stopped")
            print(f"{name:<{width}}  {state}{': ' + detail if detail else ''}")
        every = all(up for _, up, _ in status[:2])
        if not every and any(up for _, up, _ in status[:2]):
            print(f"partly running: {me} stack down, then {me} demo --keep (or stack up) starts afresh")
        return 0 if every else 1
    else:
        stack.down()
        print("local stack stopped")
    return 0


def recent_days(timezone: str, count: int) -> list[dt.date]:
    yesterday = dt.datetime.now(ZoneInfo(timezone)).date() - dt.timedelta(days=1)
    return [yesterday - dt.timedelta(days=i) for i in reversed(range(count))]


def _failures(result) -> list[str]:
    lines = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            data = event.event_specific_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                text = data.user_failure_data.description
            else:
                text = data.error.message.strip().splitlines()[-1] if data.error else "failed"
            lines.append(f"    {event.step_key}: {text}")
    return lines


def _failed_checks(result) -> list[str]:
    lines = []
    for event in result.all_events:
        data = event.asset_check_evaluation_data if event.event_type_value == "ASSET_CHECK_EVALUATION" else None
        if data is not None and not data.passed:
            lines.append(
                f"    {data.asset_check_key.asset_key.to_user_string()} {data.check_name} failed: "
                f"{data.description or 'see its metadata in the UI'}"
            )
    return lines


DEMO_TAGS = {"weward/source": "demo"}
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_exports(defs, instance, catalog, days: list[dt.date]) -> int:
    """Materialize lake/* and their blocking checks through the `daily_export` job, one run per day
    (as the schedule and backfills do); returns the number of failed runs."""
    from weward_pipeline.defs.assets import lake_key
    from weward_pipeline.defs.schedules import DAILY_EXPORT_JOB

    job = defs.resolve_job_def(DAILY_EXPORT_JOB)
    every_check = defs.resolve_asset_graph().asset_check_keys
    freshness = freshness_check_keys(catalog)
    failed = 0
    for day in days:
        # Snapshot tables hold "the table as it is now": only the latest day can be exported today.
        tables = [t for t in catalog.tables if t.mode == "append" or day == days[-1]]
        keys = {lake_key(t.name) for t in tables}
        # Every check of the day's exports (blocking ones, source_unchanged...) but freshness, which
        # runs once after every day (run_freshness_checks): here it would judge "yesterday is
        # missing" while the run that exports it is still to come.
        checks = {key for key in every_check if key.asset_key in keys and key not in freshness}
        result = job.get_subset(asset_selection=keys, asset_check_selection=checks).execute_in_process(
            instance=instance, partition_key=day.isoformat(), raise_on_error=False, tags=DEMO_TAGS, run_config=QUIET
        )
        problems = _failures(result) + _failed_checks(result)
        failed += bool(problems) or not result.success
        print(
            f"  {day}: {'ok' if result.success and not problems else 'FAILED'}, {len(tables)} tables, "
            f"{len(checks)} checks (run {result.run_id[:8]})"
        )
        for line in problems:
            print(line)
    return failed


def _bytes(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def print_lake_summary(catalog) -> None:
    """What an analyst sees: per table, the days Glue has, their rows and bytes, read back from the catalog."""
    from weward_pipeline.aws import AwsClients
    from weward_pipeline.config import Settings
    from weward_pipeline.glue import GlueCatalog
    from weward_pipeline.verify import published_manifest

    settings = Settings.from_env()
    clients = AwsClients.from_settings(settings)
    glue = GlueCatalog(clients.glue, settings.glue_database)
    header = f"{'table':<23} {'days':<24} {'rows':>9} {'bytes':>9}  location (one dt=<day>/ prefix per day)"
    print("\n" + header + "\n" + "-" * len(header))
    for table in catalog.tables:
        days, rows, size = [], 0, 0
        for partition in glue.list_partitions(table.name):
            day = partition["Values"][0]
            _, manifest = published_manifest(glue, clients.s3, table.name, day)
            days.append(day)
            rows += manifest.rows if manifest else 0
            size += manifest.bytes if manifest else 0
        span = f"{min(days)} .. {max(days)}" if len(days) > 1 else (days[0] if days else "none")
        print(f"{table.name:<23} {span:<24} {rows:>9,} {_bytes(size):>9}  {settings.lake.url(table.name)}/")
    print(f"Glue database {settings.glue_database}: one table per row above, partitioned by dt")


def run_redactions(defs, instance, catalog, days: list[dt.date]) -> int:
    """Materialize redaction/<t> for every exported day past its retention (as the redaction_automation
    sensor requests them), with its no_rows_need_reexport check; returns the number of failed days."""
    import dagster as dg

    from weward_pipeline.defs.redaction import REEXPORT_CHECK, redaction_key
    from weward_pipeline.redact import retention_ends

    job = defs.resolve_implicit_global_asset_job_def()
    now = dt.datetime.now(dt.UTC)
    failed = 0
    for table in (t for t in catalog.tables if t.retention_days):
        due = [d for d in days if retention_ends(catalog, table, d) <= now]
        waiting = [d for d in days if d not in due]
        key = redaction_key(table.name)
        for day in due:
            result = job.get_subset(
                asset_selection={key}, asset_check_selection={dg.AssetCheckKey(key, REEXPORT_CHECK)}
            ).execute_in_process(
                instance=instance, partition_key=day.isoformat(), raise_on_error=False, tags=DEMO_TAGS, run_config=QUIET
            )
            audit = {}
            for event in result.all_events:
                if event.event_type_value == "ASSET_MATERIALIZATION":
                    audit = {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}
            problems = _failures(result) + _failed_checks(result)
            if problems or not audit:
                failed += 1
                print(f"  {table.name} {day}: FAILED (run {result.run_id[:8]})")
                for line in problems:
                    print(line)
                continue
            print(
                f"  {table.name} {day}: {audit['rows_deleted']:,} of {audit['rows_in_export']:,} exported rows deleted "
                f"from PostgreSQL, {audit.get('rows_kept_back', 0)} kept back; audit: run {result.run_id[:8]}"
            )
        if waiting:
            first_due = retention_ends(catalog, table, waiting[0]).astimezone(catalog.zone)
            span = waiting[0] if len(waiting) == 1 else f"{waiting[0]} .. {waiting[-1]}"
            print(
                f"  {table.name} {span}: inside the {table.retention_days}-day retention "
                f"({waiting[0]} is due {first_due:%Y-%m-%d %H:%M})"
            )
    return failed


def freshness_check_keys(catalog) -> set:
    import warnings

    from weward_pipeline.defs.schedules import ScheduleSettings, freshness_checks

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {key for checks in freshness_checks(catalog, ScheduleSettings.from_env()) for key in checks.check_keys}


def run_freshness_checks(defs, instance, catalog) -> int:
    """Evaluate the freshness checks once every day is exported (the sensor does this with `make dev`)."""
    from weward_pipeline.defs.schedules import DAILY_EXPORT_JOB

    keys = freshness_check_keys(catalog)
    job = defs.resolve_job_def(DAILY_EXPORT_JOB)
    result = job.get_subset(asset_selection=set(), asset_check_selection=keys).execute_in_process(
        instance=instance, raise_on_error=False, tags=DEMO_TAGS, run_config=QUIET
    )
    failed = _failed_checks(result) + _failures(result)
    evaluated = sum(1 for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION")
    print(f"\nfreshness: {evaluated - len(failed)} of {len(keys)} freshness checks passed (run {result.run_id[:8]})")
    for line in failed:
        print(line)
    return len(failed) + (not result.success)


def print_next_steps(keep: bool) -> None:
    me = self_command()
    example = (
        "SELECT dt, count(*) AS syncs, count(DISTINCT user_id) AS walkers FROM step_events GROUP BY dt ORDER BY dt"
    )
    if keep:
        print(
            f"\nThe stack is still running. Next:\n"
            f'  eval "$({me} stack env)"      # this shell then talks to it\n'
            f'  {me} query "{example}"\n'
            f"  make dev                        # the Dagster UI over it: runs, checks, the redaction's audit\n"
            f"  {me} stack down          # stop it"
        )
    else:
        print(
            f'\nThe stack is stopped. To explore it, keep it: {me} demo --keep (then: eval "$({me} stack env)"; '
            f'{me} query "SELECT ..."; make dev for the Dagster UI)'
        )


def cmd_demo(args: argparse.Namespace) -> int:
    if args.days < 1 or args.users < 1:
        print("weward-pipeline demo: --days and --users must be at least 1", file=sys.stderr)
        return 2
    started = time.monotonic()
    stack = LocalStack()
    stack.down()  # a fresh stack every time: a second `make demo` starts from scratch
    try:
        stack.up()
        catalog = stack.catalog()
        rows = stack.seed(days=args.days + 2, users=args.users, timezone=catalog.timezone)
        print(f"local stack: PostgreSQL on 127.0.0.1:{stack.postgres.port}, S3+Glue (moto) at {stack.aws.endpoint_url}")
        print(
            f"sample app data, {args.days + 2} days ending yesterday: "
            + ", ".join(f"{t}={n:,}" for t, n in rows.items())
        )
        _apply_env(stack)
        days = recent_days(catalog.timezone, args.days)

        import dagster as dg

        from weward_pipeline.defs.factory import build_definitions

        defs = build_definitions(catalog)
        with dg.DagsterInstance.get() as instance:
            print(
                f"\nexport: {len(catalog.tables)} tables, {days[0]} .. {days[-1]}, through Dagster "
                "(job daily_export, one run per day; snapshot tables: yesterday only)"
            )
            failed = run_exports(defs, instance, catalog, days)
            print_lake_summary(catalog)
            print(
                "\nredaction: exported rows past their retention leave PostgreSQL (materializations of "
                "redaction/<table>; their metadata is the audit)"
            )
            failed += run_redactions(defs, instance, catalog, days)
            failed += run_freshness_checks(defs, instance, catalog)
        demo_epilogue()  # the analyst's questions, in Athena SQL, answered from the lake
        if failed:
            print(f"\ndemo FAILED: {failed} run(s) or check(s) failed (above)", file=sys.stderr)
            return 1
        print(f"\ndemo OK in {time.monotonic() - started:.0f} s: every run succeeded and every check passed")
        print_next_steps(args.keep)
        return 0
    finally:
        if not args.keep:
            stack.down()


def stop_process_group(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGINT the leader alone (`dagster dev` then shuts its webserver and daemon down through their
    shutdown pipes, quietly), then SIGTERM and SIGKILL its group for what is left after `timeout`
    seconds each (a signal to the whole group made the webserver print a CancelledError traceback)."""
    import signal

    for sig, group in ((signal.SIGINT, False), (signal.SIGTERM, True), (signal.SIGKILL, True)):
        try:
            if group:
                os.killpg(process.pid, sig)
            elif process.poll() is None:
                os.kill(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
        if not _group_alive(process.pid):
            return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# The asset groups are the layers (defs/assets.group_for); the UI draws them collapsed until opened.
LINEAGE_GROUPS = ",".join(f"global@global:{group}" for group in ("postgres", "lake", "redaction"))


def cmd_dev(args: argparse.Namespace) -> int:
    import signal

    stack = LocalStack()
    started_here = not stack.running()
    try:
        stack.up()
        stack.seed(days=7, timezone=stack.catalog().timezone)
        # `dagster dev` itself is "superseded" by `dg dev` (dagster-dg-cli, not a dependency): one
        # warning line at start that says nothing about this project.
        quiet = "ignore:Function `dev_command` is superseded"
        env = {
            **os.environ,
            **stack.env(),
            "PYTHONWARNINGS": ",".join(filter(None, [os.environ.get("PYTHONWARNINGS", ""), quiet])),
        }
        url = f"http://127.0.0.1:{args.port}"
        print(
            f"Dagster UI on {url} (local stack: PostgreSQL :{stack.postgres.port}, S3/Glue {stack.aws.endpoint_url}); "
            f"Ctrl-C to stop\nlineage, every layer open: {url}/asset-groups?expanded={LINEAGE_GROUPS}",
            flush=True,
        )
        if started_here:
            print(
                f"(a fresh stack: sample data, nothing exported yet; `{self_command()} demo --keep` before "
                "`make dev` shows exports, checks and a redaction)",
                flush=True,
            )
        dagster = Path(sys.executable).parent / "dagster"
        # Its own process group, so Ctrl-C reaches us and we stop the whole tree (webserver,
        # daemon, code servers) by group; `dagster dev` alone does not always exit on SIGINT.
        # cwd: the instance's own directory ($DAGSTER_HOME, where its dagster.yaml is), not the
        # repository, whose dagster.yaml `dagster dev` would otherwise warn it ignores.
        process = subprocess.Popen(
            [
                str(dagster),
                "dev",
                "-w",
                str(REPO_ROOT / "workspace.yaml"),
                "-h",
                "127.0.0.1",
                "-p",
                str(args.port),
                "--log-level",
                args.log_level,
            ],
            env=env,
            cwd=stack.dagster_home,
            start_new_session=True,
        )

        # A SIGTERM (e.g. from a supervisor) cleans up like Ctrl-C does.
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            code = process.wait()
            if code:
                print(f"weward-pipeline dev: dagster dev exited with status {code}", file=sys.stderr)
            return code
        except KeyboardInterrupt:
            print("\nstopping the Dagster UI" + (" and the local stack" if started_here else ""), flush=True)
            return 0  # asked to stop, and stopped: a success (make prints no "Error 130")
        finally:
            stop_process_group(process)
    finally:
        if started_here:
            stack.down()
