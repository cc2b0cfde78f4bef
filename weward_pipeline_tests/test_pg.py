"""pg.py: every session the pipeline opens carries its limits, and lock conflicts are retried, boundedly."""

from __future__ import annotations

import psycopg
import pytest

from weward_pipeline import pg
from weward_pipeline.config import mask_url

LIMITS = pg.SessionLimits(statement_timeout_s=90, lock_timeout_s=0.25, idle_in_transaction_timeout_s=300)


@pytest.fixture
def counters(fresh_database):
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL)")
        conn.execute("INSERT INTO counters VALUES (1, 0)")
    return fresh_database


def settings_of(conn, *names: str) -> dict[str, str]:
    return {name: conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0] for name in names}


def test_a_session_holds_its_limits_and_its_name_for_every_statement(counters):
    with pg.connect(counters + "?options=-c%20work_mem%3D8MB", "weward-test counters 2024-03-31", LIMITS) as conn:
        assert settings_of(
            conn,
            "statement_timeout",
            "lock_timeout",
            "idle_in_transaction_session_timeout",
            "transaction_read_only",
            "application_name",
            "work_mem",
        ) == {
            "statement_timeout": "90s",
            "lock_timeout": "250ms",
            "idle_in_transaction_session_timeout": "5min",
            "transaction_read_only": "off",
            "application_name": "weward-test counters 2024-03-31",
            "work_mem": "8MB",  # the caller's own options are kept
        }
        with psycopg.connect(counters) as observer:
            assert (
                observer.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                    ("weward-test counters 2024-03-31",),
                ).fetchone()[0]
                == 1
            )


def test_a_read_only_session_reads_one_snapshot_with_pinned_text_forms_and_cannot_write(counters):
    limits = LIMITS.replace(read_only=True, isolation="repeatable read", settings=pg.PINNED_TEXT_FORMS)
    with pg.connect(counters, "weward-test read-only", limits, autocommit=False) as conn:
        assert settings_of(conn, "transaction_isolation", "DateStyle", "TimeZone") == {
            "transaction_isolation": "repeatable read",
            "DateStyle": "ISO, YMD",
            "TimeZone": "UTC",
        }
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("UPDATE counters SET n = n + 1")


def test_limits_that_would_mean_no_limit_are_named():
    assert pg.SessionLimits(0, 2, -1).problems() == [
        "statement_timeout_s must be > 0 (0 would mean no limit in PostgreSQL)",
        "idle_in_transaction_timeout_s must be > 0 (0 would mean no limit in PostgreSQL)",
    ]


def test_a_failed_connection_names_the_server_but_not_the_password(pg_server):
    url = f"postgresql://nobody:Hunter2-secret@127.0.0.1:{pg_server.port}/postgres"
    with pytest.raises(pg.ConnectError) as error:
        pg.connect(url, "weward-test", LIMITS.replace(connect_timeout_s=2), purpose="redaction")
    message = str(error.value)
    assert message.startswith(f"cannot connect to PostgreSQL at {mask_url(url)} for redaction: ")
    assert "Hunter2-secret" not in message


def test_a_lock_conflict_is_retried_with_a_doubling_backoff_until_the_lock_is_free(counters):
    policy = pg.RetryPolicy(retries=3, backoff_s=0.01)
    waits, retries = [], []
    with psycopg.connect(counters) as holder, pg.connect(counters, "weward-test retry", LIMITS) as conn:
        holder.execute("SELECT * FROM counters WHERE id = 1 FOR UPDATE")

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) == 2:
                holder.commit()  # the other transaction ends before the third try

        def update() -> int:
            with conn.transaction():
                return conn.execute("UPDATE counters SET n = n + 1 WHERE id = 1").rowcount

        assert pg.retry_on_lock(update, policy, sleep=sleep, on_retry=lambda n, e: retries.append((n, type(e)))) == 1
    assert waits == [0.01, 0.02]
    assert retries == [(1, psycopg.errors.LockNotAvailable), (2, psycopg.errors.LockNotAvailable)]


def test_after_the_last_retry_the_caller_gets_the_conflict_and_the_number_of_tries(counters):
    with psycopg.connect(counters) as holder, pg.connect(counters, "weward-test exhausted", LIMITS) as conn:
        holder.execute("SELECT * FROM counters WHERE id = 1 FOR UPDATE")

        def update() -> int:
            with conn.transaction():
                return conn.execute("UPDATE counters SET n = n + 1 WHERE id = 1").rowcount

        with pytest.raises(pg.LockRetriesExhausted) as exhausted:
            pg.retry_on_lock(update, pg.RetryPolicy(retries=1, backoff_s=0), sleep=lambda s: None)
    assert exhausted.value.attempts == 2
    assert isinstance(exhausted.value.error, psycopg.errors.LockNotAvailable)


def test_backoff_doubles_up_to_its_ceiling():
    policy = pg.RetryPolicy(backoff_s=1.0, max_backoff_s=10.0)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 10.0]
