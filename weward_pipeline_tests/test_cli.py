"""The console script itself: help for everything, mistakes in one line (no servers needed)."""

from __future__ import annotations

import argparse

import psycopg
import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError

from weward_pipeline import cli
from weward_pipeline.config import ConfigError
from weward_pipeline.devstack.processes import free_port


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_command_and_every_option_has_help_text():
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, parser in subcommands().items()
        for action in parser._actions
        if not action.help and not isinstance(action, argparse._HelpAction)
    ]
    assert not missing, f"options without help text: {missing}"
    assert all(parser.description for parser in subcommands().values())


def test_a_usage_mistake_is_one_line_that_points_at_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["redact", "step_events", "2024-02-30"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "'2024-02-30' is not a day; write it as YYYY-MM-DD" in err and "(see weward-pipeline redact --help)" in err


def test_errors_a_user_can_fix_are_one_line_and_bugs_keep_their_traceback(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    message, status = cli.explain(NoCredentialsError())
    assert status == 2 and "no AWS credentials" in message and "demo --keep" in message and "stack env" in message
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    message, status = cli.explain(EndpointConnectionError(endpoint_url="http://127.0.0.1:1/"))
    assert status == 1 and "cannot reach http://127.0.0.1:1/" in message and "stack status" in message
    try:
        psycopg.connect(f"postgresql://someone:s3cret-pw@127.0.0.1:{free_port()}/db", connect_timeout=5)
    except psycopg.OperationalError as exc:
        message, status = cli.explain(exc)
    assert status == 1 and "\n" not in message and "s3cret-pw" not in message
    assert cli.explain(ConfigError("invalid table catalog x:\n  - one\n  - two")) == (
        "invalid table catalog x: - one - two",
        2,
    )
    assert cli.explain(KeyError("a bug")) is None


def test_stack_status_names_what_runs_and_what_does_not(tmp_path, monkeypatch, capsys):
    from weward_pipeline.cli import devstack
    from weward_pipeline.devstack.stack import LocalStack

    monkeypatch.setattr(devstack, "LocalStack", lambda: LocalStack(tmp_path / "stack"))  # a stack never started
    assert cli.main(["stack", "status"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["PostgreSQL", "S3+Glue", "sample"]
    assert "stopped" in out[0] and "stopped" in out[1] and "none" in out[2]
