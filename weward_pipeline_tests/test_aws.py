"""aws.py is the one place AWS clients are built; config.py owns the variables they are built from."""

from __future__ import annotations

import pytest

from weward_pipeline import aws
from weward_pipeline.config import DEFAULT_GLUE_DATABASE, ConfigError, Settings, glue_database
from weward_pipeline.query import QuerySettings


def test_every_client_waits_a_bounded_time_and_retries_the_same_way(lake_env):
    settings = QuerySettings.from_env(lake_env)
    s3, glue, athena = aws.clients(settings, "s3", "glue", "athena")
    for client in (s3, glue, athena):
        config = client.meta.config
        assert (config.connect_timeout, config.read_timeout) == (aws.CONNECT_TIMEOUT_S, aws.READ_TIMEOUT_S)
        assert config.retries == {"total_max_attempts": aws.MAX_RETRIES + 1, "mode": "standard"}
        assert client.meta.region_name == lake_env["AWS_REGION"]
        assert client.meta.endpoint_url == lake_env["AWS_ENDPOINT_URL"]


def test_clients_from_the_settings_reach_the_lake_through_boto3_and_pyarrow(lake_env):
    settings = Settings.from_env({**lake_env, "WEWARD_PG_URL": "postgresql://unused@localhost/unused"})
    clients = aws.AwsClients.from_settings(settings)
    bucket = settings.lake.bucket
    clients.s3.put_object(Bucket=bucket, Key="probe/hello.txt", Body=b"hello")
    with clients.filesystem.open_input_stream(f"{bucket}/probe/hello.txt") as stream:
        assert stream.read() == b"hello"
    clients.glue.create_database(DatabaseInput={"Name": settings.glue_database})
    assert clients.glue.get_database(Name=settings.glue_database)["Database"]["Name"] == settings.glue_database
    # An AwsClients is itself a target: a second set of clients points at the same place.
    assert aws.client(clients, "s3").meta.endpoint_url == settings.aws_endpoint_url


def test_an_endpoint_from_the_environment_treats_empty_as_aws_itself():
    assert aws.Endpoint.from_env({"AWS_ENDPOINT_URL": "", "AWS_DEFAULT_REGION": "eu-west-1"}) == aws.Endpoint(
        "eu-west-1"
    )


@pytest.mark.parametrize("value", [None, ""])
def test_an_unset_or_empty_glue_database_is_the_default_for_the_pipeline_and_the_query_side(value):
    env = {"WEWARD_PG_URL": "postgresql://u@h/db", "WEWARD_LAKE_URL": "s3://b/p"}
    if value is not None:
        env["WEWARD_GLUE_DATABASE"] = value
    assert glue_database(env) == DEFAULT_GLUE_DATABASE
    assert Settings.from_env(env).glue_database == DEFAULT_GLUE_DATABASE
    assert QuerySettings.from_env(env).glue_database == DEFAULT_GLUE_DATABASE


def test_a_glue_database_name_athena_cannot_use_is_refused_with_the_variable_named():
    env = {"WEWARD_PG_URL": "postgresql://u@h/db", "WEWARD_LAKE_URL": "s3://b/p", "WEWARD_GLUE_DATABASE": "Lake-Prod"}
    for parse in (glue_database, Settings.from_env, QuerySettings.from_env):
        with pytest.raises(
            ConfigError, match="WEWARD_GLUE_DATABASE must be lower-case letters, digits and _, got 'Lake-Prod'"
        ):
            parse(env)
