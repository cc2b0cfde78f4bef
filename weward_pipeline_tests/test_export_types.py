"""Every mapped PostgreSQL type survives the trip to Parquet exactly, and Glue says what it is."""

from __future__ import annotations

import datetime as dt
import decimal

import psycopg
import pytest

from weward_pipeline.export import export_day
from weward_pipeline.extract import SourceError
from weward_pipeline.glue import GlueCatalog
from weward_pipeline_tests.conftest import make_catalog, make_settings
from weward_pipeline_tests.lake_reader import glue_column_types, read_table

DDL = """
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);
CREATE TABLE all_types (
    id bigint PRIMARY KEY,
    created_at timestamptz NOT NULL,
    i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision,
    money_eur numeric(12, 2), big_num numeric(38, 10), free_num numeric,
    ts timestamp, d date, flag boolean, raw bytea,
    ints integer[], texts text[], nums numeric(5, 2)[],
    u uuid, j json, jb jsonb, m mood, moods mood[], ip inet, iv interval, tm time,
    vc varchar(20), ch char(3), t text, dom positive_int
);
"""

ROW_1 = """
INSERT INTO all_types VALUES (
    1, '2024-03-31 12:00:00.123456+02', -32768, 2147483647, 9223372036854775807, 1.5, 2.25,
    1234567890.12, 1234567890123456789012345678.0123456789, 12345.123456789,
    '2024-03-31 02:30:00.000001', '2024-03-31', true, '\\x00ff10',
    '{1,NULL,3}', '{"a","b,c",NULL}', '{1.50,NULL}',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": 1, "b": [true, null]}', '{"b": [1, 2], "a": "é"}',
    'happy', '{sad,happy}', '192.168.0.1/24', '1 year 2 mons 3 days 04:05:06.789', '23:59:59.999999',
    'varchar', 'ab', 'UTF-8 ✓ Zoë', 7
)
"""
ROW_NULLS = "INSERT INTO all_types (id, created_at) VALUES (2, '2024-03-31 00:00:00+01')"


@pytest.fixture
def typed_db(fresh_database):
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute(DDL)
        conn.execute(ROW_1)
        conn.execute(ROW_NULLS)
    return fresh_database


TABLE = {"name": "all_types", "mode": "append", "partition_column": "created_at", "primary_key": ["id"]}


def test_every_mapped_type_round_trips_exactly_and_glue_names_it(typed_db, lake_env, clients):
    settings = make_settings(lake_env, typed_db)
    catalog = make_catalog(TABLE)
    export_day(settings, catalog, catalog.tables[0], dt.date(2024, 3, 31), clients=clients)

    glue = GlueCatalog(clients.glue, settings.glue_database)
    assert glue_column_types(glue, "all_types") == {
        "id": "bigint",
        "created_at": "timestamp",
        "i2": "smallint",
        "i4": "int",
        "i8": "bigint",
        "f4": "float",
        "f8": "double",
        "money_eur": "decimal(12,2)",
        "big_num": "decimal(38,10)",
        "free_num": "decimal(38,9)",
        "ts": "timestamp",
        "d": "date",
        "flag": "boolean",
        "raw": "binary",
        "ints": "array<int>",
        "texts": "array<string>",
        "nums": "array<decimal(5,2)>",
        "u": "string",
        "j": "string",
        "jb": "string",
        "m": "string",
        "moods": "array<string>",
        "ip": "string",
        "iv": "string",
        "tm": "string",
        "vc": "string",
        "ch": "string",
        "t": "string",
        "dom": "int",
    }
    lake = read_table(glue, clients.filesystem, "all_types").sort_by("id")
    schema = lake.schema
    assert str(schema.field("created_at").type) == "timestamp[us, tz=UTC]"
    assert str(schema.field("ts").type) == "timestamp[us]"
    assert str(schema.field("money_eur").type) == "decimal128(12, 2)"

    full, nulls = lake.to_pylist()
    assert full == {
        "id": 1,
        "created_at": dt.datetime(2024, 3, 31, 10, 0, 0, 123456, tzinfo=dt.UTC),
        "i2": -32768,
        "i4": 2147483647,
        "i8": 9223372036854775807,
        "f4": 1.5,
        "f8": 2.25,
        "money_eur": decimal.Decimal("1234567890.12"),
        "big_num": decimal.Decimal("1234567890123456789012345678.0123456789"),
        "free_num": decimal.Decimal("12345.123456789"),
        "ts": dt.datetime(2024, 3, 31, 2, 30, 0, 1),
        "d": dt.date(2024, 3, 31),
        "flag": True,
        "raw": b"\x00\xff\x10",
        "ints": [1, None, 3],
        "texts": ["a", "b,c", None],
        "nums": [decimal.Decimal("1.50"), None],
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "j": '{"a": 1, "b": [true, null]}',  # json keeps the client's text verbatim
        "jb": '{"a": "é", "b": [1, 2]}',  # jsonb: PostgreSQL's normalized text
        "m": "happy",
        "moods": ["sad", "happy"],
        "ip": "192.168.0.1/24",
        "iv": "1 year 2 mons 3 days 04:05:06.789",
        "tm": "23:59:59.999999",
        "vc": "varchar",
        "ch": "ab ",
        "t": "UTF-8 ✓ Zoë",
        "dom": 7,
        "dt": "2024-03-31",
    }
    assert all(value is None for key, value in nulls.items() if key not in ("id", "created_at", "dt"))


def test_lake_values_equal_postgres_values_row_by_row(typed_db, lake_env, clients):
    """The text forms are PostgreSQL's own: casting the lake value back gives the source value."""
    settings = make_settings(lake_env, typed_db)
    catalog = make_catalog(TABLE)
    export_day(settings, catalog, catalog.tables[0], dt.date(2024, 3, 31), clients=clients)
    lake = read_table(GlueCatalog(clients.glue, settings.glue_database), clients.filesystem, "all_types")
    row = lake.sort_by("id").to_pylist()[0]
    with psycopg.connect(typed_db) as conn:
        same = conn.execute(
            "SELECT u = %s::uuid, jb = %s::jsonb, m = %s::mood, ip = %s::inet, iv = %s::interval, tm = %s::time "
            "FROM all_types WHERE id = 1",
            (row["u"], row["jb"], row["m"], row["ip"], row["iv"], row["tm"]),
        ).fetchone()
    assert same == (True,) * 6


def test_unconstrained_numeric_that_does_not_fit_fails_naming_the_column(typed_db, lake_env, clients):
    with psycopg.connect(typed_db, autocommit=True) as conn:
        conn.execute("UPDATE all_types SET free_num = 1.0000000001 WHERE id = 1")
    settings = make_settings(lake_env, typed_db)
    catalog = make_catalog(TABLE)
    with pytest.raises(SourceError) as error:
        export_day(settings, catalog, catalog.tables[0], dt.date(2024, 3, 31), clients=clients)
    message = str(error.value)
    assert "all_types" in message and "'free_num'" in message and "1.0000000001" in message
    glue = GlueCatalog(clients.glue, settings.glue_database)
    assert glue.get_table("all_types") is None  # nothing published
    bucket = settings.lake.bucket
    assert clients.s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0  # and nothing left behind
