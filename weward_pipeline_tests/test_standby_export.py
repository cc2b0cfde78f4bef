"""Exporting from a hot standby: a real PostgreSQL 15 streaming replica made by pg_basebackup -R.

The standby lags (replay paused) and cancels reads with recovery conflicts (the primary vacuums
row versions the export's snapshot needs, max_standby_streaming_delay set small): the export
waits for the day's end to be replayed, reads again in shorter reads, or fails once with the
settings that fix it, and never publishes a partial day.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading

import psycopg
import pytest
from psycopg import sql

from weward_pipeline.export import export_day
from weward_pipeline.extract import ExtractLimits
from weward_pipeline.failures import transient_reason
from weward_pipeline.glue import GlueCatalog
from weward_pipeline.standby import StandbyConflictError, StandbyLagging
from weward_pipeline_tests.conftest import make_catalog, make_settings

DAY = dt.date(2024, 3, 30)
ROWS = 2400  # one every 36 s over the day


@pytest.fixture
def replicated(standby_pair):
    """A fresh database on the primary with a day of events, replayed on the standby: (primary url, standby url)."""
    primary, standby = standby_pair
    name = f"t_{secrets.token_hex(5)}"
    url = primary.create_database(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, steps int, payload text)"
        )
        # ~2 KB of incompressible text a row (5 MB in all): more than the socket buffers hold, so a
        # slow reader keeps the server's COPY running, and the conflict cancels it mid-stream.
        conn.execute(
            """INSERT INTO events SELECT g, timestamptz '2024-03-30 00:00:00+00' + g * interval '36 s' - interval '1 s', g,
                               (SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 60) i)
                        FROM generate_series(1, %s) g""",
            (ROWS,),
        )
        # The app's own table: updated and vacuumed by the tests that force recovery conflicts.
        conn.execute("CREATE TABLE app_counters (id int PRIMARY KEY, n int) WITH (autovacuum_enabled = off)")
        conn.execute("INSERT INTO app_counters SELECT g, 0 FROM generate_series(1, 200) g")
    standby.wait_caught_up()
    yield url, standby.admin_url(name)
    standby.resume_replay()
    standby.set(max_standby_streaming_delay="30s")
    with psycopg.connect(primary.admin_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def catalog(source_table: str = "events"):
    return make_catalog(
        {
            "name": "events",
            "source_table": source_table,
            "mode": "append",
            "partition_column": "created_at",
            "primary_key": ["id"],
        },
        timezone="UTC",
    )


def published_rows(settings, clients) -> int | None:
    partition = GlueCatalog(clients.glue, settings.glue_database).get_partition("events", DAY.isoformat())
    return int(partition["Parameters"]["weward.rows"]) if partition else None


def lake_keys(settings, clients) -> list[str]:
    listed = clients.s3.list_objects_v2(Bucket=settings.lake.bucket)
    return [o["Key"] for o in listed.get("Contents", [])]


class Background:
    """`_run` in a thread for the duration of a `with` block."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


class AppWrites(Background):
    """The app writing on the primary while the test runs: commits keep the standby's replay clock moving."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                conn.execute("UPDATE app_counters SET n = n + 1 WHERE id = 1")
                self.stop.wait(0.05)


class ConflictMaker(Background):
    """Updates and vacuums the app's table on the primary in a loop, so that any standby snapshot older
    than the update conflicts with the replayed cleanup. `progress` stops it once the export reads again."""

    def __init__(self, primary_url: str) -> None:
        super().__init__()
        self.primary_url = primary_url
        self.error: BaseException | None = None

    def progress(self, message: str) -> None:
        if "reading again in shorter reads" in message:
            # Stopped before the next read takes its snapshot: what it updated committed before it,
            # so the cleanups still to be replayed cannot conflict with the next read.
            self.stop.set()
            self.thread.join()

    def _run(self) -> None:
        try:
            with psycopg.connect(self.primary_url, autocommit=True) as conn:
                while not self.stop.is_set():
                    conn.execute("UPDATE app_counters SET n = n + 1")
                    conn.execute("VACUUM app_counters")
                    self.stop.wait(0.02)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def test_an_export_from_a_caught_up_standby_publishes_the_day_and_says_where_it_read(replicated, lake_env, clients):
    primary_url, standby_url = replicated
    settings = make_settings(lake_env, standby_url)
    cat = catalog()
    with AppWrites(primary_url):
        result = export_day(settings, cat, cat.tables[0], DAY, clients=clients)
    assert result.rows == ROWS
    assert result.source["standby"] is True
    assert dt.datetime.fromisoformat(result.source["replayed_through"]) >= dt.datetime(
        2024, 3, 31, 0, 10, tzinfo=dt.UTC
    )
    assert result.source["recovery_conflicts"] == 0


def test_an_export_waits_until_a_lagging_standby_has_replayed_past_the_day_end_plus_the_margin(
    replicated, standby_pair, lake_env, clients
):
    primary_url, standby_url = replicated
    _, standby = standby_pair
    standby.pause_replay()
    with psycopg.connect(primary_url, autocommit=True) as conn:  # a late row of the day, not replayed yet
        conn.execute("INSERT INTO events VALUES (%s, '2024-03-30 23:59:59.5+00', 7, 'late')", (ROWS + 1,))
    # The margin puts "the day's end plus the margin" 3 s from now: the standby must replay past it.
    end = dt.datetime(2024, 3, 31, tzinfo=dt.UTC)
    margin = (dt.datetime.now(dt.UTC) - end).total_seconds() + 3
    limits = ExtractLimits(standby_margin_s=margin, standby_max_wait_s=60)
    waiting = threading.Event()

    def progress(message: str) -> None:
        if "waiting until it passes" in message:
            waiting.set()

    settings = make_settings(lake_env, standby_url)
    cat = catalog()
    outcome: dict = {}
    worker = threading.Thread(
        target=lambda: outcome.update(
            result=export_day(settings, cat, cat.tables[0], DAY, clients=clients, limits=limits, on_progress=progress)
        )
    )
    with AppWrites(primary_url):
        worker.start()
        assert waiting.wait(30), "the export did not wait for the standby"
        assert published_rows(settings, clients) is None  # nothing read or published while it waits
        standby.resume_replay()
        worker.join(60)
    result = outcome["result"]
    assert result.rows == ROWS + 1  # the late row, replayed only after the wait began, is in
    assert result.source["waited_s"] > 0


def test_an_export_gives_up_on_a_standby_lagging_past_its_budget_reads_nothing_and_is_retried_later(
    replicated, standby_pair, lake_env, clients
):
    primary_url, standby_url = replicated
    _, standby = standby_pair
    standby.pause_replay()
    with psycopg.connect(primary_url, autocommit=True) as conn:
        conn.execute("UPDATE app_counters SET n = n + 1 WHERE id = 1")
    end = dt.datetime(2024, 3, 31, tzinfo=dt.UTC)
    margin = (dt.datetime.now(dt.UTC) - end).total_seconds() + 3600
    settings = make_settings(lake_env, standby_url)
    cat = catalog()
    with pytest.raises(StandbyLagging) as failure:
        export_day(
            settings,
            cat,
            cat.tables[0],
            DAY,
            clients=clients,
            limits=ExtractLimits(standby_margin_s=margin, standby_max_wait_s=1.5),
        )
    message = str(failure.value)
    assert "has not yet replayed the primary past" in message and "paused" in message
    assert transient_reason(failure.value) is not None  # Dagster's retry policy tries again later
    assert published_rows(settings, clients) is None
    assert lake_keys(settings, clients) == []


def test_a_read_cancelled_by_a_recovery_conflict_is_read_again_in_shorter_reads_and_published_whole(
    replicated, standby_pair, lake_env, clients
):
    primary_url, standby_url = replicated
    _, standby = standby_pair
    standby.set(max_standby_streaming_delay="10ms")
    settings = make_settings(lake_env, standby_url)
    cat = catalog()
    # Reading slowly (small batches, 1000 rows/s) keeps the first read's COPY running ~2 s.
    limits = ExtractLimits(batch_bytes=64 * 1024, max_rows_per_second=1000)
    with ConflictMaker(primary_url) as maker:
        result = export_day(
            settings, cat, cat.tables[0], DAY, clients=clients, limits=limits, on_progress=maker.progress
        )
    assert maker.error is None
    assert result.source["recovery_conflicts"] == 1
    assert "recovery conflict" in result.source["conflicts"][0]
    assert result.source["reads"] == 8
    assert result.rows == ROWS
    # Nothing of the cancelled attempt is left: only this export's objects and manifest.
    assert all(result.export_id in key for key in lake_keys(settings, clients))


def test_an_export_whose_shortest_reads_are_cancelled_too_fails_once_naming_the_standby_settings(
    replicated, standby_pair, lake_env, clients
):
    primary_url, standby_url = replicated
    _, standby = standby_pair
    # A source the server is slow to produce (2 ms a row): even a 1/32 slice (75 rows) runs 0.15 s,
    # while cleanups replay every ~20 ms and the standby waits only 10 ms for a query.
    with psycopg.connect(primary_url, autocommit=True) as conn:
        conn.execute(
            "CREATE VIEW events_slow AS SELECT e.* FROM events e, LATERAL (SELECT pg_sleep(0.002 + 0 * e.id)) s"
        )
    standby.wait_caught_up()
    standby.set(max_standby_streaming_delay="10ms")
    settings = make_settings(lake_env, standby_url)
    cat = catalog("events_slow")
    with ConflictMaker(primary_url):
        with pytest.raises(StandbyConflictError) as failure:
            export_day(settings, cat, cat.tables[0], DAY, clients=clients)
    message = str(failure.value)
    assert "max_standby_streaming_delay" in message and "hot_standby_feedback" in message
    assert "32 slices" in message
    assert transient_reason(failure.value) is None  # fails once: the same settings would cancel a retry
    assert published_rows(settings, clients) is None
    assert lake_keys(settings, clients) == []
