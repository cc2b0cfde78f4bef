"""The catalog and the environment contract: bad input is refused up front, with the fix."""

from __future__ import annotations

import pytest

from weward_pipeline.config import ConfigError, LakeLocation, Settings, load_catalog, mask_url, parse_catalog

GOOD_TABLE = {"name": "step_events", "mode": "append", "partition_column": "created_at", "primary_key": ["id"]}


def catalog_with(*tables, **top):
    return {"start_date": "2024-01-01", "timezone": "Europe/Paris", "tables": list(tables), **top}


def problems(data) -> str:
    with pytest.raises(ConfigError) as error:
        parse_catalog(data, "tables.yaml")
    return str(error.value)


def test_the_shipped_sample_catalog_is_valid():
    catalog = load_catalog()
    assert {t.name for t in catalog.tables} >= {"users", "step_events", "ward_transactions"}
    assert catalog.timezone == "Europe/Paris"


def test_defaults_fill_schema_and_source_table():
    table = parse_catalog(catalog_with(GOOD_TABLE)).tables[0]
    assert (table.schema, table.source, table.primary_key) == ("public", "step_events", ("id",))


def test_unknown_mode_names_the_table_and_the_allowed_modes():
    message = problems(catalog_with({**GOOD_TABLE, "mode": "incremental"}))
    assert "table 'step_events'" in message and "append, snapshot" in message and "'incremental'" in message


def test_append_table_without_partition_column_says_what_to_add():
    table = {k: v for k, v in GOOD_TABLE.items() if k != "partition_column"}
    message = problems(catalog_with(table))
    assert "partition_column" in message and "timestamptz, timestamp or date" in message


def test_snapshot_table_with_partition_column_is_refused():
    message = problems(
        catalog_with({"name": "users", "mode": "snapshot", "primary_key": ["id"], "partition_column": "x"})
    )
    assert "remove `partition_column`" in message


def test_duplicate_names_are_refused():
    message = problems(catalog_with(GOOD_TABLE, GOOD_TABLE))
    assert "'step_events' is declared 2 times" in message


def test_retention_on_a_snapshot_table_is_a_config_error():
    message = problems(catalog_with({"name": "users", "mode": "snapshot", "primary_key": ["id"], "retention_days": 30}))
    assert "retention_days" in message and "only allowed on append tables" in message


@pytest.mark.parametrize("bad", [0, -3, "30", True])
def test_retention_must_be_a_positive_whole_number(bad):
    assert "retention_days" in problems(catalog_with({**GOOD_TABLE, "retention_days": bad}))


def test_all_problems_are_reported_at_once():
    message = problems(
        catalog_with(
            {"name": "a", "mode": "nope", "primary_key": []}, {"name": "b", "mode": "append", "primary_key": ["id"]}
        )
    )
    assert "table 'a'" in message and "`mode`" in message and "primary_key" in message
    assert "table 'b'" in message and "partition_column" in message


def test_typos_in_keys_are_not_silently_ignored():
    message = problems(catalog_with({**GOOD_TABLE, "partiton_column": "x"}))
    assert "unknown key(s) partiton_column" in message


@pytest.mark.parametrize("name", ["Users", "1abc", "steps; DROP TABLE users", "a-b", "", "x" * 64])
def test_lake_names_that_are_not_safe_everywhere_are_refused(name):
    assert "`name`" in problems(catalog_with({**GOOD_TABLE, "name": name}))


def test_a_source_table_name_with_sql_in_it_is_accepted_because_it_is_always_quoted():
    table = parse_catalog(catalog_with({**GOOD_TABLE, "source_table": 'events"; DROP TABLE users; --'})).tables[0]
    assert table.source == 'events"; DROP TABLE users; --'


def test_bad_timezone_and_start_date():
    message = problems(catalog_with(GOOD_TABLE, timezone="Paris", start_date="yesterday"))
    assert "`timezone` 'Paris'" in message and "start_date" in message


def test_missing_catalog_file_says_which_variable_to_set(tmp_path):
    with pytest.raises(ConfigError, match="WEWARD_TABLES_FILE"):
        load_catalog(tmp_path / "missing.yaml")


def test_invalid_yaml_is_reported_with_the_path(tmp_path):
    path = tmp_path / "tables.yaml"
    path.write_text("tables: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_catalog(path)


def test_settings_require_database_and_lake_and_say_how():
    with pytest.raises(ConfigError) as error:
        Settings.from_env({})
    assert "WEWARD_PG_URL" in str(error.value) and "WEWARD_LAKE_URL" in str(error.value)


def test_settings_parse_the_contract():
    settings = Settings.from_env(
        {
            "WEWARD_PG_URL": "postgresql://export:s3cret@db.internal:5432/app",
            "WEWARD_LAKE_URL": "s3://weward-lake-prod/lake/",
            "WEWARD_GLUE_DATABASE": "weward_lake",
            "AWS_REGION": "eu-west-3",
        }
    )
    assert settings.lake == LakeLocation("weward-lake-prod", "lake")
    assert settings.pg_redact_url == settings.pg_url  # defaults to the export URL
    assert settings.aws_endpoint_url is None


def test_a_bad_database_url_error_does_not_print_the_password():
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"WEWARD_PG_URL": "mysql://u:hunter2@h/db", "WEWARD_LAKE_URL": "s3://b/p"})
    assert "hunter2" not in str(error.value)


def test_lake_url_must_be_s3():
    with pytest.raises(ConfigError, match="s3://bucket/prefix"):
        Settings.from_env({"WEWARD_PG_URL": "postgresql://u@h/db", "WEWARD_LAKE_URL": "/tmp/lake"})


def test_mask_url_keeps_user_host_and_database_only():
    assert mask_url("postgresql://export:p%40ss@db:5432/app?sslmode=require") == "postgresql://export@db:5432/app"
