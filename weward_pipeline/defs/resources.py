"""Resources: where the pipeline reads and writes, from the environment-variable contract."""

from __future__ import annotations

import os

import dagster as dg

from weward_pipeline.aws import AwsClients
from weward_pipeline.config import DEFAULT_AWS_REGION, DEFAULT_GLUE_DATABASE, Settings
from weward_pipeline.config import aws_endpoint_url as endpoint_from_env
from weward_pipeline.config import aws_region as region_from_env
from weward_pipeline.config import glue_database as glue_database_from_env
from weward_pipeline.extract import ExtractLimits
from weward_pipeline.glue import GlueCatalog


class LakeResource(dg.ConfigurableResource):
    """PostgreSQL source, S3 lake and Glue catalog. Secrets come from env vars (never shown in the UI)."""

    # None: WEWARD_PG_URL, read where the run executes. Never a config value resolved where runs are
    # planned: the Dagster service's webserver and daemon build every run's plan in their own tasks,
    # which have no database secret (least privilege), and an EnvVar here failed every launch there.
    pg_url: str | None = None
    lake_url: str
    glue_database: str = DEFAULT_GLUE_DATABASE
    aws_region: str = DEFAULT_AWS_REGION
    aws_endpoint_url: str | None = None
    statement_timeout_s: int = 1800
    lock_timeout_s: int = 5
    max_rows_per_second: float | None = None

    def settings(self) -> Settings:
        env = {
            "WEWARD_PG_URL": self.pg_url or os.environ.get("WEWARD_PG_URL", ""),
            "WEWARD_LAKE_URL": self.lake_url,
            "WEWARD_GLUE_DATABASE": self.glue_database,
            "AWS_REGION": self.aws_region,
            "AWS_ENDPOINT_URL": self.aws_endpoint_url or "",
            "WEWARD_PG_REDACT_URL": os.environ.get("WEWARD_PG_REDACT_URL", ""),
            "WEWARD_PG_ERASE_URL": os.environ.get("WEWARD_PG_ERASE_URL", ""),
        }
        return Settings.from_env(env)

    def limits(self) -> ExtractLimits:
        return ExtractLimits(
            statement_timeout_s=self.statement_timeout_s,
            lock_timeout_s=self.lock_timeout_s,
            max_rows_per_second=self.max_rows_per_second,
        )

    def clients(self) -> AwsClients:
        return AwsClients.from_settings(self.settings())

    def glue(self, clients: AwsClients | None = None) -> GlueCatalog:
        clients = clients or self.clients()
        return GlueCatalog(clients.glue, self.glue_database)


class PacingConfig(dg.Config):
    """A run's pacing settings (pacing.PacingLimits); unset ones come from the table's `pacing:` in the
    catalog, then the defaults. Set in the Launchpad, e.g. `pacing: {duty_cycle: 0.25}`."""

    duty_cycle: float | None = None
    target_batch_s: float | None = None
    max_canary_ms: float | None = None
    critical_canary_ms: float | None = None
    max_active_backends: int | None = None
    critical_active_backends: int | None = None
    max_replica_lag_s: float | None = None
    critical_replica_lag_s: float | None = None

    def overrides(self) -> dict:
        return {name: value for name, value in self.model_dump().items() if value is not None}


def lake_resource_from_env() -> LakeResource:
    """The lake URL stays an EnvVar; the DSN is read by the run worker (see pg_url); optional ones default."""
    return LakeResource(
        lake_url=dg.EnvVar("WEWARD_LAKE_URL"),
        glue_database=glue_database_from_env(),
        aws_region=region_from_env(),
        aws_endpoint_url=endpoint_from_env(),
    )
