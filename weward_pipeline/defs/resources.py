"""Resources: where the pipeline reads and writes, from the environment-variable contract."""

from __future__ import annotations

import os
from typing import Optional

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

    pg_url: str
    lake_url: str
    glue_database: str = DEFAULT_GLUE_DATABASE
    aws_region: str = DEFAULT_AWS_REGION
    aws_endpoint_url: Optional[str] = None
    statement_timeout_s: int = 1800
    lock_timeout_s: int = 5
    max_rows_per_second: Optional[float] = None

    def settings(self) -> Settings:
        env = {
            "WEWARD_PG_URL": self.pg_url,
            "WEWARD_LAKE_URL": self.lake_url,
            "WEWARD_GLUE_DATABASE": self.glue_database,
            "AWS_REGION": self.aws_region,
            "AWS_ENDPOINT_URL": self.aws_endpoint_url or "",
            "WEWARD_PG_REDACT_URL": os.environ.get("WEWARD_PG_REDACT_URL", ""),
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

    def glue(self, clients: Optional[AwsClients] = None) -> GlueCatalog:
        clients = clients or self.clients()
        return GlueCatalog(clients.glue, self.glue_database)


def lake_resource_from_env() -> LakeResource:
    """Required values stay EnvVars (resolved at run time, masked in the UI); optional ones default."""
    return LakeResource(
        pg_url=dg.EnvVar("WEWARD_PG_URL"),
        lake_url=dg.EnvVar("WEWARD_LAKE_URL"),
        glue_database=glue_database_from_env(),
        aws_region=region_from_env(),
        aws_endpoint_url=endpoint_from_env(),
    )
