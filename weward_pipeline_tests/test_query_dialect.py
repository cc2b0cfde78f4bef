"""Athena SQL -> DuckDB: every rewrite answers as Athena does, and what Athena refuses is refused.

No servers: each translation runs on an in-memory DuckDB holding a small table `t` in the same
catalog and schema the local engine uses, with the session settings the local engine sets. The
expected values are Athena's (Trino's documented semantics); the comment on each says what
sqlglot's plain translation would have answered instead.
"""

from __future__ import annotations

import datetime as dt
import decimal

import duckdb
import pyarrow as pa
import pytest

from weward_pipeline.query import dialect
from weward_pipeline.query.errors import QueryError, QueryFailedError, QuerySyntaxError

CATALOG, DATABASE = "awsdatacatalog", "lake"
COLUMNS = [
    ("id", "bigint"),
    ("steps", "int"),
    ("amount", "decimal(12,2)"),
    ("created_at", "timestamp"),
    ("ids", "array<bigint>"),
    ("payload", "string"),
    ("email", "string"),
    ("ratio", "double"),
    ("dt", "string"),
]
ROWS = """
    (1, 7, 10.00, TIMESTAMP '2024-03-30 23:00:00', [10, 20, 30], '{"device": "ios", "n": 3.0, "on": true, "o": {"a": 1}, "z": null}',
     'user1@example.fr', 0.5, '2024-03-31'),
    (2, -7, 1.00, TIMESTAMP '2024-03-31 01:30:00', [], 'not json', 'nobody', NULL, '2024-03-31'),
    (3, 8, 2.01, TIMESTAMP '2024-03-31 21:59:59', NULL, NULL, 'user3@example.de', 2.0, '2024-04-01')
"""


@pytest.fixture(scope="module")
def con():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET error_on_division_by_zero = true")
    con.execute(f"ATTACH ':memory:' AS {CATALOG}")
    con.execute(f"CREATE SCHEMA {CATALOG}.{DATABASE}")
    con.execute(
        f"CREATE TABLE {CATALOG}.{DATABASE}.t (id BIGINT, steps INTEGER, amount DECIMAL(12,2), created_at TIMESTAMP, "
        "ids BIGINT[], payload VARCHAR, email VARCHAR, ratio DOUBLE, dt VARCHAR)"
    )
    con.execute(f"INSERT INTO {CATALOG}.{DATABASE}.t VALUES {ROWS}")
    con.execute(f"USE {CATALOG}.{DATABASE}")
    yield con
    con.close()


def translate(sql: str) -> dialect.Translation:
    return dialect.to_duckdb(dialect.parse(sql), sql, {"t": COLUMNS}, catalog=CATALOG, database=DATABASE)


def answer(con, sql: str) -> pa.Table:
    return con.sql(translate(sql).duckdb_sql).to_arrow_table()


def rows(con, sql: str) -> list[tuple]:
    table = answer(con, sql)
    return [tuple(row.values()) for row in table.to_pylist()]


# -- Arithmetic ---------------------------------------------------------------------------------


def test_integer_division_truncates_toward_zero(con):
    # sqlglot alone: CAST(TRUNC(a / b) AS BIGINT), through a double (wrong past 2**53); DuckDB's / is 3.5.
    assert rows(con, "SELECT 7 / 2, -7 / 2, steps / 2 FROM t WHERE id <= 2 ORDER BY id") == [(3, -3, 3), (3, -3, -3)]
    assert "//" in translate("SELECT steps / 2 FROM t").duckdb_sql
    assert rows(con, "SELECT 9007199254740993 / 1") == [(9007199254740993,)]


def test_integer_division_by_zero_fails(con):
    with pytest.raises(duckdb.Error, match="Division by zero"):
        rows(con, "SELECT steps / 0 FROM t")


def test_decimal_division_keeps_the_larger_scale_rounded_half_up(con):
    # DuckDB: decimal / integer is a double (3.3333333333333335).
    table = answer(con, "SELECT amount / 3 AS third, amount / 8 AS eighth, amount / 2.5 AS per_half FROM t ORDER BY id")
    assert table.column("third").to_pylist() == [
        decimal.Decimal("3.33"),
        decimal.Decimal("0.33"),
        decimal.Decimal("0.67"),
    ]
    assert table.column("eighth").to_pylist() == [
        decimal.Decimal("1.25"),
        decimal.Decimal("0.13"),
        decimal.Decimal("0.25"),
    ]
    assert table.column("per_half").to_pylist() == [
        decimal.Decimal("4.00"),
        decimal.Decimal("0.40"),
        decimal.Decimal("0.80"),
    ]
    assert str(table.schema.field("third").type) == "decimal128(12, 2)"


def test_avg_of_a_decimal_is_a_decimal_of_its_scale(con):
    # DuckDB: avg(decimal) is a double (4.336666...).
    table = answer(con, "SELECT avg(amount) AS mean FROM t")
    assert table.column("mean").to_pylist() == [decimal.Decimal("4.34")]
    assert str(table.schema.field("mean").type) == "decimal128(12, 2)"


def test_sum_of_integers_is_a_bigint(con):
    # DuckDB: HUGEINT, which reaches Arrow as decimal128(38, 0).
    table = answer(con, "SELECT sum(steps) AS steps, sum(id) AS ids FROM t")
    assert table.schema.field("steps").type == pa.int64() and table.schema.field("ids").type == pa.int64()
    assert table.to_pylist() == [{"steps": 8, "ids": 6}]


def test_a_division_inside_an_aggregate_is_translated_too(con):
    assert rows(con, "SELECT sum(steps / 2) FROM t") == [(3 + -3 + 4,)]


# -- Dates and time zones -------------------------------------------------------------------------


def test_date_diff_counts_whole_units_not_boundaries(con):
    # DuckDB's date_diff counts midnights crossed: 23:00 -> 01:30 the next day would be 1 day.
    assert rows(
        con,
        """
        SELECT date_diff('day', TIMESTAMP '2024-03-30 23:00:00', TIMESTAMP '2024-03-31 01:30:00'),
               date_diff('day', TIMESTAMP '2024-03-31 12:00:00', TIMESTAMP '2024-03-29 23:00:00'),
               date_diff('hour', TIMESTAMP '2024-03-31 00:30:00', TIMESTAMP '2024-03-31 03:29:00')""",
    ) == [(0, -1, 2)]


def test_at_time_zone_gives_the_zone_wall_clock_across_the_dst_change(con):
    # DuckDB and PostgreSQL read `ts AT TIME ZONE z` as "ts is z's local time" (the other way round).
    got = rows(
        con,
        """
        SELECT id, hour(created_at AT TIME ZONE 'Europe/Paris'), date(at_timezone(created_at, 'Europe/Paris'))
        FROM t ORDER BY id""",
    )
    assert got == [(1, 0, dt.date(2024, 3, 31)), (2, 3, dt.date(2024, 3, 31)), (3, 23, dt.date(2024, 3, 31))]


def test_from_iso8601_timestamp_is_an_instant(con):
    # 01:00+02:00 is 2024-03-30 23:00 UTC: the row at 23:00 UTC is inside, and not with Z.
    assert rows(
        con,
        """
        SELECT count_if(created_at >= from_iso8601_timestamp('2024-03-31T01:00:00+02:00')
                        AND created_at < from_iso8601_timestamp('2024-03-31T02:00:00Z')),
               count_if(created_at >= from_iso8601_timestamp('2024-03-31T01:00:00Z')
                        AND created_at < from_iso8601_timestamp('2024-03-31T02:00:00Z'))
        FROM t""",
    ) == [(2, 1)]


def test_date_format_uses_athena_specifiers(con):
    # %i is minutes and %W the weekday name in Athena (MySQL style); strftime spells them %M and %A.
    assert rows(con, "SELECT date_format(created_at, '%Y-%m-%d %H:%i %W') FROM t WHERE id = 2") == [
        ("2024-03-31 01:30 Sunday",)
    ]


def test_comparing_dt_with_a_date_is_refused_as_athena_refuses_it():
    with pytest.raises(QueryFailedError) as error:
        translate("SELECT count(*) FROM t WHERE dt >= DATE '2024-03-01'")
    assert "cannot compare varchar with date" in str(error.value) and "dt >= '2024-03-01'" in str(error.value)
    translate("SELECT count(*) FROM t WHERE date(dt) >= DATE '2024-03-01'")  # the explicit cast is fine


# -- Arrays, JSON, strings, aggregates ----------------------------------------------------------------


def test_arrays_are_one_based_and_element_at_is_null_past_the_end(con):
    assert rows(
        con,
        "SELECT element_at(ids, 1), element_at(ids, -1), element_at(ids, 4), ids[2], cardinality(ids) FROM t WHERE id = 1",
    ) == [(10, 30, None, 20, 3)]


def test_json_extract_scalar_is_null_for_objects_nulls_and_text_that_is_not_json(con):
    # DuckDB's ->> returns an object's text, and fails the whole query on text that is not JSON.
    assert rows(
        con,
        """
        SELECT id, json_extract_scalar(payload, '$.device'), json_extract_scalar(payload, '$.n'),
               json_extract_scalar(payload, '$.on'), json_extract_scalar(payload, '$.o'), json_extract_scalar(payload, '$.z')
        FROM t ORDER BY id""",
    ) == [(1, "ios", "3.0", "true", None, None), (2, None, None, None, None, None), (3, None, None, None, None, None)]


def test_regexp_extract_is_null_without_a_match_and_replace_reads_dollar_groups(con):
    # DuckDB: '' without a match; \\1 (not $1) for a group in the replacement.
    assert rows(
        con,
        """
        SELECT id, regexp_extract(email, '@example\\.([a-z]+)$', 1), regexp_replace(email, '^user([0-9]+)@.*$', 'u$1')
        FROM t ORDER BY id""",
    ) == [(1, "fr", "u1"), (2, None, "nobody"), (3, "de", "u3")]


def test_count_if_of_no_rows_is_zero(con):
    # DuckDB: NULL.
    assert rows(con, "SELECT count_if(steps > 0), count(*) FROM t WHERE id > 99") == [(0, 0)]


def test_approx_percentile_keeps_its_argument_type(con):
    # sqlglot alone casts approx_quantile to DOUBLE; Athena's approx_percentile(bigint) is a bigint.
    assert answer(con, "SELECT approx_percentile(id, 0.5) AS p FROM t").schema.field("p").type == pa.int64()


def test_approx_distinct_is_counted_exactly_locally(con):
    # DuckDB's approx_count_distinct (HyperLogLog) was 5% off at 150 distinct values; locally, count exactly.
    assert rows(con, "SELECT approx_distinct(steps), count(DISTINCT steps) FROM t") == [
        rows(con, "SELECT count(DISTINCT steps), count(DISTINCT steps) FROM t")[0]
    ]
    translation = translate("SELECT approx_distinct(steps) FROM t")
    assert (
        "COUNT(DISTINCT" in translation.duckdb_sql.upper() and "approx_distinct counted exactly" in translation.rewrites
    )


def test_unnamed_columns_are_named_as_athena_names_them(con):
    assert answer(con, "SELECT count(*), id, max(steps) AS most, id + 1 FROM t GROUP BY id").column_names == [
        "_col0",
        "id",
        "most",
        "_col3",
    ]


def test_every_applied_rewrite_is_listed():
    assert translate("SELECT steps / 2, date_diff('day', created_at, created_at) FROM t").rewrites == [
        "date_diff counts whole units",
        "integer division truncates",
    ]


# -- What Athena refuses is refused, with line, column and a hint --------------------------------------

REFUSED = {
    "SELECT id::varchar FROM t": ("'::' cast", 1, 10),
    "SELECT id FROM t WHERE email ILIKE '%X%'": ("ILIKE", 1, 30),
    "SELECT [1, 2]": ("ARRAY[1, 2]", 1, 8),
    "SELECT {'a': 1}": ("struct literal", 1, 8),
    "SELECT * EXCLUDE (email) FROM t": ("EXCLUDE", 1, 10),
    "SELECT dt, count(*) FROM t GROUP BY ALL": ("GROUP BY ALL", 1, 37),
    "SELECT id FROM t\nLIMIT 10 OFFSET 5": ("OFFSET before LIMIT", 2, 10),
    "SELECT id FROM t WHERE id == 1": ("'='", 1, 27),
    "SELECT id FROM t WHERE id = $1": ("$n parameters", 1, 29),
    "FROM t SELECT id": ("start with SELECT", 1, 1),
    "SELECT id, FROM t": ("trailing comma", 1, 10),
    "SELECT id FROM t USING SAMPLE 10%": ("TABLESAMPLE", 1, 24),
    "SELECT dt, count(*)\nFORM t\nGROUP BY dt": ("did you mean FROM?", 2, 6),
    "SELECT 'it''s\nFROM t": ("never closed", 1, 8),
    "SELECT id FROM t WHERE": ("incomplete", 1, 18),
}


@pytest.mark.parametrize("sql", list(REFUSED))
def test_sql_athena_would_refuse_is_refused_with_its_position(sql):
    hint, line, column = REFUSED[sql]
    with pytest.raises(QuerySyntaxError) as error:
        dialect.parse(sql)
    assert hint in str(error.value)
    assert (error.value.line, error.value.column) == (line, column)


UNKNOWN_FUNCTIONS = {
    "SELECT strftime(created_at, '%Y') FROM t": "date_format(",
    "SELECT epoch(created_at) FROM t": "to_unixtime(",
    "SELECT list_extract(ids, 1) FROM t": "element_at(",
    "SELECT regexp_matches(email, '@') FROM t": "regexp_like(",
    "SELECT string_agg(email, ',') FROM t": "listagg(",
    "SELECT approx_count_distinct(id) FROM t": "approx_distinct(",
    "SELECT date_diff('day', created_at, created_at), datediff('day', created_at, created_at) FROM t": "date_diff(",
    "SELECT carindality(ids) FROM t": "did you mean cardinality?",
}


@pytest.mark.parametrize("sql", list(UNKNOWN_FUNCTIONS))
def test_functions_athena_lacks_are_refused_with_athenas_spelling(sql):
    with pytest.raises(QueryFailedError) as error:
        dialect.parse(sql)
    assert "Athena has no function" in str(error.value) and UNKNOWN_FUNCTIONS[sql] in str(error.value)
    assert error.value.line == 1 and error.value.column is not None


ACCEPTED = [
    "SELECT ids[1], ARRAY[1, 2], element_at(map(ARRAY['a'], ARRAY[1]), 'a') FROM t",
    "SELECT CAST(ROW(1, 'a') AS ROW(n integer, s varchar)).n",
    "WITH x(a, b) AS (SELECT 1, 2) SELECT a + b FROM x",
    "SELECT transform(ids, x -> x * 2), reduce(ids, 0, (s, x) -> s + x, s -> s) FROM t",
    "SELECT id FROM t ORDER BY id OFFSET 1 LIMIT 1",
    "SELECT u.x FROM t CROSS JOIN UNNEST(ids) u(x)",
    "SELECT listagg(email, ',') WITHIN GROUP (ORDER BY email) FROM t",
    "SELECT if(id > 1, 'a', 'b'), try(steps / 0), typeof(id) FROM t",
    "SELECT date_add('day', 1, current_date), current_timestamp, now() FROM t",
    "SELECT id FROM t TABLESAMPLE BERNOULLI (50)",
    "SELECT dt, count(*) FROM t GROUP BY ROLLUP (dt)",
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_athena_sql_is_not_refused(sql):
    dialect.parse(sql)


def test_one_statement_per_query():
    with pytest.raises(QueryError, match="one statement per query"):
        dialect.parse("SELECT 1; SELECT 2")


def test_what_cannot_be_translated_says_which_construct_and_why():
    with pytest.raises(QueryFailedError) as error:
        translate("SELECT approx_distinct(id, 0.01) FROM t")
    message = str(error.value)
    assert "cannot translate" in message and "accuracy" in message and "--engine athena" in message
