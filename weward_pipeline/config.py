"""Configuration: the table catalog (YAML) and the environment-variable contract.

Everything is validated once, up front, and every problem is reported in one error that names
the table, the key and the fix, before anything is read from PostgreSQL or written to S3.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

SAMPLE_CATALOG = Path(__file__).parent / "sample" / "tables.yaml"

# Lake/Glue names become S3 prefixes, Glue table names and Dagster asset keys: keep them to
# what all three accept unquoted (Glue lower-cases table names).
LAKE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
MODES = ("append", "snapshot")
TABLE_KEYS = {
    "name",
    "schema",
    "source_table",
    "mode",
    "partition_column",
    "primary_key",
    "retention_days",
    "description",
    "owners",
    "pii",
    "user_column",
    "snapshot_grace_hours",
    "pacing",
    "restate_days",
    "updated_column",
}
# Append tables: every day, the days D-1 .. D-restate_days are compared with PostgreSQL and
# re-exported when their rows changed (restate.py, docs/restatement.md). 7: a phone offline over a
# long weekend syncs within it, purchases leave `pending` and weekly contests close within it, and
# the daily check costs 7 index-only counts per table (bench/results.md). Capped below
# retention_days: a day being redacted is no longer compared (its deleted rows would look changed).
DEFAULT_RESTATE_DAYS = 7


# Defaults of the environment contract (deploy/prod.env names the production values).
DEFAULT_GLUE_DATABASE = "weward_lake"
DEFAULT_AWS_REGION = "eu-west-3"  # Paris: the users' data stays in the EU


GLUE_DATABASE_NAME = re.compile(r"^[a-z0-9_]{1,255}$")


def aws_region(env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_AWS_REGION


def aws_endpoint_url(env: dict[str, str] | None = None) -> str | None:
    """AWS_ENDPOINT_URL (the local stack's moto server); unset or empty means AWS itself."""
    env = os.environ if env is None else env
    return env.get("AWS_ENDPOINT_URL") or None


def glue_database(env: dict[str, str] | None = None) -> str:
    """WEWARD_GLUE_DATABASE, validated; unset or empty means the default (as for every optional variable)."""
    env = os.environ if env is None else env
    database = env.get("WEWARD_GLUE_DATABASE") or DEFAULT_GLUE_DATABASE
    if not GLUE_DATABASE_NAME.match(database):
        raise ConfigError(f"WEWARD_GLUE_DATABASE must be lower-case letters, digits and _, got {database!r}")
    return database


class ConfigError(ValueError):
    """The catalog or the environment is wrong. The message says where and how to fix it."""


@dataclass(frozen=True)
class TableConfig:
    name: str
    mode: str
    primary_key: tuple[str, ...]
    schema: str = "public"
    source_table: str = ""
    partition_column: str | None = None
    retention_days: int | None = None
    description: str = ""
    owners: tuple[str, ...] = ()
    pii: dict[str, str] = field(default_factory=dict)
    user_column: str | None = None
    # How long after the end of day D a snapshot table may still be exported as "day D".
    snapshot_grace_hours: int = 30
    # This table's budget on the database (pacing.PacingLimits fields); a run's own settings win.
    pacing: dict[str, Any] = field(default_factory=dict)
    # Days before the exported day that are re-checked against the source every day (0: never).
    restate_days: int = 0
    # A timestamp the app bumps on every update: lets the check see updates, not only inserts/deletes.
    updated_column: str | None = None

    @property
    def source(self) -> str:
        return self.source_table or self.name

    @property
    def qualified_source(self) -> str:
        """For messages only; SQL always goes through sql.Identifier."""
        return f"{self.schema}.{self.source}"


@dataclass(frozen=True)
class Catalog:
    start_date: dt.date
    timezone: str
    tables: tuple[TableConfig, ...]
    path: str = ""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def table(self, name: str) -> TableConfig:
        for table in self.tables:
            if table.name == name:
                return table
        names = [t.name for t in self.tables]
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(f"unknown table {name!r}; {hint}the catalog {self.path} has: {', '.join(names)}")


def _pg_identifier(value: Any, where: str, key: str, problems: list[str]) -> str | None:
    """PostgreSQL names are quoted with sql.Identifier, so any text is safe; reject only the impossible."""
    if not isinstance(value, str) or not value:
        problems.append(f"{where}: `{key}` must be a non-empty string, got {value!r}")
        return None
    if "\x00" in value or len(value.encode()) > 63:
        problems.append(f"{where}: `{key}` {value!r} is not a valid PostgreSQL identifier (max 63 bytes, no NUL)")
        return None
    return value


def _parse_pii(raw: Any, user_column: Any, primary_key: list, where: str, problems: list[str]) -> dict[str, str]:
    """`pii: {column: policy}`. Every column listed is personal and needs an explicit policy
    (`keep` included: exporting personal data in clear is a decision, never a default).
    The policies and their rules are pii.POLICIES."""
    from weward_pipeline.pii import POLICIES  # pii builds on this module: imported when a catalog is read

    pii = raw if raw is not None else {}
    if not isinstance(pii, dict):
        problems.append(
            f"{where}: `pii` must map column names to a policy ({', '.join(POLICIES)}), "
            "e.g. pii: {email: hash, phone: drop}"
        )
        return {}
    choices = ", ".join(POLICIES)
    for column, policy in pii.items():
        if _pg_identifier(column, where, "pii", problems) is None:
            continue
        if policy is None:
            problems.append(
                f"{where}: personal column {column!r} has no policy; write one of {choices} "
                "(`keep` exports it in clear, deliberately)"
            )
        elif policy not in POLICIES:
            problems.append(f"{where}: `pii` policy for {column!r} must be one of {choices}, got {policy!r}")
        elif not POLICIES[policy].allowed_on_primary_key and column in primary_key:
            problems.append(
                f"{where}: primary key column {column!r} cannot be `{policy}`: redaction and erasure "
                "match lake rows to PostgreSQL rows by it. Keep it (use a surrogate id as the key) "
                "or export the table without this key"
            )
    if user_column is not None:
        for_users = " or ".join(f"`{name}`" for name, policy in POLICIES.items() if policy.allowed_on_user_column)
        policy = pii.get(user_column) if isinstance(user_column, str) else None
        if _pg_identifier(user_column, where, "user_column", problems) is None:
            pass
        elif user_column not in pii:
            problems.append(
                f"{where}: user_column {user_column!r} identifies a person, so it is personal data: "
                f"list it under `pii` as `keep` (internal id, joinable) or `hash`"
            )
        elif policy is not None and not (policy in POLICIES and POLICIES[policy].allowed_on_user_column):
            problems.append(
                f"{where}: user_column {user_column!r} cannot be `{policy}`: erasure finds a "
                f"user's rows by it. Use {for_users}"
            )
    return {str(k): v for k, v in pii.items() if isinstance(k, str)}


def _parse_table(raw: Any, index: int, problems: list[str]) -> TableConfig | None:
    where = f"tables[{index}]"
    if not isinstance(raw, dict):
        problems.append(f"{where}: each table must be a mapping with at least `name`, `mode` and `primary_key`")
        return None
    name = raw.get("name")
    if isinstance(name, str):
        where = f"table {name!r}"
    if not isinstance(name, str) or not LAKE_NAME.match(name):
        problems.append(
            f"{where}: `name` {name!r} must match {LAKE_NAME.pattern} (it becomes the S3 prefix, "
            "the Glue table and the asset key); use `source_table` for the PostgreSQL name"
        )
        return None
    unknown = sorted(set(raw) - TABLE_KEYS)
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(TABLE_KEYS))}")
    before = len(problems)
    mode = raw.get("mode")
    if mode not in MODES:
        problems.append(f"{where}: `mode` must be one of {', '.join(MODES)}, got {mode!r}")
    schema = _pg_identifier(raw.get("schema", "public"), where, "schema", problems)
    source_table = _pg_identifier(raw.get("source_table", name), where, "source_table", problems)
    partition_column = raw.get("partition_column")
    if mode == "append":
        if partition_column is None:
            problems.append(
                f"{where}: append tables need `partition_column` (a timestamptz, timestamp or date column "
                "that says which day a row belongs to)"
            )
        else:
            _pg_identifier(partition_column, where, "partition_column", problems)
    elif mode == "snapshot" and partition_column is not None:
        problems.append(f"{where}: snapshot tables export the whole table each day; remove `partition_column`")
    primary_key = raw.get("primary_key")
    if isinstance(primary_key, str):
        primary_key = [primary_key]
    if not isinstance(primary_key, list) or not primary_key:
        problems.append(f"{where}: `primary_key` must list the key column(s), e.g. primary_key: [id]")
        primary_key = []
    for column in primary_key:
        _pg_identifier(column, where, "primary_key", problems)
    retention_days = raw.get("retention_days")
    if retention_days is not None:
        if isinstance(retention_days, bool) or not isinstance(retention_days, int) or retention_days < 1:
            problems.append(f"{where}: `retention_days` must be a whole number of days >= 1, got {retention_days!r}")
        elif mode == "snapshot":
            problems.append(
                f"{where}: `retention_days` deletes exported rows from PostgreSQL and is only allowed on "
                "append tables; a snapshot table's rows are still in use. Remove it."
            )
    owners = raw.get("owners", [])
    if not isinstance(owners, list) or not all(isinstance(o, str) for o in owners):
        problems.append(f"{where}: `owners` must be a list of emails or team:names")
        owners = []
    pii = _parse_pii(raw.get("pii"), raw.get("user_column"), primary_key, where, problems)
    user_column = raw.get("user_column")
    grace = raw.get("snapshot_grace_hours", 30)
    if isinstance(grace, bool) or not isinstance(grace, int) or grace < 1:
        problems.append(f"{where}: `snapshot_grace_hours` must be a whole number of hours >= 1")
    pacing = raw.get("pacing") or {}
    if not isinstance(pacing, dict):
        problems.append(f"{where}: `pacing` must be a mapping of pacing settings (docs/pacing.md)")
        pacing = {}
    else:
        from weward_pipeline.pacing import PacingLimits

        try:
            PacingLimits().merged(pacing)
        except (ConfigError, TypeError) as exc:
            problems.append(f"{where}: `pacing`: {exc}")
    restate_days, updated_column = _parse_restatement(raw, mode, partition_column, retention_days, where, problems)
    if len(problems) > before:
        return None
    return TableConfig(
        name=name,
        mode=mode,
        primary_key=tuple(primary_key),
        schema=schema,
        source_table=source_table,
        partition_column=partition_column,
        retention_days=retention_days,
        description=str(raw.get("description", "")),
        owners=tuple(owners),
        pii=dict(pii),
        user_column=user_column,
        snapshot_grace_hours=grace,
        pacing=dict(pacing),
        restate_days=restate_days,
        updated_column=updated_column,
    )


def _parse_restatement(
    raw: dict, mode: Any, partition_column: Any, retention_days: Any, where: str, problems: list[str]
) -> tuple[int, str | None]:
    """`restate_days` (default DEFAULT_RESTATE_DAYS, below retention_days) and `updated_column`."""
    updated_column = raw.get("updated_column")
    if updated_column is not None:
        if mode != "append":
            problems.append(
                f"{where}: `updated_column` is for append tables (a snapshot table is exported whole "
                "every day); remove it"
            )
        elif (
            _pg_identifier(updated_column, where, "updated_column", problems) is not None
            and updated_column == partition_column
        ):
            problems.append(
                f"{where}: `updated_column` {updated_column!r} is the partition column; name the "
                "timestamp the app bumps on every update (e.g. updated_at), or remove it"
            )
    has_retention = isinstance(retention_days, int) and not isinstance(retention_days, bool) and retention_days >= 1
    if "restate_days" not in raw:
        if mode != "append":
            return 0, None
        default = min(DEFAULT_RESTATE_DAYS, retention_days - 1) if has_retention else DEFAULT_RESTATE_DAYS
        return default, updated_column
    restate_days = raw["restate_days"]
    if isinstance(restate_days, bool) or not isinstance(restate_days, int) or restate_days < 0:
        problems.append(
            f"{where}: `restate_days` must be a whole number of days >= 0 (0: never re-check exported "
            f"days), got {restate_days!r}"
        )
        return 0, None
    if restate_days and mode != "append":
        problems.append(
            f"{where}: `restate_days` is for append tables; a snapshot table is exported whole every day. Remove it."
        )
    elif restate_days and has_retention and restate_days >= retention_days:
        problems.append(
            f"{where}: `restate_days` ({restate_days}) must be smaller than `retention_days` ({retention_days}): a "
            "day is compared with PostgreSQL until it may be redacted, not after (its redacted rows would look "
            f"deleted). Use restate_days: {retention_days - 1} or less."
        )
    return restate_days, updated_column


def parse_catalog(data: Any, path: str = "<catalog>") -> Catalog:
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the catalog must be a mapping with start_date, timezone and tables")
    unknown = sorted(set(data) - {"start_date", "timezone", "tables"})
    if unknown:
        problems.append(f"unknown top-level key(s) {', '.join(unknown)}; allowed: start_date, timezone, tables")
    start_date = data.get("start_date")
    if isinstance(start_date, str):
        try:
            start_date = dt.date.fromisoformat(start_date)
        except ValueError:
            pass
    if not isinstance(start_date, dt.date) or isinstance(start_date, dt.datetime):
        problems.append(f'`start_date` must be a date like "2024-01-01", got {data.get("start_date")!r}')
    timezone = data.get("timezone", "UTC")
    try:
        ZoneInfo(str(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f'`timezone` {timezone!r} is not an IANA time zone such as "Europe/Paris"')
    raw_tables = data.get("tables")
    tables: list[TableConfig] = []
    if not isinstance(raw_tables, list) or not raw_tables:
        problems.append("`tables` must be a non-empty list of table entries")
        raw_tables = []
    for index, raw in enumerate(raw_tables):
        table = _parse_table(raw, index, problems)
        if table is not None:
            tables.append(table)
    seen: dict[str, int] = {}
    for table in tables:
        seen[table.name] = seen.get(table.name, 0) + 1
    for name, count in seen.items():
        if count > 1:
            problems.append(f"table {name!r} is declared {count} times; names must be unique (they are asset keys)")
    if problems:
        raise ConfigError(f"invalid table catalog {path}:\n  - " + "\n  - ".join(problems))
    return Catalog(start_date=start_date, timezone=str(timezone), tables=tuple(tables), path=path)


def load_catalog(path: str | os.PathLike | None = None) -> Catalog:
    path = Path(path or os.environ.get("WEWARD_TABLES_FILE") or SAMPLE_CATALOG)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the table catalog {path}: {exc.strerror}; set WEWARD_TABLES_FILE") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"the table catalog {path} is not valid YAML: {exc}") from exc
    return parse_catalog(data, str(path))


@dataclass(frozen=True)
class LakeLocation:
    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    @classmethod
    def parse(cls, url: str) -> LakeLocation:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ConfigError(f"WEWARD_LAKE_URL must look like s3://bucket/prefix, got {url!r}")
        return cls(bucket=parts.netloc, prefix=parts.path.strip("/"))

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p)

    def url(self, *parts: str) -> str:
        return f"s3://{self.bucket}/{self.key(*parts)}"


def mask_url(url: str) -> str:
    """user@host:port/db, never the password: safe for logs, metadata and errors."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}@" if parts.username else ""
        return f"{parts.scheme}://{user}{host}{port}{parts.path}"
    except ValueError:
        return "<unparseable database url>"


@dataclass(frozen=True)
class Settings:
    """The environment-variable contract. Production swaps endpoints through these only."""

    pg_url: str
    lake: LakeLocation
    glue_database: str
    aws_region: str
    aws_endpoint_url: str | None
    tables_file: str | None
    pg_redact_url: str
    # Erasure's PostgreSQL deletes: WEWARD_PG_ERASE_URL, else WEWARD_PG_REDACT_URL; never the export
    # DSN (SELECT only), so None when neither is set.
    pg_erase_url: str | None = None

    def __repr__(self) -> str:
        """Masked: a Settings printed in a log or a traceback must not carry the DSN passwords."""
        erase = mask_url(self.pg_erase_url) if self.pg_erase_url else None
        return (
            f"Settings(pg_url={mask_url(self.pg_url)!r}, pg_redact_url={mask_url(self.pg_redact_url)!r}, "
            f"pg_erase_url={erase!r}, "
            f"lake={self.lake!r}, glue_database={self.glue_database!r}, aws_region={self.aws_region!r}, "
            f"aws_endpoint_url={self.aws_endpoint_url!r}, tables_file={self.tables_file!r})"
        )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        missing = [k for k in ("WEWARD_PG_URL", "WEWARD_LAKE_URL") if not env.get(k)]
        if missing:
            raise ConfigError(
                f"missing environment variable(s) {', '.join(missing)}: set WEWARD_PG_URL "
                "(postgresql://user:password@host:port/db) and WEWARD_LAKE_URL (s3://bucket/prefix), "
                'or, for the local stack: weward-pipeline demo --keep, then eval "$(weward-pipeline stack env)"'
            )
        pg_url = env["WEWARD_PG_URL"]
        if urlsplit(pg_url).scheme not in ("postgresql", "postgres"):
            raise ConfigError(f"WEWARD_PG_URL must be a postgresql:// URL, got {mask_url(pg_url)!r}")
        database = glue_database(env)
        return cls(
            pg_url=pg_url,
            lake=LakeLocation.parse(env["WEWARD_LAKE_URL"]),
            glue_database=database,
            aws_region=aws_region(env),
            aws_endpoint_url=aws_endpoint_url(env),
            tables_file=env.get("WEWARD_TABLES_FILE") or None,
            pg_redact_url=env.get("WEWARD_PG_REDACT_URL") or pg_url,
            pg_erase_url=env.get("WEWARD_PG_ERASE_URL") or env.get("WEWARD_PG_REDACT_URL") or None,
        )
