"""The README and docs/ say what the code does today: what can drift is checked against the code.

- every `weward-pipeline ...` command shown parses with the console script's own argparse parser,
  every `make X` is a Makefile target, every `dagster asset materialize` names the code location;
- "Where do I change X" names files that exist, and every product module;
- the environment contract table lists exactly the variables the code reads, with its defaults;
- numbers stated in the docs (batch size, timeouts, limits, retries, hours, defaults) equal the
  constants they describe;
- relative links and repository paths resolve; every docs/ page is linked from the README;
- benchmark figures live only in bench/results.md.
No server is started: this reads files and imports modules.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "weward_pipeline"
README = REPO / "README.md"
DOCS = REPO / "docs"
# Pages whose commands, links and paths are checked (the README, docs/, and the other READMEs).
PAGES = [README, *sorted(DOCS.glob("*.md")), REPO / "infra" / "README.md", REPO / "bench" / "README.md"]
# Where benchmark figures must not appear (they live in bench/results.md only).
PROSE = [README, *sorted(DOCS.glob("*.md"))]
ROOT_ENTRIES = {"weward_pipeline", "weward_pipeline_tests", "bench", "infra", "deploy", "docs", "scripts", ".ci"}

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
COMMAND_WORDS = ("weward-pipeline", "make", "dagster")


def text(path: Path) -> str:
    return path.read_text()


def flat(path: Path) -> str:
    """The page with all whitespace runs as one space: numbers are found whatever the line wrapping."""
    return " ".join(text(path).split())


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def fenced_blocks(page: str) -> list[tuple[str, str, int]]:
    """(language, body, line of the body) of each fenced code block."""
    return [(m.group(1), m.group(2), page.count("\n", 0, m.start(2)) + 1) for m in FENCE.finditer(page)]


def without_fences(page: str) -> str:
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), page)


def command_tokens(line: str) -> list[str] | None:
    """The tokens of a shell command line that starts with one of COMMAND_WORDS, else None."""
    words = line.split()
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words = words[1:]  # VAR=value prefixes
    if not words or Path(words[0]).name not in COMMAND_WORDS:
        return None
    return shlex.split(" ".join(words), comments=True)


def commands_in(path: Path) -> list[tuple[str, list[str], bool]]:
    """(where, tokens, complete) of each command shown; complete: from a code block, not a mention."""
    page = text(path)
    found = []
    for language, body, first_line in fenced_blocks(page):
        if language not in ("", "bash", "sh", "shell", "console", "text", "sql"):
            continue
        lines = body.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i].strip()
            if language == "sql":  # `-- weward-pipeline query ...   (or ...)` comments name commands
                line = re.sub(r"\s+\(.*\)\s*$", "", line.removeprefix("-- ")) if line.startswith("-- ") else ""
            line = line.removeprefix("$ ")
            start = i
            pending = line
            while True:  # a quoted SQL statement may span lines; a trailing backslash continues
                try:
                    tokens = command_tokens(pending.removesuffix("\\"))
                    break
                except ValueError:  # no closing quotation yet
                    i += 1
                    if i >= len(lines):
                        raise AssertionError(
                            f"{rel(path)}:{first_line + start}: unterminated quote in {line!r}"
                        ) from None
                    pending += "\n" + lines[i]
            if pending.endswith("\\") and i + 1 < len(lines):
                lines[i + 1] = pending.removesuffix("\\") + " " + lines[i + 1].strip()
            elif tokens:
                found.append((f"{rel(path)}:{first_line + start}", tokens, True))
            i += 1
    for number, page_line in enumerate(without_fences(page).splitlines(), start=1):
        for span in INLINE.findall(page_line):
            inner = re.search(r"\$\((.*)\)", span)  # eval "$(weward-pipeline stack env)"
            candidate = inner.group(1) if inner else span
            try:
                tokens = command_tokens(candidate)
            except ValueError:
                tokens = None
            if tokens:
                found.append((f"{rel(path)}:{number}", tokens, False))
    return found


def all_commands() -> list[tuple[str, list[str], bool]]:
    return [c for page in PAGES for c in commands_in(page)]


def console_parser() -> argparse.ArgumentParser:
    # `weward_pipeline.cli` is the console script's module before and after it became a package.
    from weward_pipeline.cli import build_parser

    return build_parser()


def parse_error(parser: argparse.ArgumentParser, args: list[str]) -> str | None:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            parser.parse_args(args)
        except SystemExit as exc:
            if exc.code:
                return stderr.getvalue().strip().splitlines()[-1]
    return None


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_weward_pipeline_command_in_the_docs_parses():
    parser = console_parser()
    shown = [
        (where, tokens[1:], complete)
        for where, tokens, complete in all_commands()
        if Path(tokens[0]).name == "weward-pipeline"
    ]
    assert len(shown) > 20, "the command extraction found too little: check test_docs.commands_in"
    wrong = []
    for where, args, complete in shown:
        error = parse_error(parser, args)
        # A mention in running text (`weward-pipeline erase`) names a command, not all its arguments.
        if error and not (not complete and "arguments are required" in error):
            wrong.append(f"{where}: weward-pipeline {shlex.join(args)}\n    {error}")
    assert not wrong, "commands in the docs that weward-pipeline refuses:\n" + "\n".join(wrong)


def test_every_subcommand_is_shown_in_the_docs():
    shown = {
        tokens[1] for _, tokens, _ in all_commands() if Path(tokens[0]).name == "weward-pipeline" and len(tokens) > 1
    }
    missing = sorted(set(subparsers(console_parser())) - shown)
    assert not missing, f"weward-pipeline sub-commands no page shows: {missing}; add them to README.md's entry points"


def test_every_make_target_in_the_docs_exists():
    targets = set(re.findall(r"^([\w-]+):", text(REPO / "Makefile"), re.M))
    wrong = [
        f"{where}: make {tokens[1]}"
        for where, tokens, _ in all_commands()
        if tokens[0] == "make" and len(tokens) > 1 and tokens[1] not in targets
    ]
    assert not wrong, f"make targets the Makefile does not have: {wrong}"


def test_dagster_commands_name_the_code_location_and_catalog_tables():
    from weward_pipeline.config import load_catalog

    tables = {t.name for t in load_catalog().tables}
    shown = [(where, tokens) for where, tokens, _ in all_commands() if tokens[0] == "dagster" and "--select" in tokens]
    assert shown
    for where, tokens in shown:
        if "-m" in tokens:
            module = tokens[tokens.index("-m") + 1]
            assert (REPO / (module.replace(".", "/") + ".py")).is_file(), f"{where}: no module {module}"
        selection = tokens[tokens.index("--select") + 1]
        for key in selection.removeprefix("key:").split(","):
            prefix, _, table = key.partition("/")
            assert prefix in ("lake", "redaction", "postgres"), f"{where}: {key} is not an asset key of this project"
            assert table == "*" or table in tables, f"{where}: {key}: no table {table!r} in the sample catalog"


# -- "Where do I change X" ----------------------------------------------------------------------


def section(page: str, heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", page, re.M | re.S)
    assert match, f"README.md has no '## {heading}' section"
    return match.group(1)


def where_table_paths() -> set[str]:
    rows = [line for line in section(text(README), "Where do I change X").splitlines() if line.startswith("| ")]
    return {span for row in rows for span in INLINE.findall(row.split("|")[2])}


def resolve_listed(path: str) -> Path | None:
    for base in (PACKAGE, REPO):
        if (base / path).exists():
            return base / path
    return None


def product_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_where_do_i_change_x_names_files_that_exist():
    missing = sorted(p for p in where_table_paths() if resolve_listed(p) is None)
    assert not missing, f"README.md 'Where do I change X' names paths that do not exist: {missing}"


def test_where_do_i_change_x_lists_every_product_module():
    listed = {resolve_listed(p) for p in where_table_paths()} - {None}
    unlisted = []
    for module in product_modules():
        if module == PACKAGE / "__init__.py":
            continue
        # A package's __init__ is listed through its directory (`query/`).
        wanted = module.parent if module.name == "__init__.py" else module
        if wanted not in listed:
            unlisted.append(str(wanted.relative_to(PACKAGE)) + ("/" if wanted.is_dir() else ""))
    assert not unlisted, f"add to README.md 'Where do I change X' (paths under weward_pipeline/): {unlisted}"


# -- the environment contract --------------------------------------------------------------------


def contract_table() -> dict[str, str]:
    """variable -> its 'when unset' cell, from the README's configuration table."""
    rows = {}
    for line in section(text(README), "Configuration: the contract").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 3:
            for name in INLINE.findall(cells[0]):
                rows[name] = cells[2]
    return rows


def string_constants(path: Path) -> set[str]:
    return {
        node.value
        for node in ast.walk(ast.parse(text(path)))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def variables_read_by(paths) -> set[str]:
    return {s for path in paths for s in string_constants(path) if re.fullmatch(r"WEWARD_[A-Z0-9_]+", s)}


def test_the_contract_table_lists_exactly_the_variables_the_product_reads():
    local_only = PACKAGE / "devstack"
    product = [p for p in product_modules() if local_only not in p.parents]
    read = variables_read_by(product)
    table = contract_table()
    documented = {name for name in table if name.startswith("WEWARD_")}
    assert not read - documented, (
        f"variables the code reads, missing from README.md's contract table: {sorted(read - documented)}"
    )
    assert not documented - read, (
        f"README.md's contract table lists variables no product module reads: {sorted(documented - read)}"
    )
    config_reads = {s for s in string_constants(PACKAGE / "config.py") if re.fullmatch(r"(WEWARD|AWS)_[A-Z0-9_]+", s)}
    assert config_reads <= set(table), f"config.py reads {sorted(config_reads - set(table))}, not in the contract table"
    local = variables_read_by(p for p in product_modules() if local_only in p.parents) - read
    assert all(name in text(README) for name in local), f"local-stack variables the README does not mention: {local}"


def test_every_production_setting_is_in_the_contract_table():
    table = contract_table()
    for env_file in sorted((REPO / "deploy").glob("*.env")):
        names = {
            line.split("=", 1)[0].removesuffix("_SECRET")
            for line in text(env_file).splitlines()
            if "=" in line and not line.startswith("#")
        }
        # DAGSTER_PG_* configure Dagster's own storage (deploy/dagster.yaml), not the pipeline.
        missing = sorted(n for n in names if not n.startswith("DAGSTER_PG_") and n not in table)
        assert not missing, f"{rel(env_file)} sets {missing}, which README.md's contract table does not list"


def test_the_defaults_in_the_contract_table_are_the_codes():
    from weward_pipeline import config
    from weward_pipeline.cli import redact as redact_cli
    from weward_pipeline.defs import schedules
    from weward_pipeline.query.settings import QuerySettings

    table = contract_table()
    expected = {
        "WEWARD_GLUE_DATABASE": config.DEFAULT_GLUE_DATABASE,
        "AWS_REGION": config.DEFAULT_AWS_REGION,
        "WEWARD_SCHEDULE_HOUR": schedules.DEFAULT_HOUR,
        "WEWARD_FRESHNESS_DEADLINE_HOUR": schedules.DEFAULT_FRESHNESS_DEADLINE_HOUR,
        "WEWARD_SCHEDULE_DEFAULT_STATUS": "running" if schedules.ScheduleSettings().running_by_default else "stopped",
        "WEWARD_REDACT_LOOKBACK_DAYS": redact_cli.DEFAULT_LOOKBACK_DAYS,
        "WEWARD_ATHENA_WORKGROUP": QuerySettings().athena_workgroup,
        "WEWARD_QUERY_ENGINE": QuerySettings().engine,
        "WEWARD_TABLES_FILE": str(config.SAMPLE_CATALOG.relative_to(REPO)),
    }
    for name, value in expected.items():
        cell = table[name]
        first = (INLINE.findall(cell) or [cell.split(":")[0].strip()])[0]
        assert first == str(value), f"README.md says {name} defaults to {cell!r}; the code's default is {value!r}"
    assert schedules.ScheduleSettings().cron == f"0 {schedules.DEFAULT_HOUR} * * *"


# -- numbers -------------------------------------------------------------------------------------


def dagster_yaml(path: str) -> dict:
    return yaml.safe_load(text(REPO / path))


def terraform_default(path: str, variable: str) -> str:
    match = re.search(rf'variable "{variable}" {{.*?default\s*=\s*"([^"]+)"', text(REPO / path), re.S)
    assert match, f"{path}: no default for {variable}"
    return match.group(1)


def cron_hour(expression: str) -> int:
    return int(expression.removeprefix("cron(").split()[1])


def facts() -> list[tuple[str, str, object]]:
    """(page, regex with one group per number, the code's value(s)): what the docs state and must keep true."""
    from weward_pipeline import config, export, lake, roles
    from weward_pipeline.cli.redact import DEFAULT_ABANDONED_AFTER_HOURS, DEFAULT_LOOKBACK_DAYS
    from weward_pipeline.config import load_catalog
    from weward_pipeline.defs import assets, redaction, schedules
    from weward_pipeline.defs.erasure import ErasureConfig, erasure_job
    from weward_pipeline.defs.resources import LakeResource
    from weward_pipeline.erasure import ErasureLimits
    from weward_pipeline.extract import ExtractLimits
    from weward_pipeline.pacing import Pacer, PacingLimits, export_pacing
    from weward_pipeline.query import settings as query_settings
    from weward_pipeline.redact import RedactionLimits
    from weward_pipeline.secret_store import MIN_KEY_BYTES

    limits, redact, pacing = ExtractLimits(), RedactionLimits(), PacingLimits()
    assert (
        LakeResource.model_fields["statement_timeout_s"].default,
        LakeResource.model_fields["lock_timeout_s"].default,
    ) == (limits.statement_timeout_s, limits.lock_timeout_s), "the resource's defaults and ExtractLimits' differ"
    erasure_retry = erasure_job(load_catalog()).graph.node_defs[0].retry_policy
    sample = {t.name: t for t in load_catalog().tables}
    local, prod = dagster_yaml("dagster.yaml"), dagster_yaml("deploy/dagster.yaml")
    assert local["concurrency"] == prod["concurrency"], "the docs state one set of limits for both dagster.yaml files"
    pools, runs = local["concurrency"]["pools"], local["concurrency"]["runs"]
    backfill_limit = next(t["limit"] for t in runs["tag_concurrency_limits"] if t["key"] == "dagster/backfill")
    setup = text(REPO / "setup.py")
    parser = subparsers(console_parser())
    schedule_tf = "infra/modules/schedule/variables.tf"
    return [
        # export.md
        (
            "docs/export.md",
            r"record batches of about (\d+) MB \(`ExtractLimits.batch_bytes`\)",
            limits.batch_bytes // 2**20,
        ),
        ("docs/export.md", r"one Parquet row group \((\w+)\)", lake.COMPRESSION),
        ("docs/export.md", r"files roll over at ([\d,]+) rows", f"{lake.MAX_ROWS_PER_FILE:,}"),
        ("docs/export.md", r"dictionary outgrows (\d+) KB", lake.DICTIONARY_PAGE_LIMIT // 1024),
        ("docs/export.md", r"`statement_timeout` (\d+) min", limits.statement_timeout_s // 60),
        ("docs/export.md", r"`lock_timeout` (\d+) s", limits.lock_timeout_s),
        (
            "docs/export.md",
            r"`idle_in_transaction_session_timeout` (\d+) min",
            limits.idle_in_transaction_timeout_s // 60,
        ),
        ("docs/export.md", r"`connect_timeout` (\d+) s", limits.connect_timeout_s),
        (
            "docs/export.md",
            r"pool `(\w+)` \(limit (\d+) in `dagster.yaml`\)",
            (assets.SOURCE_POOL, pools["default_limit"]),
        ),
        ("docs/export.md", r"never has more than (\d+) exports reading at once", pools["default_limit"]),
        ("docs/export.md", r"older than (\d+) hours", export.LEFTOVER_AGE.total_seconds() // 3600),
        ("docs/export.md", r"`snapshot_grace_hours` \| [^|]+ \| (\d+) \|", config.TableConfig.snapshot_grace_hours),
        ("docs/export.md", r"D's end \+ (\d+) h \(default\)", config.TableConfig.snapshot_grace_hours),
        ("docs/export.md", r"decimal128\((\d+),(\d+)\)", None),  # checked below against typemap
        # operations.md
        ("docs/operations.md", r"at (\d\d):00 in the catalog's time zone it exports yesterday", schedules.DEFAULT_HOUR),
        (
            "docs/operations.md",
            r"starts the same export as an ECS task at (\d\d):00 and `weward-pipeline redact-due` at (\d\d):00",
            (
                cron_hour(terraform_default(schedule_tf, "export_schedule_expression")),
                cron_hour(terraform_default(schedule_tf, "redact_schedule_expression")),
            ),
        ),
        ("docs/operations.md", r"at most (\d+) steps read PostgreSQL at once", pools["default_limit"]),
        (
            "docs/operations.md",
            r"`(\w+)` pool \(pools `default_limit: (\d+)`",
            (assets.SOURCE_POOL, pools["default_limit"]),
        ),
        (
            "docs/operations.md",
            r"at most (\d+) runs at once \(`max_concurrent_runs`\), of which a backfill takes at most (\d+)",
            (runs["max_concurrent_runs"], backfill_limit),
        ),
        (
            "docs/operations.md",
            r"\| export `lake/<table>` \| (\d+) \| (\d+) s, exponential",
            (assets.EXPORT_RETRY_POLICY.max_retries, assets.EXPORT_RETRY_POLICY.delay),
        ),
        (
            "docs/operations.md",
            r"\| redaction `redaction/<table>` \| (\d+) \| (\d+) s, exponential",
            (redaction.REDACTION_RETRY_POLICY.max_retries, redaction.REDACTION_RETRY_POLICY.delay),
        ),
        (
            "docs/operations.md",
            r"\| erasure job `gdpr_erasure` \| (\d+) \| (\d+) s, exponential",
            (erasure_retry.max_retries, erasure_retry.delay),
        ),
        ("docs/operations.md", r"missing at (\d\d):00 local time", schedules.DEFAULT_FRESHNESS_DEADLINE_HOUR),
        ("docs/operations.md", r"the sensor `(\w+)`", schedules.FRESHNESS_SENSOR),
        (
            "docs/operations.md",
            r"`daily_export_schedule` \(running by default, job `(\w+)`\)",
            schedules.DAILY_EXPORT_JOB,
        ),
        ("docs/operations.md", r"older than (\d+) hours", export.LEFTOVER_AGE.total_seconds() // 3600),
        # redaction.md
        (
            "docs/redaction.md",
            r"sets (\d+) days on `step_events` and (\d+) on `ward_transactions`",
            (sample["step_events"].retention_days, sample["ward_transactions"].retention_days),
        ),
        (
            "docs/redaction.md",
            r"from (\d+) keys, towards batches of ([\d.]+) s",
            (Pacer.__init__.__kwdefaults__["start_rows"], pacing.target_batch_s),
        ),
        (
            "docs/redaction.md",
            r"`lock_timeout` (\d+) s, `statement_timeout` (\d+) s, `idle_in_transaction_session_timeout` (\d+) s",
            (redact.lock_timeout_s, redact.statement_timeout_s, redact.idle_in_transaction_timeout_s),
        ),
        (
            "docs/redaction.md",
            r"retried (\d+) times \(backoff (\d+) s, doubling\)",
            (redact.lock_retries, redact.retry_backoff_s),
        ),
        ("docs/redaction.md", r"works at most (\d+)% of the time", pacing.duty_cycle * 100),
        # pacing.md
        (
            "docs/pacing.md",
            r"The defaults \(`PacingLimits`\) are `duty_cycle: ([\d.]+)`, `target_batch_s: ([\d.]+)`, "
            r"`min_batch_rows: (\d+)`, `max_batch_rows: (\d+)`, `check_every_s: (\d+)`",
            (
                pacing.duty_cycle,
                pacing.target_batch_s,
                pacing.min_batch_rows,
                pacing.max_batch_rows,
                pacing.check_every_s,
            ),
        ),
        (
            "docs/pacing.md",
            r"`max_canary_ms` (\d+) \| `critical_canary_ms` (\d+)",
            (pacing.max_canary_ms, pacing.critical_canary_ms),
        ),
        (
            "docs/pacing.md",
            r"`max_active_backends` (\d+) \| `critical_active_backends` (\d+)",
            (pacing.max_active_backends, pacing.critical_active_backends),
        ),
        (
            "docs/pacing.md",
            r"`max_replica_lag_s` (\d+) \| `critical_replica_lag_s` (\d+)",
            (pacing.max_replica_lag_s, pacing.critical_replica_lag_s),
        ),
        ("docs/pacing.md", r"up to `max_pause_s`, (\d+) s", pacing.max_pause_s),
        ("docs/pacing.md", r"for `critical_for_s` \((\d+) s\)", pacing.critical_for_s),
        ("docs/pacing.md", r"`standby_margin_s` \((\d+) s", limits.standby_margin_s),
        ("docs/pacing.md", r"`standby_max_wait_s` \((\d+) s\)", limits.standby_max_wait_s),
        ("docs/export.md", r"it reads at most (\d+)% of the\s+time by default", export_pacing().duty_cycle * 100),
        ("docs/redaction.md", r"stays above it for (\d+) s", redact.max_lag_wait_s),
        ("docs/redaction.md", r"Every (\d+) s the Glue partition is re-read", redact.lake_recheck_s),
        (
            "docs/redaction.md",
            r"once a day \((\d\d):00\)",
            cron_hour(terraform_default(schedule_tf, "redact_schedule_expression")),
        ),
        ("docs/redaction.md", r"retention ended within the last (\d+) days", DEFAULT_LOOKBACK_DAYS),
        ("docs/redaction.md", r"in progress after (\d+) hours are marked failed", DEFAULT_ABANDONED_AFTER_HOURS),
        ("docs/redaction.md", r"The `(\w+)` sensor \(running by default\)", redaction.AUTOMATION_SENSOR),
        ("docs/redaction.md", r"the `(\w+)` check fails", redaction.REEXPORT_CHECK),
        # personal-data.md
        ("docs/personal-data.md", r"The key must be at least (\d+) bytes", MIN_KEY_BYTES),
        (
            "docs/personal-data.md",
            r"connection limits (\d+) for export, (\d+) for redaction, (\d+) for erasure",
            (roles.EXPORT_CONNECTION_LIMIT, roles.REDACT_CONNECTION_LIMIT, roles.ERASE_CONNECTION_LIMIT),
        ),
        ("docs/personal-data.md", r"hence the limit of (\d+)", roles.ERASE_CONNECTION_LIMIT),
        (
            "docs/personal-data.md",
            r"(\d+) rows per transaction by default",
            (
                ErasureLimits.batch_rows,
                ErasureConfig.model_fields["batch_rows"].default,
                parser["erase"].get_default("batch_rows"),
            ),
        ),
        # querying.md
        (
            "docs/querying.md",
            r"cost \(\$(\d+)/TB, (\d+) MB minimum per query\)",
            (query_settings.ATHENA_USD_PER_TB, query_settings.ATHENA_MIN_BILLED_BYTES // query_settings.MB),
        ),
        # README.md
        ("README.md", r"exports the last (\d+) days of every table", parser["demo"].get_default("days")),
        ("README.md", r"http://127.0.0.1:(\d+)", parser["dev"].get_default("port")),
        ("README.md", r"HMAC key of the `hash` columns, at least (\d+) bytes", MIN_KEY_BYTES),
        (
            "README.md",
            r"pinned together \(([\d.]+) / ([\d.]+)\)",
            (re.search(r'"dagster==([\d.]+)"', setup).group(1), re.search(r'"dagster-aws==([\d.]+)"', setup).group(1)),
        ),
    ]


def same(stated: str, value) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(stated.replace(",", "")) == float(value)
    if isinstance(value, tuple):  # several sources that must all agree with the one stated number
        return all(same(stated, v) for v in value)
    return stated == str(value)


def test_numbers_and_names_in_the_docs_are_the_codes():
    from weward_pipeline import typemap

    wrong = []
    for page, pattern, value in facts():
        matches = list(re.finditer(pattern, flat(REPO / page)))
        if not matches:
            wrong.append(f"{page}: no longer says /{pattern}/ (reword the test with the page)")
            continue
        if value is None:
            continue
        for match in matches:
            groups = match.groups()
            values = value if len(groups) > 1 else (value,)
            for stated, expected in zip(groups, values):
                if not same(stated, expected):
                    wrong.append(f"{page}: says {match.group(0)!r}; the code has {expected!r}")
    assert f"decimal128({typemap.UNCONSTRAINED_NUMERIC[0]},{typemap.UNCONSTRAINED_NUMERIC[1]})" in text(
        DOCS / "export.md"
    )
    assert not wrong, "the docs disagree with the code:\n" + "\n".join(wrong)


def test_no_page_states_another_batch_size():
    from weward_pipeline.extract import ExtractLimits

    mb = ExtractLimits().batch_bytes // 2**20
    for page in PAGES:
        for stated in re.findall(r"(\d+) ?MB (?:batch|hint|record batch)", flat(page)):
            assert int(stated) == mb, f"{rel(page)} states {stated} MB batches; the export uses {mb} MB"


def test_every_catalog_key_is_documented():
    from weward_pipeline.config import TABLE_KEYS

    page = text(DOCS / "export.md")
    keys_table = page.split("Every key of a table entry:", 1)[1].split("\n\n", 2)[1]
    documented = {span for line in keys_table.splitlines() for span in INLINE.findall(line.split("|")[1])}
    assert TABLE_KEYS <= documented, f"docs/export.md's key table misses {sorted(TABLE_KEYS - documented)}"
    assert documented <= TABLE_KEYS, (
        f"docs/export.md documents keys the catalog refuses: {sorted(documented - TABLE_KEYS)}"
    )


def test_the_personal_data_policy_table_is_the_registry():
    from weward_pipeline.pii import POLICIES

    page = text(DOCS / "personal-data.md")
    rows = [
        line
        for line in page.split("| policy | in the lake | Glue type |", 1)[1].split("\n\n", 1)[0].splitlines()
        if line.startswith("| `")
    ]
    glue_types = {INLINE.findall(row.split("|")[1])[0]: row.split("|")[3].strip() for row in rows}
    assert set(glue_types) == set(POLICIES), (
        f"docs/personal-data.md documents {sorted(glue_types)}; pii.POLICIES has {sorted(POLICIES)}"
    )
    for name, policy in POLICIES.items():
        expected = "absent" if not policy.exported else f"`{policy.lake_type[1]}`" if policy.lake_type else "unchanged"
        assert glue_types[name] == expected, (
            f"docs/personal-data.md: `{name}` in Glue is {expected}, not {glue_types[name]}"
        )
    for ui_key in (p.ui_key for p in POLICIES.values() if p.ui_key):
        assert f"`{ui_key}`" in page, f"docs/personal-data.md does not name the UI metadata {ui_key}"


def test_the_docs_example_catalog_is_valid():
    # Moved from test_config.py with the example (README.md -> docs/export.md).
    from weward_pipeline.config import parse_catalog

    page = text(DOCS / "export.md")
    example = page.split("## The table catalog", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    catalog = parse_catalog(yaml.safe_load(example), "docs/export.md")
    assert [t.name for t in catalog.tables] == ["step_events", "users"]


def test_every_requirement_is_explained_in_the_readme():
    setup = text(REPO / "setup.py")
    requirements = {
        re.split(r"[\[<>=!~ ]", spec, maxsplit=1)[0]
        for spec in re.findall(r'^\s*"([A-Za-z][\w.-]*(?:\[[\w,]+\])?(?:==|>=|<=|!=|~=|<|>)[^"]*)"', setup, re.M)
    }
    assert {"dagster", "pyarrow", "pytest"} <= requirements
    deps = section(text(README), "Dependencies and why")
    named = {
        re.sub(r"\s*\(.*\)|\[.*\]", "", name).strip()
        for line in deps.splitlines()
        if line.startswith("| ")
        for name in line.split("|")[1].removeprefix(" dev:").split(",")
    }
    assert not requirements - named, (
        f"setup.py requirements the README does not explain: {sorted(requirements - named)}"
    )


def test_what_the_readme_says_about_polars_is_true():
    deps = section(text(README), "Dependencies and why")
    row = next(line for line in deps.splitlines() if line.startswith("| polars"))
    importers = sorted(
        rel(p)
        for base in ("weward_pipeline", "weward_pipeline_tests", "bench")
        for p in (REPO / base).rglob("*.py")
        if re.search(r"^\s*(import polars|from polars)", text(p), re.M)
    )
    if "imported by no module" in row:
        assert not importers, f"README.md says no module imports polars, but {importers} do: update the polars row"
    else:
        assert importers, "README.md's polars row names a use, but no module imports polars"


# -- links and paths -----------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.*)$", without_fences(text(path)), re.M)}


def test_relative_links_resolve():
    broken = []
    for page in PAGES:
        for target in LINK.findall(without_fences(text(page))):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            resolved = (page.parent / file).resolve() if file else page
            if not resolved.exists():
                broken.append(f"{rel(page)}: {target}")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{rel(page)}: {target} (no such heading)")
    assert not broken, f"links that do not resolve: {broken}"


def test_repository_paths_named_in_the_docs_exist():
    module_names = {p.name for p in product_modules()}
    missing = []
    for page in PAGES:
        for span in INLINE.findall(without_fences(text(page))):
            words = span.split()
            if len(words) != 1 or "<" in span or "*" in span:
                continue
            path = span.rstrip("/")
            if path.split("/")[0] in ROOT_ENTRIES and "/" in path and not (REPO / path).exists():
                missing.append(f"{rel(page)}: {span}")
            # A module named by its path under the package (`redact.py`, `defs/assets.py`), by its name in a
            # package the text names (`dialect.py` of `query/`), or a test file.
            if (
                path.endswith(".py")
                and not any((base / path).exists() for base in (PACKAGE, REPO, REPO / "weward_pipeline_tests"))
                and path not in module_names
            ):
                missing.append(f"{rel(page)}: {span}")
    assert not missing, f"paths that do not exist: {missing}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in LINK.findall(text(README))}
    unlinked = sorted(rel(p) for p in DOCS.glob("*.md") if p.resolve() not in linked)
    assert not unlinked, f"add to README.md's Documentation list: {unlinked}"


@pytest.mark.parametrize("page", PROSE, ids=rel)
def test_benchmark_figures_live_only_in_bench_results(page):
    figures = re.compile(
        r"\d[\d,.]* ?rows/s|peak RSS[^.|]{0,40}\d+ ?MB|\d+(?:\.\d+)?x (?:the )?(?:COPY )?floor"
        r"|\d+ tps|p(?:50|99)[^.|]{0,20}\d+(?:\.\d+)? ?ms"
    )
    found = [m.group(0) for m in figures.finditer(flat(page))]
    assert not found, f"{rel(page)} pastes benchmark figures {found}: link bench/results.md instead"
