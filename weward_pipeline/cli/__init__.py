"""`weward-pipeline`: the console script. Each module of this package registers its own sub-commands.

Every command's documented mistakes (a wrong password, a server that is down, a variable left
unset, a catalog typo, an unknown table) end in one line naming what to do, never a traceback:
the commands catch what they know, and `main` is the net for what reaches it from the libraries
they share (boto3 without credentials or endpoint, PostgreSQL unreachable, a bad catalog).
Exit status: 0 done, 1 failed, 2 bad usage or configuration, 130 interrupted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import logging
import os
import sys
import warnings

# Modules that add sub-commands with a `register(subparsers)` function.
COMMAND_MODULES = [
    "weward_pipeline.cli.devstack",
    "weward_pipeline.cli.query",
    "weward_pipeline.cli.erase",
    "weward_pipeline.cli.redact",
    "weward_pipeline.cli.verify",
    "weward_pipeline.cli.roles",
]


class Parser(argparse.ArgumentParser):
    """A usage mistake in one line that points at --help, not the whole usage block above it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="weward-pipeline",
        description="PostgreSQL -> daily Parquet on S3 + Glue, orchestrated by Dagster.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def iso_date(text: str) -> dt.date:
    """argparse type for a day: says what was wrong instead of 'invalid fromisoformat value'."""
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day; write it as YYYY-MM-DD, e.g. 2024-03-31") from None


def one_line(text: str) -> str:
    """A message as one line (PostgreSQL's own messages span several), secrets masked."""
    from weward_pipeline.secret_store import scrub

    return " ".join(scrub(str(text)).split())


def quiet_library_noise() -> None:
    """Our own INFO lines; the libraries' only from WARNING (alembic announces every SQLite migration
    of the local Dagster instance, botocore every credential lookup), and no Dagster beta/preview
    warnings: this project uses those features on purpose, on a pinned Dagster version."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("botocore", "alembic", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview)")


def local_stack_hint() -> str:
    """What to do when the lake cannot be reached: on the local stack, its environment or the stack itself."""
    if os.environ.get("AWS_ENDPOINT_URL"):
        return (
            "is the local stack running? `weward-pipeline stack status`; start it with `weward-pipeline demo "
            '--keep`, then `eval "$(weward-pipeline stack env)"`'
        )
    return (
        'on the local stack: `weward-pipeline demo --keep`, then `eval "$(weward-pipeline stack env)"` in this '
        "shell; against AWS: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and AWS_REGION"
    )


def explain(exc: BaseException) -> tuple[str, int] | None:
    """One line (and the exit status) for an error a user can fix; None for a bug (keep the traceback)."""
    from weward_pipeline.config import ConfigError

    if isinstance(exc, ConfigError):
        return one_line(str(exc)), 2
    try:
        from botocore import exceptions as boto
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return None
    if isinstance(exc, boto.NoCredentialsError):
        return f"no AWS credentials in this shell; {local_stack_hint()}", 2
    if isinstance(exc, boto.EndpointConnectionError):
        return f"cannot reach {exc.kwargs.get('endpoint_url', 'the AWS endpoint')}; {local_stack_hint()}", 1
    if isinstance(exc, (boto.NoRegionError, boto.ProfileNotFound, boto.PartialCredentialsError)):
        return f"{exc}; {local_stack_hint()}", 2
    if isinstance(exc, boto.ClientError) and exc.response.get("Error", {}).get("Code") in (
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "UnrecognizedClientException",
    ):
        return f"AWS refused the credentials of this shell ({exc.response['Error']['Code']}); {local_stack_hint()}", 2
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return None
    if isinstance(exc, psycopg.OperationalError):
        return f"PostgreSQL: {one_line(str(exc))}", 1
    return None


def main(argv: list[str] | None = None) -> int:
    quiet_library_noise()
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the net: documented mistakes in one line, bugs with their traceback
        known = explain(exc)
        if known is None:
            raise
        message, status = known
        print(f"weward-pipeline {args.command}: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
