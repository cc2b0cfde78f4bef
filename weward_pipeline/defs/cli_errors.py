"""One line, not a hundred, for the documented mistakes of `dagster asset materialize -m weward_pipeline.definitions`.

Dagster's CLI lets an error raised while importing the code location (a catalog typo: ConfigError)
or while resolving the run's config (a configuration variable left unset: DagsterInvalidConfigError)
reach the interpreter, which prints some 100 lines of click and importlib frames before the line
that says what to do. `install()` puts a `sys.excepthook` in front that prints that line alone for
those two mistakes and leaves every other error its traceback. Code servers (`dagster dev`, the
webserver, the daemon) catch load errors themselves and show them in the UI, so the hook never sees
them; a hook someone else installed (pytest, IPython) is left in place.

WEWARD_PG_URL is read where a run executes, not where it is planned (the Dagster service's webserver
and daemon plan runs and hold no database secret; defs/resources.py). `dagster asset materialize`
and `dagster job execute` plan and execute in the same process, so `check_in_process_run()` checks
it there at import, before any run starts: an unset DSN is one line, not a failed step's stack trace.
"""

from __future__ import annotations

import re
import sys

ENV_NOT_SET = re.compile(r'environment variable "([A-Z0-9_]+)" which is not set')


def short_message(error: BaseException) -> str | None:
    """The line to print instead of the traceback, or None to keep the traceback."""
    from weward_pipeline.config import ConfigError

    if isinstance(error, ConfigError):
        return str(error)
    names = sorted(set(ENV_NOT_SET.findall(str(error))))
    if names and type(error).__name__ == "DagsterInvalidConfigError":
        return (
            f"{', '.join(names)} not set. Set the configuration variables (README: Configuration, the contract), "
            'or on the local stack: eval "$(weward-pipeline stack env)" (after weward-pipeline demo --keep)'
        )
    return None


IN_PROCESS_RUN_COMMANDS = (("asset", "materialize"), ("job", "execute"), ("job", "launch"))


def is_in_process_run_command(argv: list[str]) -> bool:
    """True for `dagster asset materialize ...` / `dagster job execute ...`: this process runs the run."""
    if not argv or not argv[0].endswith("dagster"):
        return False
    words = [a for a in argv[1:] if not a.startswith("-")][:2]
    return tuple(words) in IN_PROCESS_RUN_COMMANDS


def check_in_process_run(argv: list[str] | None = None, env: dict | None = None) -> None:
    """Raises the contract's ConfigError when this process will execute a run without WEWARD_PG_URL."""
    import os

    from weward_pipeline.config import Settings

    if is_in_process_run_command(sys.argv if argv is None else argv):
        Settings.from_env(dict(os.environ) if env is None else env)


def install() -> None:
    if sys.excepthook is not sys.__excepthook__:
        return
    previous = sys.excepthook

    def hook(kind, value, traceback) -> None:
        message = short_message(value)
        if message is None:
            previous(kind, value, traceback)
        else:
            print(f"weward_pipeline: {message}", file=sys.stderr)

    sys.excepthook = hook
