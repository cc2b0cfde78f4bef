"""Wiring from the environment: the engine QuerySettings asks for, with its AWS clients (aws.py)."""

from __future__ import annotations

from collections.abc import Callable

from weward_pipeline import aws
from weward_pipeline.config import ConfigError
from weward_pipeline.query.athena import AthenaEngine
from weward_pipeline.query.local import LocalEngine
from weward_pipeline.query.output import QueryProgress
from weward_pipeline.query.settings import ENGINES, QuerySettings


def build_engine(
    settings: QuerySettings,
    engine: str | None = None,
    *,
    max_bytes_scanned: int | None = None,
    timeout_s: float | None = None,
    progress: Callable[[QueryProgress], None] | None = None,
) -> LocalEngine | AthenaEngine:
    kind = settings.resolved_engine(engine)
    limit = max_bytes_scanned if max_bytes_scanned is not None else settings.max_bytes_scanned
    if kind == "local":
        glue = aws.client(settings, "glue")
        return LocalEngine(
            glue,
            aws.s3_filesystem(settings.aws_region, settings.aws_endpoint_url),
            settings.glue_database,
            max_bytes_scanned=limit,
            timeout_s=timeout_s,
            progress=progress,
        )
    if kind == "athena":
        athena, glue = aws.clients(settings, "athena", "glue")
        return AthenaEngine(
            athena,
            glue,
            settings.glue_database,
            workgroup=settings.athena_workgroup,
            output_location=settings.athena_output,
            max_bytes_scanned=limit,
            timeout_s=timeout_s,
            progress=progress,
        )
    raise ConfigError(f"unknown query engine {kind!r}; use one of {', '.join(ENGINES)}")
