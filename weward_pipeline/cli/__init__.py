"""`weward-pipeline`: the console script. Each module of this package registers its own sub-commands."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules that add sub-commands with a `register(subparsers)` function.
COMMAND_MODULES = [
    "weward_pipeline.cli.devstack",
    "weward_pipeline.query_cli",
    "weward_pipeline.cli.erase",
    "weward_pipeline.cli.redact",
    "weward_pipeline.cli.roles",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weward-pipeline",
        description="PostgreSQL -> daily Parquet on S3 + Glue, orchestrated by Dagster.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
