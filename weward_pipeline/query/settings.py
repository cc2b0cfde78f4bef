"""The query side of the environment contract, sizes and what Athena bills."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from weward_pipeline.config import DEFAULT_AWS_REGION, DEFAULT_GLUE_DATABASE, ConfigError
from weward_pipeline.config import aws_endpoint_url as endpoint_from_env
from weward_pipeline.config import aws_region as region_from_env
from weward_pipeline.config import glue_database as glue_database_from_env

# Athena's price in most regions (eu-west-3 included): 5 USD per TB scanned, billed per query
# rounded up to the megabyte with a 10 MB minimum; DDL and failed queries are free.
ATHENA_USD_PER_TB = 5.0
TB = 1024**4
MB = 1024**2
ATHENA_MIN_BILLED_BYTES = 10 * MB
CLIENT_LIMIT_SOURCE = "--max-bytes-scanned / WEWARD_QUERY_MAX_BYTES_SCANNED"

_UNITS = {"": 1, "b": 1, "kb": 1024, "k": 1024, "mb": MB, "m": MB, "gb": 1024**3, "g": 1024**3, "tb": TB, "t": TB}


def parse_size(text: str | int | None) -> int | None:
    """'10GB', '500 MB', '1e9' or an int -> bytes (binary units, as the AWS console)."""
    if text is None or text == "":
        return None
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?(?:e[0-9]+)?)\s*([a-zA-Z]*?)(?:i?b)?\s*", text.strip(), re.I)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise ConfigError(f"cannot read the size {text!r}: use bytes or a unit, e.g. 500MB, 10GB, 1TB")
    return int(float(match.group(1)) * _UNITS[unit])


def format_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("TB", TB), ("GB", 1024**3), ("MB", MB), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def format_usd(amount: float) -> str:
    return f"${amount:.2f}" if amount >= 1 else f"${amount:.6f}"


def athena_cost_usd(bytes_scanned: int, usd_per_tb: float = ATHENA_USD_PER_TB) -> float:
    """What Athena bills for a query that scanned this much (0 scanned: nothing billed)."""
    if bytes_scanned <= 0:
        return 0.0
    billed = max(math.ceil(bytes_scanned / MB) * MB, ATHENA_MIN_BILLED_BYTES)
    return billed / TB * usd_per_tb


@dataclass(frozen=True)
class QuerySettings:
    """The query side of the environment contract (no PostgreSQL needed)."""

    glue_database: str = DEFAULT_GLUE_DATABASE
    aws_region: str = DEFAULT_AWS_REGION
    aws_endpoint_url: str | None = None
    athena_workgroup: str = "primary"
    athena_output: str | None = None
    max_bytes_scanned: int | None = None
    engine: str = "auto"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> QuerySettings:
        env = dict(os.environ if env is None else env)
        database = glue_database_from_env(env)
        output = env.get("WEWARD_ATHENA_OUTPUT") or None
        if output and not output.startswith("s3://"):
            raise ConfigError(f"WEWARD_ATHENA_OUTPUT must be an s3://bucket/prefix/ URL, got {output!r}")
        engine = env.get("WEWARD_QUERY_ENGINE") or "auto"
        if engine not in ENGINES:
            raise ConfigError(f"WEWARD_QUERY_ENGINE must be one of {', '.join(ENGINES)}, got {engine!r}")
        return cls(
            glue_database=database,
            aws_region=region_from_env(env),
            aws_endpoint_url=endpoint_from_env(env),
            athena_workgroup=env.get("WEWARD_ATHENA_WORKGROUP") or "primary",
            athena_output=output,
            max_bytes_scanned=parse_size(env.get("WEWARD_QUERY_MAX_BYTES_SCANNED")),
            engine=engine,
        )

    def resolved_engine(self, engine: str | None = None) -> str:
        """auto: the local stack (an AWS_ENDPOINT_URL, i.e. moto) cannot run SQL, so DuckDB; else Athena."""
        engine = engine or self.engine
        if engine == "auto":
            return "local" if self.aws_endpoint_url else "athena"
        return engine


ENGINES = ("auto", "local", "athena")
