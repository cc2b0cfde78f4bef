"""The local engine answers like PostgreSQL on the source rows, for the SQL analysts write.

The sample days (2024-03-28 .. 2024-04-01, Europe/Paris, with the 23-hour 2024-03-31) are
exported once for the module; each query then runs twice: through `LocalEngine` on the lake
(DuckDB over the Parquet objects Glue points at) and on PostgreSQL over the source tables,
where temporary views shadow each table with the lake's shape (a `dt` column computed from the
partition column in the catalog's time zone, enums/uuid/json as text, `<t>_latest`). The SQL
is the same text on both sides, written in the subset DuckDB, Trino (Athena) and PostgreSQL share.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import secrets
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from psycopg import sql as pgsql

from weward_pipeline import cli
from weward_pipeline.config import Settings
from weward_pipeline.defs.query_resource import QueryResource
from weward_pipeline.devstack import sample_data
from weward_pipeline.devstack.demo_questions import ANALYST_QUESTIONS
from weward_pipeline.export import AwsClients, export_day
from weward_pipeline.query import (
    BytesScannedLimitError,
    LocalEngine,
    QueryCancelledError,
    QueryError,
    QueryFailedError,
    QuerySyntaxError,
    UnknownTableError,
)
from weward_pipeline_tests.conftest import SAMPLE_DAYS, SAMPLE_END, TIMEZONE, make_catalog
from weward_pipeline_tests.query_corpus import CORPUS, examples_in_docs, render_examples

DAYS = [SAMPLE_END - dt.timedelta(days=i) for i in reversed(range(SAMPLE_DAYS))]
# Just after the last sample day ended in Paris: every day is exportable, snapshots included.
EXPORT_NOW = dt.datetime(2024, 4, 2, 6, 0, tzinfo=ZoneInfo(TIMEZONE))

TABLES = [
    {"name": "users", "mode": "snapshot", "primary_key": ["id"]},
    {"name": "reward_offers", "mode": "snapshot", "primary_key": ["id"]},
    {"name": "step_events", "mode": "append", "partition_column": "created_at", "primary_key": ["id"]},
    {"name": "ward_transactions", "mode": "append", "partition_column": "created_at", "primary_key": ["id"]},
    {"name": "reward_purchases", "mode": "append", "partition_column": "purchased_at", "primary_key": ["id"]},
    {"name": "contest_participations", "mode": "append", "partition_column": "joined_at", "primary_key": ["id"]},
]


@dataclass
class ExportedLake:
    settings: Settings
    clients: AwsClients
    pg_url: str

    def engine(self, **kwargs) -> LocalEngine:
        return LocalEngine(self.clients.glue, self.clients.filesystem, self.settings.glue_database, **kwargs)


# Rows on the edges of the local days, around the 2024-03-31 DST change (Paris: CET -> CEST at
# 02:00 local, 01:00 UTC). The sample generator gives all rows of a day one timestamp, so the
# edges are added here: one sync in every hour of every day, and the last/first microseconds.
EDGE_ROWS = """
INSERT INTO step_events (id, user_id, created_at, step_date, steps, distance_m, active_minutes, source)
SELECT 1000000 + row_number() OVER (ORDER BY ts), 1 + (extract(epoch FROM ts)::bigint % 300), ts,
       (ts AT TIME ZONE 'Europe/Paris')::date, 100 + extract(hour FROM ts)::int,
       CASE WHEN extract(hour FROM ts)::int % 3 = 0 THEN NULL ELSE 12.5 END, NULL, 'manual'
FROM (
    SELECT generate_series(timestamptz '2024-03-28 00:00 Europe/Paris', timestamptz '2024-04-01 23:00 Europe/Paris',
                           interval '1 hour') AS ts
    UNION ALL
    SELECT unnest(ARRAY[
        timestamptz '2024-03-27 22:59:59.999999+00',  -- 2024-03-27 23:59:59.999999 CET: not exported
        timestamptz '2024-03-30 22:59:59.999999+00',  -- last microsecond of 2024-03-30
        timestamptz '2024-03-31 00:59:59.999999+00',  -- 01:59:59.999999 CET, just before the jump
        timestamptz '2024-03-31 21:59:59.999999+00',  -- last microsecond of the 23-hour day
        timestamptz '2024-04-01 22:00:00+00'          -- 2024-04-02 00:00 CEST: not exported
    ])
) AS edges;

INSERT INTO ward_transactions (id, user_id, created_at, kind, amount, balance_after, reason, transaction_id)
VALUES
    (2000001, 1, '2024-03-30 22:59:59.999999+00', 'earn_bonus', 0.01, NULL, NULL, md5('e1')::uuid),
    (2000002, 1, '2024-03-30 23:00:00+00', 'spend_reward', -0.01, 0.00, 'edge', md5('e2')::uuid),
    (2000003, 2, '2024-03-31 01:00:00+00', 'refund', 9999999999.99, 999999999999.99, NULL, md5('e3')::uuid),
    (2000004, 2, '2024-03-31 21:59:59.999999+00', 'spend_reward', -9999999999.99, NULL, 'edge', md5('e4')::uuid);

INSERT INTO contest_participations (id, contest_id, user_id, joined_at, final_rank, prize_wards)
VALUES
    (3000001, 999, 1, '2024-03-30 23:59:59.999999', NULL, 0.000000001),
    (3000002, 999, 2, '2024-03-31 00:00:00', 1, NULL),
    (3000003, 999, 3, '2024-03-31 02:30:00', NULL, 12345678901234567890.123456789),  -- no such Paris time
    (3000004, 999, 4, '2024-03-31 23:59:59.999999', 2, NULL),
    (3000005, 999, 5, '2024-04-01 00:00:00', NULL, NULL);
"""


@pytest.fixture(scope="module")
def source_database(pg_server):
    """The sample app data plus EDGE_ROWS, in a database of this module's own."""
    name = f"query_{secrets.token_hex(4)}"
    url = pg_server.create_database(name)
    sample_data.load(
        url, end_date=SAMPLE_END, size=sample_data.SampleSize(users=300, days=SAMPLE_DAYS), timezone=TIMEZONE
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(EDGE_ROWS)
    yield url
    with psycopg.connect(pg_server.admin_url(), autocommit=True) as conn:
        conn.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))


@pytest.fixture(scope="module")
def lake(aws_server, source_database) -> ExportedLake:
    suffix = secrets.token_hex(4)
    bucket = f"query-{suffix}"
    aws_server.create_bucket(bucket)
    env = {
        **aws_server.env(),
        "WEWARD_PG_URL": source_database,
        "WEWARD_LAKE_URL": f"s3://{bucket}/lake",
        "WEWARD_GLUE_DATABASE": f"query_{suffix}",
    }
    settings = Settings.from_env(env)
    clients = AwsClients.from_settings(settings)
    catalog = make_catalog(*TABLES)
    for table in catalog.tables:
        for day in DAYS if table.mode == "append" else [SAMPLE_END]:
            export_day(settings, catalog, table, day, clients=clients, now=EXPORT_NOW)
    return ExportedLake(settings, clients, source_database)


# PostgreSQL side: the lake's view of each table, computed from the source.
TEXT_TYPES = {"uuid", "json", "jsonb", "inet", "cidr", "interval", "time"}


def _shadow_views(conn: psycopg.Connection) -> None:
    for table in TABLES:
        name = table["name"]
        columns = conn.execute(
            "SELECT column_name, data_type, udt_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
            (name,),
        ).fetchall()
        select = []
        for column, data_type, udt in columns:
            ident = pgsql.Identifier(column)
            if data_type == "USER-DEFINED" or udt in TEXT_TYPES:
                select.append(pgsql.SQL("{}::text AS {}").format(ident, ident))
            elif data_type == "ARRAY" and udt.lstrip("_") not in ("int2", "int4", "int8", "text", "numeric", "float8"):
                select.append(pgsql.SQL("{}::text[] AS {}").format(ident, ident))
            else:
                select.append(ident)
        if table["mode"] == "append":
            column = table["partition_column"]
            kind = dict((c, d) for c, d, _ in columns)[column]
            local = (
                pgsql.SQL("{} AT TIME ZONE {}").format(pgsql.Identifier(column), pgsql.Literal(TIMEZONE))
                if "with time zone" in kind
                else pgsql.Identifier(column)
            )
            day = pgsql.SQL("to_char({}, 'YYYY-MM-DD')").format(local)
            body = pgsql.SQL("SELECT {}, {} AS dt FROM public.{} WHERE {} BETWEEN {} AND {}").format(
                pgsql.SQL(", ").join(select),
                day,
                pgsql.Identifier(name),
                day,
                pgsql.Literal(DAYS[0].isoformat()),
                pgsql.Literal(DAYS[-1].isoformat()),
            )
            views = [name]
        else:
            body = pgsql.SQL("SELECT {}, {} AS dt FROM public.{}").format(
                pgsql.SQL(", ").join(select), pgsql.Literal(SAMPLE_END.isoformat()), pgsql.Identifier(name)
            )
            views = [name, f"{name}_latest"]
        for view in views:
            conn.execute(pgsql.SQL("CREATE TEMP VIEW {} AS {}").format(pgsql.Identifier(view), body))


@pytest.fixture(scope="module")
def postgres(lake):
    """Temporary views only: the source tables stay as exported."""
    with psycopg.connect(lake.pg_url) as conn:
        conn.execute("SET TimeZone = 'UTC'")  # Athena's session time zone
        _shadow_views(conn)
        conn.commit()
        yield conn


def _normal(value):
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _same(a, b) -> bool:
    a, b = _normal(a), _normal(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    numbers = (int, float, decimal.Decimal)
    if isinstance(a, numbers) and isinstance(b, numbers):
        if isinstance(a, float) or isinstance(b, float):
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
        return decimal.Decimal(a) == decimal.Decimal(b)
    return a == b


def _close(a, b, tolerance: float) -> bool:
    numbers = (int, float, decimal.Decimal)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=tolerance)
    return _same(a, b)


def assert_same_answer(lake_rows: list[tuple], pg_rows: list[tuple], sql: str, tolerance: float | None = None) -> None:
    assert len(lake_rows) == len(pg_rows), f"row counts differ for:\n{sql}"
    same = _same if tolerance is None else (lambda a, b: _close(a, b, tolerance))
    for index, (mine, theirs) in enumerate(zip(lake_rows, pg_rows)):
        assert len(mine) == len(theirs)
        assert all(same(a, b) for a, b in zip(mine, theirs)), (
            f"row {index} differs for:\n{sql}\nlake: {mine}\npg:   {theirs}"
        )


def run_both(lake: ExportedLake, postgres, sql: str):
    result = lake.engine().run(sql)
    lake_rows = [tuple(row.values()) for row in result.table.to_pylist()]
    pg_rows = postgres.execute(sql).fetchall()
    assert_same_answer(lake_rows, pg_rows, sql)
    return result, lake_rows


PARITY_QUERIES = {
    # Aggregates per partition; dt is the local day.
    "steps_per_day": ANALYST_QUESTIONS[0][1],
    # Joins across two tables (append x snapshot's latest day), decimals summed exactly.
    "wards_per_country": ANALYST_QUESTIONS[1][1],
    "top_rewards": ANALYST_QUESTIONS[2][1],
    # Partition range filter and decimals: min/max/sum of numeric(12,2) and numeric(14,2).
    "ledger_by_kind_over_three_days": """
        SELECT kind, count(*) AS transactions, sum(amount) AS total, min(amount) AS smallest,
               max(balance_after) AS largest_balance
        FROM ward_transactions
        WHERE dt BETWEEN '2024-03-29' AND '2024-03-31'
        GROUP BY kind
        ORDER BY kind""",
    "biggest_balance_changes_on_one_day": """
        SELECT user_id, sum(amount) AS change, count(*) AS transactions
        FROM ward_transactions
        WHERE dt = '2024-03-31'
        GROUP BY user_id
        ORDER BY change DESC, user_id
        LIMIT 10""",
    "days_in_a_list": """
        SELECT dt, count(*) AS purchases, sum(wards_spent) AS wards
        FROM reward_purchases
        WHERE dt IN ('2024-03-28', '2024-04-01')
        GROUP BY dt
        ORDER BY dt""",
    # DST: 2024-03-31 is 23 hours long in Paris; its rows span 23 distinct UTC hours.
    "utc_hours_per_local_day": """
        SELECT dt, count(*) AS syncs, count(DISTINCT extract(hour FROM created_at)) AS utc_hours,
               min(created_at) AS first_sync, max(created_at) AS last_sync
        FROM step_events
        GROUP BY dt
        ORDER BY dt""",
    # timestamp WITHOUT time zone in local wall-clock time, across the DST change.
    "naive_local_timestamps_around_dst": """
        SELECT dt, count(*) AS joined, min(joined_at) AS first_join, max(joined_at) AS last_join,
               count(final_rank) AS ranked
        FROM contest_participations
        WHERE dt BETWEEN '2024-03-30' AND '2024-04-01'
        GROUP BY dt
        ORDER BY dt""",
    # Timestamp literals compare in UTC, as in Athena.
    "utc_timestamp_range": """
        SELECT count(*) AS syncs, sum(steps) AS steps
        FROM step_events
        WHERE created_at >= TIMESTAMP '2024-03-31 00:00:00' AND created_at < TIMESTAMP '2024-04-01 00:00:00'""",
    "date_column_filter": """
        SELECT step_date, count(*) AS syncs, avg(steps) AS mean_steps
        FROM step_events
        WHERE step_date >= DATE '2024-03-31'
        GROUP BY step_date
        ORDER BY step_date""",
    # NULLs: counts, unconstrained numeric (decimal(38,9)) with NULLs, NULL ordering, COALESCE.
    "nullable_prizes_and_ranks": """
        SELECT count(*) AS participations, count(prize_wards) AS with_prize, sum(prize_wards) AS prizes,
               max(prize_wards) AS biggest_prize, min(final_rank) AS best_rank,
               count(*) - count(final_rank) AS unranked
        FROM contest_participations""",
    "nulls_first_when_asked": """
        SELECT id, final_rank, prize_wards
        FROM contest_participations
        WHERE dt = '2024-03-31'
        ORDER BY final_rank DESC NULLS FIRST, id
        LIMIT 15""",
    "coalesce_null_reasons": """
        SELECT coalesce(reason, '(no reason)') AS reason, count(*) AS transactions,
               sum(CASE WHEN details IS NULL THEN 1 ELSE 0 END) AS without_details
        FROM ward_transactions
        WHERE dt = '2024-03-30'
        GROUP BY coalesce(reason, '(no reason)')
        ORDER BY transactions DESC, reason""",
    "nullable_user_columns": """
        SELECT status, count(*) AS users, count(phone) AS with_phone, count(birth_date) AS with_birth_date
        FROM users_latest
        GROUP BY status
        ORDER BY status""",
    "left_join_keeps_users_without_purchases": """
        SELECT count(*) AS users_without_purchase_that_day
        FROM users_latest u
        LEFT JOIN reward_purchases p ON p.user_id = u.id AND p.dt = '2024-03-31'
        WHERE p.id IS NULL""",
    "filter_aggregate_and_case": """
        SELECT dt, count(*) FILTER (WHERE distance_m IS NULL) AS without_distance,
               count(*) FILTER (WHERE active_minutes IS NULL) AS without_minutes,
               sum(CASE WHEN source = 'garmin' THEN steps ELSE 0 END) AS garmin_steps
        FROM step_events
        GROUP BY dt
        ORDER BY dt""",
}


@pytest.mark.parametrize("name", sorted(PARITY_QUERIES))
def test_local_engine_answers_like_postgres_on_the_source_rows(lake, postgres, name):
    result, rows = run_both(lake, postgres, PARITY_QUERIES[name])
    assert rows, "a parity query that returns nothing proves nothing"
    assert result.engine == "local" and result.bytes_scanned > 0


QUESTIONS = {question.name: question for question in CORPUS}


@pytest.mark.parametrize("name", list(QUESTIONS))
def test_an_athena_question_is_answered_locally_as_postgres_answers_it(lake, postgres, name):
    """The corpus: Athena SQL through the local engine == the same question in PostgreSQL's SQL."""
    question = QUESTIONS[name]
    result = lake.engine().run(question.athena)
    lake_rows = [tuple(row.values()) for row in result.table.to_pylist()]
    with postgres.transaction():
        pg_rows = postgres.execute(question.postgres).fetchall()
    assert_same_answer(
        lake_rows, pg_rows, f"{question.athena}\n-- ran as --\n{result.executed_sql}", question.tolerance
    )
    assert rows_or_a_reason(lake_rows, question)


def rows_or_a_reason(rows: list[tuple], question) -> bool:
    """A question whose answer is empty or all NULL proves nothing, unless that is its point."""
    if question.name == "aggregates_of_no_rows":
        return rows == [(0, None, None, 0, 0)]
    return bool(rows) and any(value is not None for row in rows for value in row)


def test_the_corpus_has_forty_questions_and_every_topic_of_issue_16():
    assert len(CORPUS) >= 40 and len(QUESTIONS) == len(CORPUS)
    text = " ".join(q.athena for q in CORPUS)
    for construct in (
        "approx_distinct(",
        "date_format(",
        "from_iso8601_timestamp(",
        "regexp_like(",
        "element_at(",
        "json_extract_scalar(",
        "to_unixtime(",
        "approx_percentile(",
        "date_trunc('week'",
        "cardinality(",
        "date_diff('day'",
        "try_cast(",
        "count_if(",
        "OVER (",
        "UNNEST(",
        "_latest",
        "dt BETWEEN",
        "WITH ",
        "AT TIME ZONE",
    ):
        assert construct in text, construct
    assert all(q.tolerance for q in CORPUS if "approx_" in q.athena)


def test_the_docs_show_the_corpus_as_it_is():
    from weward_pipeline_tests.query_corpus import DOCS

    assert examples_in_docs(DOCS.read_text(encoding="utf-8")) == render_examples(), (
        "docs/querying.md's examples differ from the corpus: python -m weward_pipeline_tests.query_corpus"
    )


def test_the_dst_day_has_23_utc_hours_and_its_edges_land_on_the_right_day(lake, postgres):
    _, rows = run_both(lake, postgres, PARITY_QUERIES["utc_hours_per_local_day"])
    by_day = {row[0]: row for row in rows}
    assert [row[0] for row in rows] == [d.isoformat() for d in DAYS]
    assert {day: row[2] for day, row in by_day.items()} == {
        "2024-03-28": 24,
        "2024-03-29": 24,
        "2024-03-30": 24,
        "2024-03-31": 23,
        "2024-04-01": 24,
    }
    # Paris midnight is 23:00 UTC in winter and 22:00 UTC in summer.
    assert by_day["2024-03-28"][3] == dt.datetime(2024, 3, 27, 23, 0)
    assert by_day["2024-03-30"][4] == dt.datetime(2024, 3, 30, 22, 59, 59, 999999)
    assert by_day["2024-03-31"][3] == dt.datetime(2024, 3, 30, 23, 0)
    assert by_day["2024-03-31"][4] == dt.datetime(2024, 3, 31, 21, 59, 59, 999999)
    assert by_day["2024-04-01"][3] == dt.datetime(2024, 3, 31, 22, 0)


def test_naive_local_timestamps_stay_on_their_wall_clock_day(lake, postgres):
    _, rows = run_both(lake, postgres, PARITY_QUERIES["naive_local_timestamps_around_dst"])
    by_day = {row[0]: row for row in rows}
    assert by_day["2024-03-30"][3] == dt.datetime(2024, 3, 30, 23, 59, 59, 999999)
    assert by_day["2024-03-31"][2] == dt.datetime(2024, 3, 31, 0, 0)
    assert by_day["2024-03-31"][3] == dt.datetime(2024, 3, 31, 23, 59, 59, 999999)
    assert by_day["2024-04-01"][2] == dt.datetime(2024, 4, 1, 0, 0)
    spring_gap = lake.engine().run("SELECT dt FROM contest_participations WHERE id = 3000003")
    assert spring_gap.rows == [{"dt": "2024-03-31"}]  # 02:30 does not exist in Paris that day; kept as written


def test_decimal_sums_stay_exact_decimals(lake, postgres):
    result, rows = run_both(lake, postgres, PARITY_QUERIES["ledger_by_kind_over_three_days"])
    assert all(isinstance(row[2], decimal.Decimal) for row in rows)
    assert str(result.table.schema.field("total").type).startswith("decimal128(")


def test_partition_filters_read_only_the_named_days(lake):
    engine = lake.engine()
    everything = engine.run("SELECT sum(steps) AS steps FROM step_events")
    one_day = engine.run("SELECT sum(steps) AS steps FROM step_events WHERE dt = '2024-03-31'")
    two_days = engine.run("SELECT sum(steps) AS steps FROM step_events WHERE dt BETWEEN '2024-03-30' AND '2024-03-31'")
    assert 0 < one_day.bytes_scanned < two_days.bytes_scanned < everything.bytes_scanned
    assert one_day.bytes_scanned < everything.bytes_scanned / 3
    # The summary says how many days were read, not how many are published.
    assert "tables: step_events (1 of 5 days read)" in one_day.summary()
    assert "tables: step_events (2 of 5 days read)" in two_days.summary()
    assert "tables: step_events (5 of 5 days read)" in everything.summary()
    # Column pruning too: one narrow column costs less than every column.
    wide = engine.run("SELECT * FROM step_events WHERE dt = '2024-03-31'")
    assert one_day.bytes_scanned < wide.bytes_scanned


def test_qualified_names_work_as_in_athena(lake):
    database = lake.settings.glue_database
    engine = lake.engine()
    counts = {
        engine.run(sql).table.column(0)[0].as_py()
        for sql in (
            "SELECT count(*) FROM reward_offers",
            f"SELECT count(*) FROM {database}.reward_offers",
            f'SELECT count(*) FROM "{database}"."reward_offers"',
            f"SELECT count(*) FROM awsdatacatalog.{database}.reward_offers",
        )
    }
    assert len(counts) == 1 and counts.pop() > 0


def test_unknown_table_lists_the_known_ones_and_suggests_the_closest(lake):
    with pytest.raises(UnknownTableError) as error:
        lake.engine().run("SELECT count(*) FROM step_event WHERE dt = '2024-03-31'")
    message = str(error.value)
    assert "step_event" in message and "did you mean step_events" in message
    for known in ("contest_participations", "reward_offers_latest", "users", "users_latest", "ward_transactions"):
        assert known in message
    assert error.value.missing == ["step_event"]


def test_unknown_database_is_an_unknown_table(lake):
    with pytest.raises(UnknownTableError) as error:
        lake.engine().run("SELECT count(*) FROM other_lake.users")
    assert "other_lake.users" in str(error.value)


def test_syntax_error_gives_line_and_column_and_points_at_it(lake):
    sql = "SELECT dt, count(*)\nFORM step_events\nGROUP BY dt"
    with pytest.raises(QuerySyntaxError) as error:
        lake.engine().run(sql)
    assert (error.value.line, error.value.column) == (2, 6)
    message = str(error.value)
    assert "line 2, column 6" in message and "FORM step_events\n       ^" in message


def test_unknown_column_names_the_column_and_its_position(lake):
    with pytest.raises(QueryFailedError) as error:
        lake.engine().run("SELECT dt, stepz FROM step_events")
    assert "stepz" in str(error.value) and error.value.line == 1 and error.value.column == 12


def test_bytes_scanned_limit_stops_the_query_and_says_how_to_scan_less(lake):
    engine = lake.engine(max_bytes_scanned=20_000)
    with pytest.raises(BytesScannedLimitError) as error:
        engine.run("SELECT * FROM step_events")
    message = str(error.value)
    assert "bytes-scanned limit reached" in message and "19.53 KB" in message
    assert "WHERE dt BETWEEN" in message and "--max-bytes-scanned" in message
    assert error.value.scanned > 20_000
    # The same engine still answers queries that stay under the limit.
    assert engine.run("SELECT count(*) AS offers FROM reward_offers_latest WHERE id < 5").rows == [{"offers": 4}]


def test_a_query_past_its_timeout_is_cancelled(lake):
    engine = lake.engine(timeout_s=0.3)
    with pytest.raises(QueryCancelledError) as error:
        engine.run("SELECT count(*) FROM range(1000000000) a, range(1000) b")
    assert "timeout of 0.3 s" in str(error.value)


def test_local_engine_reads_only_the_lake(lake):
    with pytest.raises(QueryFailedError) as error:
        lake.engine().run("SELECT * FROM read_csv('/etc/hostname')")
    assert "reads only the lake" in str(error.value)


def test_an_athena_function_duckdb_lacks_is_named_with_the_way_out(lake):
    with pytest.raises(QueryFailedError) as error:
        lake.engine().run(
            "SELECT format_datetime(created_at, 'yyyy-MM-dd') AS day FROM step_events WHERE dt = '2024-03-31'"
        )
    message = str(error.value)
    assert (
        "format_datetime: an Athena function the local engine cannot translate" in message
        and "--engine athena" in message
    )
    assert (error.value.line, error.value.column) == (1, 8)


def test_integer_division_by_zero_fails_as_in_athena_without_a_traceback(lake):
    with pytest.raises(QueryFailedError, match="Division by zero"):
        lake.engine().run("SELECT count(*) / 0 AS nothing FROM reward_offers_latest")


def test_a_duckdb_function_is_refused_by_the_local_engine_too(lake):
    engine = lake.engine()
    with pytest.raises(QueryFailedError, match="Athena has no function epoch"):
        engine.run("SELECT epoch(created_at) FROM step_events")


def test_cli_show_sql_prints_the_duckdb_translation_that_ran(lake_environment, capsys):
    assert (
        cli.main(
            [
                "query",
                "--show-sql",
                "--quiet",
                "SELECT dt, sum(steps) / count(*) AS mean FROM step_events WHERE dt = '2024-03-31' GROUP BY dt",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split() == ["dt", "|", "mean"]
    assert "-- ran on DuckDB, translated from your Athena SQL; Athena semantics kept: integer division truncates" in err
    assert "// COUNT(*)" in err and '"step_events"."dt" = \'2024-03-31\'' in err
    assert cli.main(["query", "--show-sql", "--quiet", "SELECT dt, stepz FROM step_events"]) == 1
    err = capsys.readouterr().err
    assert "-- ran on DuckDB" in err and '"stepz"' in err and "error: query failed (line 1, column 12)" in err


def test_one_statement_per_query(lake):
    with pytest.raises(Exception) as error:
        lake.engine().run("SELECT 1; SELECT 2")
    assert "one statement per query" in str(error.value)


# The command line, the Dagster resource and the demo's epilogue, on the same exported lake.


@pytest.fixture
def lake_environment(lake, monkeypatch):
    env = {"glue_database": lake.settings.glue_database}
    monkeypatch.setenv("WEWARD_GLUE_DATABASE", lake.settings.glue_database)
    monkeypatch.delenv("WEWARD_QUERY_ENGINE", raising=False)
    monkeypatch.delenv("WEWARD_QUERY_MAX_BYTES_SCANNED", raising=False)
    return env


def test_cli_prints_the_answer_as_a_table_and_the_scan_on_stderr(lake_environment, capsys):
    code = cli.main(
        ["query", "SELECT dt, count(*) AS syncs FROM step_events WHERE dt >= '2024-03-31' GROUP BY dt ORDER BY dt"]
    )
    out, err = capsys.readouterr()
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["dt", "|", "syncs"]
    assert lines[2].startswith("2024-03-31 |") and lines[3].startswith("2024-04-01 |")
    assert (
        "[local] DuckDB" in err
        and "2 rows in" in err
        and "scanned" in err
        and "tables: step_events (2 of 5 days read)" in err
    )  # the dt filter read 2 of the 5 days


def test_cli_writes_every_row_to_csv_or_parquet(lake_environment, tmp_path, capsys):
    sql = "SELECT id, created_at, amount, reason, dt FROM ward_transactions WHERE dt = '2024-03-31' ORDER BY id"
    for name in ("ledger.csv", "ledger.parquet"):
        assert cli.main(["query", sql, "--output", str(tmp_path / name), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "(csv)" in out and "(parquet)" in out
    parquet = pq.read_table(tmp_path / "ledger.parquet")
    # NULL is an empty unquoted field, an empty string is "" (as in Athena's CSV results).
    csv = pacsv.read_csv(
        tmp_path / "ledger.csv",
        convert_options=pacsv.ConvertOptions(strings_can_be_null=True, quoted_strings_can_be_null=False),
    )
    assert parquet.num_rows == csv.num_rows > 100
    assert str(parquet.schema.field("amount").type) == "decimal128(12, 2)"
    assert parquet.column("id").to_pylist() == csv.column("id").to_pylist()
    assert parquet.column("reason").null_count == csv.column("reason").null_count > 0


def test_cli_reads_sql_from_a_file_and_rejects_other_output_formats(lake_environment, tmp_path, capsys):
    question = tmp_path / "question.sql"
    question.write_text("SELECT count(*) AS offers FROM reward_offers_latest\n")
    assert cli.main(["query", "-f", str(question), "--quiet"]) == 0
    assert "60" in capsys.readouterr().out
    assert cli.main(["query", "-f", str(question), "--output", str(tmp_path / "x.xlsx"), "--quiet"]) == 1
    assert "must end in .csv or .parquet" in capsys.readouterr().err


def test_cli_errors_are_one_clear_line_and_a_non_zero_exit(lake_environment, capsys):
    assert cli.main(["query", "SELECT * FROM rewards"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error: unknown table rewards") and "reward_offers_latest" in err
    assert cli.main(["query", "SELECT 1 FROM step_events", "--max-bytes-scanned", "1KB", "--quiet"]) == 1
    assert "bytes-scanned limit reached" in capsys.readouterr().err
    assert cli.main(["query", "SELECT count(*) FROM range(1000000000) a, range(1000) b", "--timeout", "0.2"]) == 130
    assert "cancelled" in capsys.readouterr().err
    assert cli.main(["query"]) == 2


def test_cli_lists_the_tables_their_days_and_the_latest_views(lake_environment, capsys):
    assert cli.main(["query", "--tables"]) == 0
    out = capsys.readouterr().out
    assert "step_events" in out and "2024-03-28 .. 2024-04-01 (5 days)" in out
    assert "users_latest" in out and "dt = '2024-04-01'" in out
    assert cli.main(["query", "--print-latest-views"]) == 0
    out = capsys.readouterr().out
    database = lake_environment["glue_database"]
    assert f'CREATE OR REPLACE VIEW "{database}"."users_latest" AS' in out and "reward_offers_latest" in out


def test_latest_view_is_the_newest_snapshot_day_and_never_opens_older_ones(
    aws_server, fresh_database, lake_env, clients
):
    sample_data.load(
        fresh_database, end_date=SAMPLE_END, size=sample_data.SampleSize(users=40, days=2), timezone=TIMEZONE
    )
    settings = Settings.from_env({**lake_env, "WEWARD_PG_URL": fresh_database})
    catalog = make_catalog(TABLES[0])
    export_day(
        settings,
        catalog,
        catalog.tables[0],
        SAMPLE_END - dt.timedelta(days=1),
        clients=clients,
        now=dt.datetime(2024, 4, 1, 6, 0, tzinfo=ZoneInfo(TIMEZONE)),
    )
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("DELETE FROM users WHERE id > 30")
    export_day(settings, catalog, catalog.tables[0], SAMPLE_END, clients=clients, now=EXPORT_NOW)
    # Athena views live in Glue too (--create-latest-views); the local engine keeps its own
    # <name>_latest and refuses other views clearly.
    for view in ("users_latest", "weekly_users"):
        clients.glue.create_table(
            DatabaseName=settings.glue_database,
            TableInput={
                "Name": view,
                "TableType": "VIRTUAL_VIEW",
                "Parameters": {"presto_view": "true"},
                "ViewOriginalText": "/* Presto View: e30= */",
                "StorageDescriptor": {"Columns": [{"Name": "id", "Type": "bigint"}]},
            },
        )
    engine = LocalEngine(clients.glue, clients.filesystem, settings.glue_database)
    with pytest.raises(QueryError, match="weekly_users: Athena view"):
        engine.run("SELECT * FROM weekly_users")
    assert engine.run("SELECT dt, count(*) AS users FROM users GROUP BY dt ORDER BY dt").rows == [
        {"dt": "2024-03-31", "users": 40},
        {"dt": "2024-04-01", "users": 30},
    ]
    latest = engine.run("SELECT dt, count(*) AS users, max(id) AS last_id FROM users_latest GROUP BY dt")
    assert latest.rows == [{"dt": "2024-04-01", "users": 30, "last_id": 30}]
    assert latest.partitions_listed == {"users": 2}
    # Pruning is by partition, before any object is opened: break the older day's object and
    # the latest view still answers, while a query over both days fails naming the damage.
    older = clients.glue.get_partition(
        DatabaseName=settings.glue_database, TableName="users", PartitionValues=["2024-03-31"]
    )["Partition"]["StorageDescriptor"]["Location"]
    bucket, _, prefix = older.removeprefix("s3://").partition("/")
    for key in [o["Key"] for o in clients.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]:
        clients.s3.put_object(Bucket=bucket, Key=key, Body=b"not parquet at all")
    assert engine.run("SELECT count(*) AS users FROM users_latest").rows == [{"users": 30}]
    with pytest.raises(QueryFailedError) as error:
        engine.run("SELECT count(*) AS users FROM users")
    assert "users" in str(error.value) and "parquet" in str(error.value).lower()


def test_query_resource_runs_sql_for_an_asset(lake):
    @dg.asset
    def daily_steps(query: QueryResource) -> dg.MaterializeResult:
        result = query.run("SELECT dt, sum(steps) AS steps FROM step_events GROUP BY dt ORDER BY dt")
        return dg.MaterializeResult(metadata=QueryResource.metadata(result))

    resource = QueryResource(
        glue_database=lake.settings.glue_database,
        aws_region=lake.settings.aws_region,
        aws_endpoint_url=lake.settings.aws_endpoint_url,
    )
    outcome = dg.materialize([daily_steps], resources={"query": resource}, instance=dg.DagsterInstance.ephemeral())
    metadata = outcome.asset_materializations_for_node("daily_steps")[0].metadata
    assert metadata["dagster/row_count"].value == 5
    assert metadata["query_engine"].value == "local" and metadata["bytes_scanned"].value > 0


def test_definitions_offer_the_query_resource(lake_environment, monkeypatch):
    from weward_pipeline.config import load_catalog
    from weward_pipeline.defs.factory import build_definitions

    monkeypatch.setenv("WEWARD_PG_URL", "postgresql://placeholder@localhost/placeholder")
    monkeypatch.setenv("WEWARD_LAKE_URL", "s3://placeholder/lake")
    monkeypatch.setenv("WEWARD_ATHENA_WORKGROUP", "weward-analysts")
    resources = build_definitions(load_catalog()).resources
    assert isinstance(resources["query"], QueryResource)
    assert resources["query"].athena_workgroup == "weward-analysts"


def test_demo_ends_with_the_analyst_questions_answered(lake_environment, capsys):
    from weward_pipeline.devstack import demo_questions

    assert demo_questions.demo_analyst_questions() == 0
    out = capsys.readouterr().out
    for title, _ in ANALYST_QUESTIONS:
        assert f"-- {title}" in out
    assert "2024-03-31" in out and "FR" in out and "Offer #" in out
    assert (
        out.count("no charge locally") == 3
        and "tables: users (1 of 1 day read), ward_transactions (5 of 5 days read)" in out
    )
