"""The one AWS client factory: boto3 clients and pyarrow's S3 filesystem, from the environment contract.

Every AWS call the product makes goes through a client built here, so all of them share:
  - the region and (locally, the moto server) the endpoint of `Settings` / `QuerySettings`
    (AWS_REGION, AWS_ENDPOINT_URL; weward_pipeline/config.py owns that contract);
  - bounded waits: 5 s to connect, 60 s for a response, so a black-holed endpoint fails a run
    instead of hanging it;
  - retries: botocore's "standard" mode, up to 5 retries with backoff (throttling, 5xx, resets);
    pyarrow's filesystem retries as often.
Nothing here imports boto3 or pyarrow at module level: CLIs that need no AWS start fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

MAX_RETRIES = 5  # after the first attempt: botocore counts 6 attempts in all
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60


class AwsTarget(Protocol):
    """Where AWS is: `config.Settings`, `query.QuerySettings` and `AwsClients` all qualify."""

    aws_region: str
    aws_endpoint_url: str | None


def boto_config(region: str):
    """botocore's Config with this module's retries and timeouts."""
    from botocore.config import Config

    return Config(
        region_name=region,
        retries={"max_attempts": MAX_RETRIES, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
    )


def clients(target: AwsTarget, *services: str) -> list[Any]:
    """boto3 clients for `services` ("s3", "glue", "athena", ...), from one fresh session.

    A fresh session per call: boto3's default session is not thread-safe to create clients from.
    """
    import boto3

    session = boto3.session.Session()
    config = boto_config(target.aws_region)
    return [session.client(s, config=config, endpoint_url=target.aws_endpoint_url) for s in services]


def client(target: AwsTarget, service: str) -> Any:
    (built,) = clients(target, service)
    return built


def s3_filesystem(region: str, endpoint_url: str | None = None):
    """pyarrow's S3 client, pointed at AWS or (locally) at the moto endpoint."""
    import pyarrow.fs as pafs

    kwargs: dict = {"region": region, "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=MAX_RETRIES)}
    if endpoint_url:
        scheme, _, host = endpoint_url.partition("://")
        kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme)
    return pafs.S3FileSystem(**kwargs)


@dataclass(frozen=True)
class Endpoint:
    """An `AwsTarget` from plain values (an environment mapping, a resource's fields)."""

    aws_region: str
    aws_endpoint_url: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Endpoint:
        from weward_pipeline.config import aws_endpoint_url, aws_region

        return cls(aws_region(env), aws_endpoint_url(env))


@dataclass
class AwsClients:
    """What the export, redaction and erasure use: S3 and Glue clients and pyarrow's S3 filesystem."""

    s3: Any
    glue: Any
    filesystem: Any
    region: str
    endpoint_url: str | None = None

    @property
    def aws_region(self) -> str:
        return self.region

    @property
    def aws_endpoint_url(self) -> str | None:
        return self.endpoint_url

    @classmethod
    def from_settings(cls, settings: AwsTarget) -> AwsClients:
        s3, glue = clients(settings, "s3", "glue")
        return cls(
            s3=s3,
            glue=glue,
            filesystem=s3_filesystem(settings.aws_region, settings.aws_endpoint_url),
            region=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
        )
