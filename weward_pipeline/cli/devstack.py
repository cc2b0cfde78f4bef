"""Sub-commands for the local stack: `stack up|down|env`, `demo`, `dev`."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from weward_pipeline.devstack.stack import REPO_ROOT, LocalStack


def register(subparsers: argparse._SubParsersAction) -> None:
    stack = subparsers.add_parser("stack", help="start/stop the local PostgreSQL + S3/Glue stack")
    stack.add_argument("action", choices=["up", "down", "env", "status"])
    stack.add_argument("--users", type=int, default=2_000, help="sample users to generate (up)")
    stack.add_argument("--days", type=int, default=5, help="days of sample activity, ending yesterday (up)")
    stack.set_defaults(handler=cmd_stack)

    demo = subparsers.add_parser("demo", help="fresh local stack + sample data, export the last days, print a summary")
    demo.add_argument("--days", type=int, default=3, help="how many recent days to export")
    demo.add_argument("--users", type=int, default=5_000, help="sample users to generate")
    demo.add_argument("--keep", action="store_true", help="leave the stack running (then: make dev)")
    demo.set_defaults(handler=cmd_demo)

    dev = subparsers.add_parser("dev", help="the Dagster UI on the local stack")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(handler=cmd_dev)


def _apply_env(stack: LocalStack) -> dict[str, str]:
    env = stack.env()
    os.environ.update(env)
    return env


def cmd_stack(args: argparse.Namespace) -> int:
    stack = LocalStack()
    if args.action == "up":
        stack.up()
        rows = stack.seed(days=args.days, users=args.users)
        print(f"local stack up: PostgreSQL on 127.0.0.1:{stack.postgres.port}, S3/Glue at {stack.aws.endpoint_url}")
        print("sample rows: " + ", ".join(f"{t}={n}" for t, n in rows.items()))
        print("environment: eval \"$(.venv/bin/weward-pipeline stack env)\"")
    elif args.action == "env":
        if not stack.running():
            print("# the local stack is not running: weward-pipeline stack up", file=sys.stderr)
            return 1
        for key, value in stack.env().items():
            print(f"export {key}={shlex.quote(value)}")
    elif args.action == "status":
        print("running" if stack.running() else "stopped")
        return 0 if stack.running() else 1
    else:
        stack.down()
        print("local stack stopped")
    return 0


def recent_days(timezone: str, count: int) -> list[dt.date]:
    yesterday = dt.datetime.now(ZoneInfo(timezone)).date() - dt.timedelta(days=1)
    return [yesterday - dt.timedelta(days=i) for i in reversed(range(count))]


def run_exports(days: list[dt.date]) -> list[tuple[str, dt.date, bool]]:
    """Materialize lake/* (and their checks) through Dagster, one run per day, on $DAGSTER_HOME."""
    import dagster as dg

    from weward_pipeline.config import load_catalog
    from weward_pipeline.defs.assets import lake_key
    from weward_pipeline.defs.factory import build_definitions

    catalog = load_catalog()
    defs = build_definitions(catalog)
    instance = dg.DagsterInstance.get()
    outcomes = []
    for day in days:
        # Snapshot tables hold "the table as it is now": only the latest day can be exported today.
        tables = [t for t in catalog.tables if t.mode == "append" or day == days[-1]]
        keys = [lake_key(t.name) for t in tables]
        assets = [defs.get_assets_def(key) for key in keys]
        checks = [c for c in defs.asset_checks if any(k.asset_key in keys for k in c.check_keys)]
        result = dg.materialize(
            [*assets, *checks], partition_key=day.isoformat(), instance=instance,
            resources=defs.resources, raise_on_error=False, tags={"weward/source": "demo"},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        print(f"  {day}: {'ok' if result.success else 'FAILED'} ({len(tables)} tables, run {result.run_id[:8]})")
        for event in result.all_events:
            if event.event_type_value == "STEP_FAILURE":
                error = event.event_specific_data.error
                print(f"    {event.step_key}: {error.message.strip() if error else 'failed'}")
        for table in tables:
            outcomes.append((table.name, day, result.success))
    return outcomes


def print_lake_summary(tables: list[str]) -> None:
    """What an analyst sees: Glue partitions, their rows and bytes, read back from the catalog."""
    from weward_pipeline.config import Settings
    from weward_pipeline.aws import AwsClients
    from weward_pipeline.glue import GlueCatalog
    from weward_pipeline.verify import published_manifest

    settings = Settings.from_env()
    clients = AwsClients.from_settings(settings)
    glue = GlueCatalog(clients.glue, settings.glue_database)
    header = f"{'table':<24} {'day':<10} {'rows':>9} {'bytes':>10}  Glue partition location"
    print("\n" + header + "\n" + "-" * len(header))
    for table in tables:
        for partition in glue.list_partitions(table):
            day = partition["Values"][0]
            _, manifest = published_manifest(glue, clients.s3, table, day)
            rows = manifest.rows if manifest else "?"
            size = manifest.bytes if manifest else "?"
            print(f"{table:<24} {day:<10} {rows:>9} {size:>10}  {partition['StorageDescriptor']['Location']}")
    print(f"\nGlue database: {settings.glue_database}; query it with Athena (production) or "
          "`weward-pipeline query` (local).")


def cmd_demo(args: argparse.Namespace) -> int:
    from weward_pipeline.config import load_catalog

    stack = LocalStack()
    stack.down()  # a fresh stack every time: a second `make demo` starts from scratch
    catalog = load_catalog()
    try:
        stack.up()
        print(f"PostgreSQL on 127.0.0.1:{stack.postgres.port}, S3+Glue (moto) at {stack.aws.endpoint_url}")
        rows = stack.seed(days=args.days + 2, users=args.users, timezone=catalog.timezone)
        print("sample app data: " + ", ".join(f"{t}={n:,}" for t, n in rows.items()))
        _apply_env(stack)
        days = recent_days(catalog.timezone, args.days)
        print(f"exporting {len(catalog.tables)} tables for {days[0]} .. {days[-1]} through Dagster ...")
        outcomes = run_exports(days)
        print_lake_summary([t.name for t in catalog.tables])
        failed = [f"{t} {d}" for t, d, ok in outcomes if not ok]
        for hook in DEMO_EPILOGUES:
            hook()
        if failed:
            print("FAILED runs: " + ", ".join(failed), file=sys.stderr)
            return 1
        print("\ndemo OK" + (" (stack left running: make dev)" if args.keep else ""))
        return 0
    finally:
        if not args.keep:
            stack.down()


def stop_process_group(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM the process's group, then SIGKILL what is left after `timeout` seconds."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


# Other concerns append callables here to add to the demo's output (e.g. analyst queries).
DEMO_EPILOGUES: list = []


def cmd_dev(args: argparse.Namespace) -> int:
    from weward_pipeline.config import load_catalog

    stack = LocalStack()
    started_here = not stack.running()
    try:
        stack.up()
        stack.seed(days=7, timezone=load_catalog().timezone)
        env = {**os.environ, **stack.env()}
        print(f"Dagster UI on http://127.0.0.1:{args.port} (local stack: PostgreSQL :{stack.postgres.port}, "
              f"S3/Glue {stack.aws.endpoint_url}); Ctrl-C to stop")
        dagster = Path(sys.executable).parent / "dagster"
        # Its own process group, so Ctrl-C reaches us and we stop the whole tree (webserver,
        # daemon, code servers) by group; `dagster dev` alone does not always exit on SIGINT.
        process = subprocess.Popen(
            [str(dagster), "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(args.port)],
            env=env, cwd=REPO_ROOT, start_new_session=True,
        )
        import signal

        # A SIGTERM (e.g. from a supervisor) cleans up like Ctrl-C does.
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            return process.wait()
        finally:
            stop_process_group(process)
    finally:
        if started_here:
            stack.down()
