"""Exporting days against the real PostgreSQL server and the moto S3+Glue endpoint.

Day boundaries (DST included), empty days, re-runs, failures halfway, schema changes and bad
input. Every test reads the result back through Glue, as Athena would.
"""

from __future__ import annotations

import datetime as dt
import socket

import psycopg
import pyarrow.parquet as pq
import pytest

from weward_pipeline import lake
from weward_pipeline.config import LakeLocation
from weward_pipeline.export import ExportError, export_day
from weward_pipeline.extract import DayWindow, Extraction, ExtractLimits, SourceError
from weward_pipeline.glue import CatalogError, GlueCatalog
from weward_pipeline_tests.conftest import make_catalog, make_settings
from weward_pipeline_tests.lake_reader import read_table

EVENTS_DDL = """
CREATE TABLE events (
    id bigint PRIMARY KEY,
    created_at timestamptz NOT NULL,
    local_at timestamp NOT NULL,
    on_day date NOT NULL,
    amount numeric(10, 2),
    label text
);
"""

# (id, instant) around both 2024 DST changes in Europe/Paris; expected local day of each.
BOUNDARY_ROWS = [
    (1, "2024-03-30 23:59:59.999999+01", "2024-03-30"),
    (2, "2024-03-31 00:00:00+01", "2024-03-31"),
    (3, "2024-03-31 01:59:59.999999+01", "2024-03-31"),
    (4, "2024-03-31 03:00:00+02", "2024-03-31"),  # 02:00 -> 03:00: the day has 23 hours
    (5, "2024-03-31 23:59:59.999999+02", "2024-03-31"),
    (6, "2024-04-01 00:00:00+02", "2024-04-01"),
    (7, "2024-10-27 00:00:00+02", "2024-10-27"),
    (8, "2024-10-27 02:30:00+02", "2024-10-27"),  # 02:30 happens twice: the day has 25 hours
    (9, "2024-10-27 02:30:00+01", "2024-10-27"),
    (10, "2024-10-27 23:59:59.999999+01", "2024-10-27"),
    (11, "2024-10-28 00:00:00+01", "2024-10-28"),
    (12, "2024-10-26 23:59:59.999999+02", "2024-10-26"),
]
DAYS = sorted({day for _, _, day in BOUNDARY_ROWS})


@pytest.fixture
def events_db(fresh_database):
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute(EVENTS_DDL)
        for row_id, instant, _ in BOUNDARY_ROWS:
            conn.execute(
                "INSERT INTO events VALUES (%s, %s::timestamptz, (%s::timestamptz AT TIME ZONE 'Europe/Paris'), "
                "(%s::timestamptz AT TIME ZONE 'Europe/Paris')::date, %s, %s)",
                (row_id, instant, instant, instant, row_id * 1.25, f"row {row_id}"),
            )
    return fresh_database


def events_table(partition_column: str = "created_at", name: str = "events", **extra) -> dict:
    return {
        "name": name,
        "source_table": "events",
        "mode": "append",
        "partition_column": partition_column,
        "primary_key": ["id"],
        **extra,
    }


def glue_for(settings, clients) -> GlueCatalog:
    return GlueCatalog(clients.glue, settings.glue_database)


@pytest.mark.parametrize("partition_column", ["created_at", "local_at", "on_day"])
def test_each_row_lands_in_its_local_day_exactly_once_across_dst(events_db, lake_env, clients, partition_column):
    settings = make_settings(lake_env, events_db)
    catalog = make_catalog(events_table(partition_column))
    for day in DAYS:
        export_day(settings, catalog, catalog.tables[0], dt.date.fromisoformat(day), clients=clients)
    exported = read_table(glue_for(settings, clients), clients.filesystem, "events")
    placed = sorted(zip(exported.column("id").to_pylist(), exported.column("dt").to_pylist()))
    assert placed == sorted((row_id, day) for row_id, _, day in BOUNDARY_ROWS)


def test_dst_days_have_23_and_25_hour_windows():
    assert DayWindow(dt.date(2024, 3, 31), "Europe/Paris").hours == 23
    assert DayWindow(dt.date(2024, 10, 27), "Europe/Paris").hours == 25
    assert DayWindow(dt.date(2024, 10, 27), "UTC").hours == 24


def test_glue_registers_a_parquet_table_partitioned_by_dt_pointing_at_the_written_objects(events_db, lake_env, clients):
    settings = make_settings(lake_env, events_db)
    catalog = make_catalog(events_table())
    result = export_day(settings, catalog, catalog.tables[0], dt.date(2024, 3, 31), clients=clients)
    glue = glue_for(settings, clients)
    table = glue.get_table("events")
    assert table["PartitionKeys"] == [
        {"Name": "dt", "Type": "string", "Comment": "export day (catalog time zone), YYYY-MM-DD"}
    ]
    assert table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    assert table["StorageDescriptor"]["Location"] == f"s3://{settings.lake.bucket}/exports/events/"
    assert table["Parameters"]["classification"] == "parquet"
    partition = glue.get_partition("events", "2024-03-31")
    assert partition["StorageDescriptor"]["Location"] == result.location
    assert partition["Parameters"]["weward.rows"] == "4"
    listed = lake.list_keys(clients.s3, settings.lake.bucket, result.location.split("/", 3)[3])
    assert listed == [o.key for o in result.objects]
    assert result.window == {
        "start": "2024-03-31T00:00:00+01:00",
        "end": "2024-04-01T00:00:00+02:00",
        "timezone": "Europe/Paris",
    }


def test_an_empty_day_is_published_with_zero_rows_and_a_readable_schema(events_db, lake_env, clients):
    settings = make_settings(lake_env, events_db)
    catalog = make_catalog(events_table())
    result = export_day(settings, catalog, catalog.tables[0], dt.date(2024, 6, 1), clients=clients)
    assert result.rows == 0
    empty = read_table(glue_for(settings, clients), clients.filesystem, "events", "2024-06-01")
    assert empty.num_rows == 0 and "amount" in empty.schema.names


def test_re_exporting_a_day_replaces_it_without_duplicates_or_leftovers(events_db, lake_env, clients):
    settings = make_settings(lake_env, events_db)
    catalog = make_catalog(events_table())
    day = dt.date(2024, 3, 31)
    first = export_day(settings, catalog, catalog.tables[0], day, clients=clients)
    with psycopg.connect(events_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO events VALUES (100, '2024-03-31 12:00+02', '2024-03-31 12:00', '2024-03-31', 1, 'late')"
        )
    second = export_day(settings, catalog, catalog.tables[0], day, clients=clients)
    assert second.export_id != first.export_id and second.superseded_deleted >= 2
    ids = read_table(glue_for(settings, clients), clients.filesystem, "events", "2024-03-31").column("id").to_pylist()
    assert sorted(ids) == [2, 3, 4, 5, 100]
    location = LakeLocation.parse(settings.lake.url())
    keys = lake.list_keys(clients.s3, settings.lake.bucket, lake.day_prefix(location, "events", day))
    assert all(f"v={second.export_id}/" in key for key in keys)
    manifests = lake.list_keys(clients.s3, settings.lake.bucket, "exports/_manifests/events/")
    assert manifests == [f"exports/_manifests/events/dt=2024-03-31/{second.export_id}.json"]


def test_a_failure_halfway_leaves_the_published_day_untouched_and_no_orphans(fresh_database, lake_env, clients):
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (id bigint PRIMARY KEY, at timestamptz NOT NULL, amount numeric, memo text)")
        conn.execute(
            "INSERT INTO ledger SELECT g, '2024-03-31 12:00+02'::timestamptz + g * interval '1 ms', g, repeat('x', 200) "
            "FROM generate_series(1, 20000) g"
        )
    settings = make_settings(lake_env, fresh_database)
    catalog = make_catalog({"name": "ledger", "mode": "append", "partition_column": "at", "primary_key": ["id"]})
    day = dt.date(2024, 3, 31)
    published = export_day(settings, catalog, catalog.tables[0], day, clients=clients)

    # A value that cannot be stored exactly, physically last: the failure comes after several
    # batches and files were already written.
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("INSERT INTO ledger VALUES (20001, '2024-03-31 23:00+02', 0.0000000001, 'bad')")
    small = ExtractLimits(batch_bytes=64 * 1024)
    original_max_rows = lake.MAX_ROWS_PER_FILE
    lake.MAX_ROWS_PER_FILE = 3000
    try:
        with pytest.raises(SourceError, match="'amount'"):
            export_day(settings, catalog, catalog.tables[0], day, clients=clients, limits=small)
    finally:
        lake.MAX_ROWS_PER_FILE = original_max_rows

    glue = glue_for(settings, clients)
    assert glue.get_partition("ledger", "2024-03-31")["Parameters"]["weward.export_id"] == published.export_id
    assert read_table(glue, clients.filesystem, "ledger").num_rows == 20000
    keys = lake.list_keys(clients.s3, settings.lake.bucket, "exports/")
    assert all(published.export_id in key for key in keys), keys


def test_leftovers_of_a_killed_run_are_swept_but_a_recent_export_in_flight_is_not(events_db, lake_env, clients):
    settings = make_settings(lake_env, events_db)
    catalog = make_catalog(events_table())
    day = dt.date(2024, 3, 31)
    location = LakeLocation.parse(settings.lake.url())
    killed = lake.new_export_id(dt.datetime.now(dt.UTC) - dt.timedelta(hours=7))
    in_flight = lake.new_export_id(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    for export_id in (killed, in_flight):
        clients.s3.put_object(
            Bucket=settings.lake.bucket,
            Key=lake.version_prefix(location, "events", day, export_id) + "part-00000.parquet",
            Body=b"half a file",
        )
    result = export_day(settings, catalog, catalog.tables[0], day, clients=clients)
    keys = lake.list_keys(clients.s3, settings.lake.bucket, lake.day_prefix(location, "events", day))
    assert not any(killed in k for k in keys)
    assert any(in_flight in k for k in keys)
    assert any(result.export_id in k for k in keys)


def test_a_new_column_appears_in_glue_and_older_days_stay_readable(events_db, lake_env, clients):
    settings = make_settings(lake_env, events_db)
    catalog = make_catalog(events_table())
    export_day(settings, catalog, catalog.tables[0], dt.date(2024, 3, 30), clients=clients)
    with psycopg.connect(events_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE events ADD COLUMN country char(2)")
        conn.execute("UPDATE events SET country = 'FR' WHERE id = 4")
    export_day(settings, catalog, catalog.tables[0], dt.date(2024, 3, 31), clients=clients)
    glue = glue_for(settings, clients)
    assert [c.name for c in glue.table_columns("events")][-1] == "country"
    both = read_table(glue, clients.filesystem, "events")
    rows = {r["id"]: r for r in both.to_pylist()}
    assert rows[1]["country"] is None and rows[4]["country"] == "FR"


def test_an_incompatible_type_change_names_table_column_and_types_and_publishes_nothing(events_db, lake_env, clients):
    settings = make_settings(lake_env, events_db)
    catalog = make_catalog(events_table())
    day = dt.date(2024, 3, 31)
    first = export_day(settings, catalog, catalog.tables[0], day, clients=clients)
    with psycopg.connect(events_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE events ALTER COLUMN amount TYPE text")
    with pytest.raises(CatalogError) as error:
        export_day(settings, catalog, catalog.tables[0], day, clients=clients)
    message = str(error.value)
    assert "table events" in message and "'amount'" in message and "decimal(10,2)" in message and "string" in message
    glue = glue_for(settings, clients)
    assert glue.get_partition("events", "2024-03-31")["Parameters"]["weward.export_id"] == first.export_id
    assert {c.name: c.type for c in glue.table_columns("events")}["amount"] == "decimal(10,2)"
    assert all(first.export_id in k for k in lake.list_keys(clients.s3, settings.lake.bucket, "exports/"))


def test_a_safe_widening_is_absorbed(events_db, lake_env, clients):
    settings = make_settings(lake_env, events_db)
    catalog = make_catalog(events_table())
    export_day(settings, catalog, catalog.tables[0], dt.date(2024, 3, 30), clients=clients)
    with psycopg.connect(events_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE events ALTER COLUMN amount TYPE numeric(14, 2)")
    export_day(settings, catalog, catalog.tables[0], dt.date(2024, 3, 31), clients=clients)
    glue = glue_for(settings, clients)
    assert {c.name: c.type for c in glue.table_columns("events")}["amount"] == "decimal(14,2)"


# -- snapshot tables ------------------------------------------------------------------------


@pytest.fixture
def snapshot_catalog():
    return make_catalog({"name": "offers", "source_table": "events", "mode": "snapshot", "primary_key": ["id"]})


def test_a_snapshot_exported_just_after_its_day_holds_the_whole_table(events_db, lake_env, clients, snapshot_catalog):
    settings = make_settings(lake_env, events_db)
    now = dt.datetime(2024, 4, 1, 2, 0, tzinfo=dt.UTC)  # 04:00 in Paris, day 03-31 ended
    result = export_day(
        settings, snapshot_catalog, snapshot_catalog.tables[0], dt.date(2024, 3, 31), clients=clients, now=now
    )
    assert result.rows == len(BOUNDARY_ROWS) and result.window is None and result.snapshot_at


def test_a_snapshot_of_an_old_day_is_refused_instead_of_filed_under_the_wrong_date(
    events_db, lake_env, clients, snapshot_catalog
):
    settings = make_settings(lake_env, events_db)
    now = dt.datetime(2024, 4, 5, 2, 0, tzinfo=dt.UTC)
    with pytest.raises(ExportError, match="can only be exported until 2024-04-02T06:00:00"):
        export_day(
            settings, snapshot_catalog, snapshot_catalog.tables[0], dt.date(2024, 3, 31), clients=clients, now=now
        )
    assert GlueCatalog(clients.glue, settings.glue_database).get_table("offers") is None


def test_a_day_that_has_not_ended_is_refused(events_db, lake_env, clients):
    settings = make_settings(lake_env, events_db)
    catalog = make_catalog(events_table())
    now = dt.datetime(2024, 3, 31, 20, 0, tzinfo=dt.UTC)
    with pytest.raises(ExportError, match="has not ended yet"):
        export_day(settings, catalog, catalog.tables[0], dt.date(2024, 3, 31), clients=clients, now=now)


# -- bad input: clear error, nothing written ---------------------------------------------------


def assert_nothing_written(settings, clients):
    assert clients.s3.list_objects_v2(Bucket=settings.lake.bucket).get("KeyCount", 0) == 0
    assert GlueCatalog(clients.glue, settings.glue_database).get_table("events") is None


def test_a_missing_table_is_named_with_the_fix(events_db, lake_env, clients):
    settings = make_settings(lake_env, events_db)
    catalog = make_catalog(events_table(source_table="evnets"))
    with pytest.raises(SourceError) as error:
        export_day(settings, catalog, catalog.tables[0], dt.date(2024, 3, 31), clients=clients)
    assert "PostgreSQL has no table public.evnets" in str(error.value) and "source_table" in str(error.value)
    assert_nothing_written(settings, clients)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (events_table("created"), "partition_column 'created' does not exist in public.events"),
        (events_table("label"), "partition_column 'label' is text; it must be one of timestamptz, timestamp, date"),
        (events_table(primary_key=["event_id"]), "primary_key column 'event_id' does not exist"),
    ],
)
def test_a_missing_or_wrong_column_is_named(events_db, lake_env, clients, table, expected):
    settings = make_settings(lake_env, events_db)
    catalog = make_catalog(table)
    with pytest.raises(SourceError, match=expected):
        export_day(settings, catalog, catalog.tables[0], dt.date(2024, 3, 31), clients=clients)
    assert_nothing_written(settings, clients)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_database_is_reported_without_the_password(lake_env, clients):
    url = f"postgresql://exporter:Sup3rS3cret@127.0.0.1:{_closed_port()}/app"
    settings = make_settings(lake_env, url)
    catalog = make_catalog(events_table())
    with pytest.raises(SourceError) as error:
        export_day(settings, catalog, catalog.tables[0], dt.date(2024, 3, 31), clients=clients)
    message = str(error.value)
    assert "cannot connect to PostgreSQL at postgresql://exporter@127.0.0.1" in message
    assert "Sup3rS3cret" not in message and "Sup3rS3cret" not in repr(error.value.__cause__)
    assert_nothing_written(settings, clients)


def test_a_missing_bucket_is_reported_before_reading_anything(events_db, lake_env, clients):
    settings = make_settings({**lake_env, "WEWARD_LAKE_URL": "s3://no-such-bucket/x"}, events_db)
    catalog = make_catalog(events_table())
    with pytest.raises(ExportError, match="bucket 'no-such-bucket' does not exist"):
        export_day(settings, catalog, catalog.tables[0], dt.date(2024, 3, 31), clients=clients)


def test_an_unreachable_s3_endpoint_is_reported(events_db, lake_env):
    from weward_pipeline.export import AwsClients

    settings = make_settings({**lake_env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}"}, events_db)
    catalog = make_catalog(events_table())
    clients = AwsClients.from_settings(settings)
    clients.s3.meta.config.retries = {"max_attempts": 1}
    with pytest.raises(ExportError, match="cannot reach S3"):
        export_day(settings, catalog, catalog.tables[0], dt.date(2024, 3, 31), clients=clients)


# -- gentle on production ---------------------------------------------------------------------


def test_the_read_is_read_only_named_time_limited_and_takes_only_access_share_locks(events_db):
    catalog = make_catalog(events_table())
    window = DayWindow(dt.date(2024, 3, 31), "Europe/Paris")
    with Extraction(
        events_db, catalog.tables[0], window, ExtractLimits(statement_timeout_s=600, lock_timeout_s=3)
    ) as extraction:
        assert extraction.source_rows == 4
        with psycopg.connect(events_db) as observer:
            pid, state = observer.execute(
                "SELECT pid, state FROM pg_stat_activity WHERE application_name = %s",
                (extraction.application_name,),
            ).fetchone()
            locks = observer.execute(
                "SELECT DISTINCT mode FROM pg_locks WHERE pid = %s AND locktype = 'relation'", (pid,)
            ).fetchall()
        settings = {
            name: extraction._scalar(f"SELECT current_setting('{name}')")
            for name in (
                "transaction_read_only",
                "transaction_isolation",
                "statement_timeout",
                "lock_timeout",
                "idle_in_transaction_session_timeout",
            )
        }
        rows = sum(batch.num_rows for batch in extraction.batches())
    assert extraction.application_name == "weward-export events 2024-03-31"
    assert state == "idle in transaction"  # one transaction (one snapshot) for count and rows
    assert locks == [("AccessShareLock",)]
    assert settings == {
        "transaction_read_only": "on",
        "transaction_isolation": "repeatable read",
        "statement_timeout": "10min",
        "lock_timeout": "3s",
        "idle_in_transaction_session_timeout": "5min",
    }
    assert rows == 4


def test_rows_committed_during_the_read_are_not_half_included(events_db):
    """Count and rows come from one snapshot: a concurrent insert is in neither."""
    catalog = make_catalog(events_table())
    window = DayWindow(dt.date(2024, 3, 31), "Europe/Paris")
    with Extraction(events_db, catalog.tables[0], window) as extraction:
        with psycopg.connect(events_db, autocommit=True) as writer:
            writer.execute(
                "INSERT INTO events VALUES (200, '2024-03-31 10:00+02', '2024-03-31 10:00', '2024-03-31', 1, 'concurrent')"
            )
        rows = [r for b in extraction.batches() for r in b.column("id").to_pylist()]
    assert extraction.source_rows == len(rows) == 4 and 200 not in rows


def test_parquet_files_keep_microsecond_utc_timestamps_and_decimals(events_db, lake_env, clients):
    settings = make_settings(lake_env, events_db)
    catalog = make_catalog(events_table())
    result = export_day(settings, catalog, catalog.tables[0], dt.date(2024, 3, 31), clients=clients)
    schema = pq.read_schema(f"{settings.lake.bucket}/{result.objects[0].key}", filesystem=clients.filesystem)
    assert str(schema.field("created_at").type) == "timestamp[us, tz=UTC]"
    assert str(schema.field("amount").type) == "decimal128(10, 2)"
