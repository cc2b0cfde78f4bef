"""Session-scoped real servers: one PostgreSQL 15 and one moto S3+Glue endpoint for the whole run.

Tests isolate themselves by database (`fresh_database`), bucket and Glue database (`lake_env`),
never by mocking: boto3, pyarrow and polars all talk HTTP to the moto server.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

import boto3
import psycopg
import pytest
from psycopg import sql

from weward_pipeline.config import Settings, parse_catalog
from weward_pipeline.devstack import sample_data
from weward_pipeline.devstack.aws import LocalAws
from weward_pipeline.devstack.postgres import LocalPostgres
from weward_pipeline.export import AwsClients
from weward_pipeline.glue import GlueCatalog

# The sample data used by most tests spans the 2024 spring DST change (2024-03-31 has 23 hours
# in Europe/Paris).
SAMPLE_END = dt.date(2024, 4, 1)
SAMPLE_DAYS = 5
TIMEZONE = "Europe/Paris"


@pytest.fixture(scope="session")
def stack_dir():
    path = Path(tempfile.mkdtemp(prefix="weward-tests-"))
    os.chmod(path, 0o755)  # the PostgreSQL server user must traverse it
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(stack_dir):
    server = LocalPostgres(stack_dir / "postgres")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_admin_url(pg_server) -> str:
    """Superuser URL of the `postgres` database on the session's server."""
    return pg_server.admin_url("postgres")


@pytest.fixture(scope="session")
def aws_server(stack_dir):
    server = LocalAws(stack_dir / "moto")
    server.start()
    os.environ.update(server.env())  # pyarrow and polars read the endpoint from the environment
    yield server
    server.stop()


@pytest.fixture
def fresh_database(pg_server):
    """A new empty database for one test; returns its superuser URL."""
    name = f"t_{secrets.token_hex(5)}"
    url = pg_server.create_database(name)
    yield url
    with psycopg.connect(pg_server.admin_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def sample_database(pg_server) -> str:
    """The sample app schema, 5 days ending 2024-04-01, shared read-only by many tests."""
    url = pg_server.create_database("sample")
    sample_data.load(
        url, end_date=SAMPLE_END, size=sample_data.SampleSize(users=300, days=SAMPLE_DAYS), timezone=TIMEZONE
    )
    return url


@pytest.fixture
def lake_env(aws_server, monkeypatch):
    """A fresh bucket and Glue database; the WEWARD_* lake variables point at them."""
    suffix = secrets.token_hex(4)
    bucket = f"lake-{suffix}"
    aws_server.create_bucket(bucket)
    env = {
        **aws_server.env(),
        "WEWARD_LAKE_URL": f"s3://{bucket}/exports",
        "WEWARD_GLUE_DATABASE": f"lake_{suffix}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def make_settings(lake_env: dict, pg_url: str) -> Settings:
    return Settings.from_env({**lake_env, "WEWARD_PG_URL": pg_url})


def make_catalog(*tables: dict, start_date: str = "2024-01-01", timezone: str = TIMEZONE):
    return parse_catalog({"start_date": start_date, "timezone": timezone, "tables": list(tables)})


def materialize_command(selection: str, day: str, dagster: str | None = None) -> list[str]:
    """The export task's command (infra: `dagster asset materialize ... --partition <day>`);
    `dagster` defaults to this interpreter's."""
    dagster = dagster or str(Path(sys.executable).parent / "dagster")
    return [
        dagster,
        "asset",
        "materialize",
        "-m",
        "weward_pipeline.definitions",
        "--select",
        selection,
        "--partition",
        day,
    ]


class OneTable:
    """A catalog of one table, against the test PostgreSQL at `pg_url` and the test lake: the base of
    the tests' scenarios."""

    def __init__(self, lake_env, clients: AwsClients, pg_url: str, table: dict) -> None:
        self.settings = make_settings(lake_env, pg_url)
        self.catalog = make_catalog(table)
        self.table = self.catalog.tables[0]
        self.clients = clients
        self.pg_url = pg_url
        self.glue = GlueCatalog(clients.glue, self.settings.glue_database)


@pytest.fixture
def clients(lake_env) -> AwsClients:
    return AwsClients.from_settings(make_settings(lake_env, "postgresql://unused@localhost/unused"))


def s3_client():
    return boto3.client("s3")


@pytest.fixture(scope="session")
def standby_pair(stack_dir):
    """(primary, standby): a PostgreSQL 15 primary and a hot standby streaming from it.

    Their own pair, apart from `pg_server`: tests pause the standby's replay and force recovery
    conflicts, which must not slow down or break the other tests' server. Started only by the
    tests that ask for it.
    """
    from weward_pipeline.devstack.postgres import LocalStandby

    primary = LocalPostgres(stack_dir / "primary")
    primary.start()
    standby = LocalStandby(stack_dir / "standby", primary=primary)
    try:
        standby.start()
        yield primary, standby
    finally:
        standby.stop()
        primary.stop()


@pytest.fixture(scope="session")
def recording_proxy(aws_server):
    """The rehearsal's recording proxy in front of the session's moto server (see rehearsal/proxy.py)."""
    from weward_pipeline_tests.rehearsal.proxy import RecordingProxy

    proxy = RecordingProxy(aws_server.endpoint_url).start()
    yield proxy
    proxy.stop()
