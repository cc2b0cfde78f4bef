"""Least privilege in PostgreSQL: what the export and redaction roles can and cannot do, on the
real server; and catalog names that try SQL injection."""

from __future__ import annotations

import datetime as dt
import secrets

import psycopg
import pytest
from psycopg import sql

from weward_pipeline.config import ConfigError
from weward_pipeline import roles as roles_module
from weward_pipeline.devstack import sample_data
from weward_pipeline.roles import PipelineRoles, drop_roles, ensure_roles, grant_catalog, print_sql
from weward_pipeline.export import export_day
from weward_pipeline.extract import SourceError
from weward_pipeline.glue import GlueCatalog
from weward_pipeline_tests.conftest import make_catalog, make_settings
from weward_pipeline_tests.lake_reader import read_table

DAY = dt.date(2024, 4, 1)
TABLES = (
    {"name": "step_events", "mode": "append", "partition_column": "created_at", "primary_key": ["id"],
     "retention_days": 30, "user_column": "user_id", "pii": {"user_id": "keep", "device_id": "drop"}},
    {"name": "users", "mode": "snapshot", "primary_key": ["id"], "user_column": "id",
     "pii": {"id": "keep", "email": "drop", "phone": "drop", "first_name": "drop", "public_id": "drop"}},
    {"name": "reward_offers", "mode": "snapshot", "primary_key": ["id"]},
)


@pytest.fixture
def app(fresh_database, pg_server):
    """A private sample database with the two pipeline roles granted on a three-table catalog."""
    sample_data.load(fresh_database, end_date=DAY, size=sample_data.SampleSize(users=40, days=1))
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE not_in_catalog (id int PRIMARY KEY, secret text)")
        conn.execute("INSERT INTO not_in_catalog VALUES (1, 'app-internal')")
    suffix = secrets.token_hex(3)
    pipeline_roles = PipelineRoles(export_role=f"weward_export_{suffix}", redact_role=f"weward_redact_{suffix}")
    catalog = make_catalog(*TABLES)
    ensure_roles(pg_server.admin_url(), pipeline_roles)
    assert grant_catalog(fresh_database, catalog, pipeline_roles) == []
    yield fresh_database, pipeline_roles, catalog
    drop_roles(pg_server.admin_url(), pipeline_roles, [fresh_database.rsplit("/", 1)[1]])


def denied(url: str, statement: str, writable: bool = True) -> str:
    """Run `statement` as the role of `url`; return the error class name (the test expects one).

    `writable` switches the role's read-only default off first: the privileges alone must say no."""
    with psycopg.connect(url, autocommit=True) as conn:
        if writable:
            conn.execute("SET default_transaction_read_only = off")
        try:
            conn.execute(statement)
        except psycopg.Error as exc:
            return type(exc).__name__
    return "allowed"


def test_export_role_reads_the_catalog_tables_and_exports(app, lake_env, clients):
    admin_url, pipeline_roles, catalog = app
    url = pipeline_roles.export_url(admin_url)
    settings = make_settings(lake_env, url)
    result = export_day(settings, catalog, catalog.table("step_events"), DAY, clients=clients)
    assert result.rows == 120  # 40 users x 3 syncs
    rows = read_table(GlueCatalog(clients.glue, settings.glue_database), clients.filesystem, "step_events")
    assert rows.num_rows == 120 and "device_id" not in rows.column_names


def test_export_role_cannot_delete_or_change_anything(app):
    admin_url, pipeline_roles, _ = app
    url = pipeline_roles.export_url(admin_url)
    with psycopg.connect(url) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
    assert denied(url, "DELETE FROM step_events WHERE id = 1", writable=False) == "ReadOnlySqlTransaction"
    # Even with read-only switched off for the session, the privileges say no.
    for statement in (
        "DELETE FROM step_events WHERE id = 1",
        "UPDATE users SET email = 'x' WHERE id = 1",
        "INSERT INTO reward_offers (id, partner, title, cost_wards, active, created_at) VALUES (999, 'p', 't', 1, true, now())",
        "TRUNCATE step_events",
        "ALTER TABLE users ADD COLUMN x int",
        "DROP TABLE users",
        "CREATE TABLE public.mine (id int)",
        "SELECT * FROM not_in_catalog",
        "SELECT phone FROM users",  # dropped by the catalog: never exported, so never granted
        "SELECT * FROM users",
        "SELECT device_id FROM step_events",
    ):
        assert denied(url, statement) == "InsufficientPrivilege", statement
    with psycopg.connect(admin_url) as conn:
        assert conn.execute("SELECT count(*) FROM step_events").fetchone()[0] == 120
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*), count(country) FROM users").fetchone() == (40, 40)


def test_redaction_role_cannot_alter_tables_and_deletes_only_where_configured(app):
    admin_url, pipeline_roles, _ = app
    url = pipeline_roles.redact_url(admin_url)
    for statement in (
        "ALTER TABLE step_events ADD COLUMN x int",
        "ALTER TABLE users DROP COLUMN email",
        "DROP TABLE step_events",
        "TRUNCATE step_events",
        "UPDATE step_events SET steps = 0",
        "INSERT INTO step_events (id, user_id, created_at, step_date, steps, source) VALUES (1e9, 1, now(), now(), 1, 'manual')",
        "CREATE TABLE public.mine (id int)",
        "SELECT email FROM users",  # erasure-only table: key and user columns, nothing else
        "SELECT * FROM users",
        "SELECT device_id FROM step_events",  # dropped by the catalog
        "SELECT id FROM reward_offers",  # not redacted, not erasable: no access at all
        "DELETE FROM reward_offers",
        "DELETE FROM not_in_catalog",
    ):
        assert denied(url, statement) == "InsufficientPrivilege", statement
    with psycopg.connect(url, autocommit=True) as conn:
        # redaction: key + fingerprint of the exported columns, inside the DELETE itself
        from weward_pipeline.extract import row_fingerprint_sql

        exported = ["id", "user_id", "created_at", "step_date", "steps", "distance_m", "active_minutes", "source", "payload"]
        fingerprint_sql = row_fingerprint_sql(exported, "t")
        pk, fingerprint = conn.execute(sql.SQL("SELECT id, {} FROM step_events t ORDER BY id LIMIT 1").format(
            fingerprint_sql)).fetchone()
        deleted = conn.execute(sql.SQL("DELETE FROM step_events t WHERE id = ANY(%s) AND {} = %s").format(
            fingerprint_sql), ([pk], fingerprint)).rowcount
        assert deleted == 1
        # erasure: by user column, in key-bounded batches
        deleted = conn.execute("DELETE FROM users WHERE id IN (SELECT id FROM users WHERE id = ANY(%s) LIMIT 100)",
                               ([3, 4],)).rowcount
        assert deleted == 2
    with psycopg.connect(admin_url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 38
        assert conn.execute("SELECT count(*) FROM reward_offers").fetchone()[0] == 60


def test_role_passwords_are_stored_as_scram_verifiers_and_the_urls_work(app, pg_server):
    admin_url, pipeline_roles, _ = app
    with psycopg.connect(pg_server.admin_url()) as conn:
        stored = conn.execute("SELECT rolname, rolpassword, rolsuper, rolcreaterole, rolcreatedb FROM pg_authid "
                              "WHERE rolname = ANY(%s)", ([pipeline_roles.export_role, pipeline_roles.redact_role],)).fetchall()
    assert len(stored) == 2
    for _, password, *powers in stored:
        assert password.startswith("SCRAM-SHA-256$") and not any(powers)
        assert pipeline_roles.export_password not in password and pipeline_roles.redact_password not in password
    assert "password" not in repr(pipeline_roles) and pipeline_roles.export_password not in repr(pipeline_roles)
    ensure_roles(pg_server.admin_url(), pipeline_roles)  # idempotent: a second `stack up` keeps working


def test_the_grants_a_dba_reviews_are_the_ones_the_stack_runs(app):
    admin_url, pipeline_roles, catalog = app
    text = print_sql(catalog, "weward_app", pipeline_roles)
    assert f'GRANT SELECT ON "public"."step_events" TO "{pipeline_roles.export_role}";' in text
    assert f'GRANT SELECT ON "public"."step_events" TO "{pipeline_roles.redact_role}";' in text
    assert f'GRANT DELETE ON "public"."step_events" TO "{pipeline_roles.redact_role}";' in text
    assert f'GRANT SELECT ("id") ON "public"."users" TO "{pipeline_roles.redact_role}";' in text
    assert "reward_offers\" TO \"" + pipeline_roles.redact_role not in text
    assert pipeline_roles.export_password not in text
    with psycopg.connect(admin_url) as conn:
        by_column = print_sql(catalog, "weward_app", pipeline_roles, lambda t: roles_module.table_columns(conn, t))
    users_grant = next(line for line in by_column.splitlines()
                       if line.startswith("GRANT SELECT (") and '"users" TO "weward_export' in line)
    assert '"country"' in users_grant and '"phone"' not in users_grant and '"email"' not in users_grant


def test_the_local_stack_hands_out_the_roles_never_the_superuser(tmp_path):
    from weward_pipeline.devstack.stack import LocalStack

    stack = LocalStack(tmp_path / "stack")
    stack.state.export_password, stack.state.redact_password, stack.state.pii_key = "e" * 24, "r" * 24, "k" * 48
    stack.postgres.port, stack.postgres.admin_password = 5999, "admin-secret"
    env = stack.env()
    assert env["WEWARD_PG_URL"].startswith("postgresql://weward_export:eeee")
    assert env["WEWARD_PG_REDACT_URL"].startswith("postgresql://weward_redact:rrrr")
    assert "admin-secret" not in str(env) and env["WEWARD_PII_KEY"] == "k" * 48


# -- SQL injection through catalog names ------------------------------------------------------------

def test_names_that_try_injection_are_rejected_or_quoted(app, lake_env, clients):
    admin_url, pipeline_roles, _ = app
    with pytest.raises(ConfigError, match="must match"):
        make_catalog({"name": "users; DROP TABLE users; --", "mode": "snapshot", "primary_key": ["id"]})
    evil = 'steps"; DROP TABLE users; --'
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, {} timestamptz, {} bigint)").format(
            sql.Identifier(evil), sql.Identifier("at'; DELETE FROM users; --"), sql.Identifier("who) OR (1=1")))
        conn.execute(sql.SQL("INSERT INTO {} VALUES (1, '2024-04-01 12:00+02', 7)").format(sql.Identifier(evil)))
    catalog = make_catalog({
        "name": "evil_steps", "source_table": evil, "mode": "append", "partition_column": "at'; DELETE FROM users; --",
        "primary_key": ["id"], "user_column": "who) OR (1=1", "pii": {"who) OR (1=1": "hash"}, "retention_days": 3,
    })
    grant_catalog(admin_url, catalog, pipeline_roles)
    from weward_pipeline.secret_store import PiiKey

    result = export_day(make_settings(lake_env, pipeline_roles.export_url(admin_url)), catalog, catalog.tables[0], DAY,
                        clients=clients, pii_key=PiiKey(b"k" * 40, "test"))
    assert result.rows == 1
    # Erasure quotes the same names, in the lake and in its PostgreSQL deletes (redaction role).
    from weward_pipeline.erasure import erase_users

    settings = make_settings({**lake_env, "WEWARD_PG_REDACT_URL": pipeline_roles.redact_url(admin_url)}, admin_url)
    report = erase_users(settings, catalog, ["7"], clients=clients, pii_key=PiiKey(b"k" * 40, "test"),
                         delete_from_postgres=True)
    assert report.ok and report.rows_erased == 1 and report.tables[0].postgres_rows_deleted == 1
    # A source name that is an injection attempt is just a table that does not exist.
    catalog = make_catalog({"name": "users2", "source_table": "users; DROP TABLE users", "mode": "snapshot",
                            "primary_key": ["id"]})
    with pytest.raises(SourceError, match="PostgreSQL has no table public.users; DROP TABLE users"):
        export_day(make_settings(lake_env, admin_url), catalog, catalog.tables[0], DAY, clients=clients,
                   now=dt.datetime(2024, 4, 2, 1, tzinfo=dt.timezone.utc))
    with psycopg.connect(admin_url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 40
    assert roles_module.redaction_access(catalog.tables[0]) is None
