"""Least privilege in PostgreSQL: what the export, redaction and erasure roles can and cannot do,
on the real server; and catalog (and role) names that try SQL injection."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets

import psycopg
import pytest
from psycopg import sql

from weward_pipeline import roles as roles_module
from weward_pipeline.config import ConfigError
from weward_pipeline.devstack import sample_data
from weward_pipeline.export import export_day
from weward_pipeline.extract import SourceError
from weward_pipeline.glue import GlueCatalog
from weward_pipeline.roles import PipelineRoles, drop_roles, ensure_roles, grant_catalog, print_sql
from weward_pipeline_tests.conftest import make_catalog, make_settings
from weward_pipeline_tests.lake_reader import read_table

DAY = dt.date(2024, 4, 1)
TABLES = (
    {
        "name": "step_events",
        "mode": "append",
        "partition_column": "created_at",
        "primary_key": ["id"],
        "retention_days": 30,
        "user_column": "user_id",
        "pii": {"user_id": "keep", "device_id": "drop"},
    },
    {
        "name": "users",
        "mode": "snapshot",
        "primary_key": ["id"],
        "user_column": "id",
        "pii": {"id": "keep", "email": "drop", "phone": "drop", "first_name": "drop", "public_id": "drop"},
    },
    {"name": "reward_offers", "mode": "snapshot", "primary_key": ["id"]},
)


@pytest.fixture
def app(fresh_database, pg_server):
    """A private sample database with the three pipeline roles granted on a three-table catalog."""
    sample_data.load(fresh_database, end_date=DAY, size=sample_data.SampleSize(users=40, days=1))
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE not_in_catalog (id int PRIMARY KEY, secret text)")
        conn.execute("INSERT INTO not_in_catalog VALUES (1, 'app-internal')")
    suffix = secrets.token_hex(3)
    pipeline_roles = PipelineRoles(
        export_role=f"weward_export_{suffix}",
        redact_role=f"weward_redact_{suffix}",
        erase_role=f"weward_erase_{suffix}",
    )
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

        exported = [
            "id",
            "user_id",
            "created_at",
            "step_date",
            "steps",
            "distance_m",
            "active_minutes",
            "source",
            "payload",
        ]
        fingerprint_sql = row_fingerprint_sql(exported, "t")
        pk, fingerprint = conn.execute(
            sql.SQL("SELECT id, {} FROM step_events t ORDER BY id LIMIT 1").format(fingerprint_sql)
        ).fetchone()
        deleted = conn.execute(
            sql.SQL("DELETE FROM step_events t WHERE id = ANY(%s) AND {} = %s").format(fingerprint_sql),
            ([pk], fingerprint),
        ).rowcount
        assert deleted == 1
        # erasure: by user column, in key-bounded batches
        deleted = conn.execute(
            "DELETE FROM users WHERE id IN (SELECT id FROM users WHERE id = ANY(%s) LIMIT 100)", ([3, 4],)
        ).rowcount
        assert deleted == 2
    with psycopg.connect(admin_url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 38
        assert conn.execute("SELECT count(*) FROM reward_offers").fetchone()[0] == 60


def test_erasure_role_deletes_users_rows_by_user_column_and_can_read_no_other_column(app, pg_server):
    admin_url, pipeline_roles, _ = app
    url = pipeline_roles.erase_url(admin_url)
    for statement in (
        # no other column, not even on a redacted table (the redaction role reads its exported columns)
        "SELECT steps FROM step_events",
        "SELECT created_at FROM step_events",
        "SELECT * FROM step_events",
        "SELECT email FROM users",
        "SELECT country FROM users",
        "SELECT * FROM users",
        "SELECT id FROM users WHERE country = 'FR'",  # a filter reads the column too
        "DELETE FROM users WHERE email LIKE '%@%'",
        # no write but DELETE, no DDL
        "UPDATE step_events SET user_id = 0 WHERE id = 1",
        "UPDATE users SET id = id",
        "INSERT INTO users (id) VALUES (100000)",
        "INSERT INTO step_events (id, user_id, created_at, step_date, steps, source) VALUES (1e9, 1, now(), now(), 1, 'manual')",
        "TRUNCATE step_events",
        "TRUNCATE users",
        "ALTER TABLE users ADD COLUMN x int",
        "DROP TABLE step_events",
        "CREATE TABLE public.mine (id int)",
        # tables without a user_column, or outside the catalog: nothing
        "SELECT id FROM reward_offers",
        "DELETE FROM reward_offers",
        "DELETE FROM not_in_catalog",
        "SELECT * FROM not_in_catalog",
    ):
        assert denied(url, statement) == "InsufficientPrivilege", statement
    with psycopg.connect(admin_url) as conn:
        theirs = conn.execute("SELECT count(*) FROM step_events WHERE user_id = ANY(%s)", ([5, 6],)).fetchone()[0]
        assert theirs > 4  # two batches of 4 at most
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "off"
        # erasure.py's statements: its dry run's count, then key-bounded batches by the user column
        assert (
            conn.execute("SELECT count(*) FROM step_events WHERE user_id = ANY(%s)", ([5, 6],)).fetchone()[0] == theirs
        )
        deleted = conn.execute(
            "DELETE FROM step_events WHERE (id) IN (SELECT id FROM step_events WHERE user_id = ANY(%s) LIMIT 4)",
            ([5, 6],),
        ).rowcount
        while batch := conn.execute(
            "DELETE FROM step_events WHERE (id) IN (SELECT id FROM step_events WHERE user_id = ANY(%s) LIMIT 4)",
            ([5, 6],),
        ).rowcount:
            deleted += batch
        assert deleted == theirs
        assert (
            conn.execute(
                "DELETE FROM users WHERE (id) IN (SELECT id FROM users WHERE id = ANY(%s) LIMIT 4)", ([5, 6],)
            ).rowcount
            == 2
        )
    with psycopg.connect(admin_url) as conn:
        assert conn.execute("SELECT count(*) FROM step_events").fetchone()[0] == 120 - theirs
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 38
        assert conn.execute("SELECT count(*) FROM reward_offers").fetchone()[0] == 60
    with psycopg.connect(pg_server.admin_url()) as conn:
        assert (
            conn.execute(
                "SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (pipeline_roles.erase_role,)
            ).fetchone()[0]
            == roles_module.ERASE_CONNECTION_LIMIT
        )


def test_erase_postgres_deletes_through_the_erasure_role_and_names_a_missing_grant(
    app, lake_env, clients, tmp_path, monkeypatch, capsys
):
    """`weward-pipeline erase --postgres` with the environment the local stack hands out. The
    redaction role loses its DELETE first: the rows can only go through the erasure role."""
    from weward_pipeline import cli

    admin_url, pipeline_roles, catalog = app
    for table in ("step_events", "users"):  # the users' snapshot is taken just after the day ends
        export_day(
            make_settings(lake_env, pipeline_roles.export_url(admin_url)),
            catalog,
            catalog.table(table),
            DAY,
            clients=clients,
            now=dt.datetime(2024, 4, 2, 1, tzinfo=dt.UTC),
        )
    catalog_file = tmp_path / "tables.yaml"
    catalog_file.write_text(
        json.dumps({"start_date": "2024-01-01", "timezone": "Europe/Paris", "tables": list(TABLES)})
    )
    env = {
        "WEWARD_TABLES_FILE": str(catalog_file),
        "WEWARD_PG_URL": pipeline_roles.export_url(admin_url),
        "WEWARD_PG_REDACT_URL": pipeline_roles.redact_url(admin_url),
        "WEWARD_PG_ERASE_URL": pipeline_roles.erase_url(admin_url),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    request = tmp_path / "ticket.txt"
    request.write_text("8\n9\n")
    with psycopg.connect(admin_url) as conn:
        theirs = conn.execute("SELECT count(*) FROM step_events WHERE user_id = ANY(%s)", ([8, 9],)).fetchone()[0]
    assert theirs > 0
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("REVOKE DELETE ON step_events, users FROM {}").format(sql.Identifier(pipeline_roles.redact_role))
        )
        conn.execute(sql.SQL("REVOKE DELETE ON users FROM {}").format(sql.Identifier(pipeline_roles.erase_role)))
    # A DBA forgot a grant: one line naming the table, the role (masked) and where the grants are.
    assert cli.main(["erase", "--ids-file", str(request), "--postgres"]) == 2
    error = capsys.readouterr().err
    assert "table users: the erasure role (postgresql://weward_erase_" in error and "roles-sql" in error, error
    assert pipeline_roles.erase_password not in error and "Traceback" not in error
    with psycopg.connect(admin_url) as conn:  # step_events came first: done, in PostgreSQL and in the lake
        assert conn.execute("SELECT count(*) FROM step_events WHERE user_id = ANY(%s)", ([8, 9],)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 40
    glue = GlueCatalog(clients.glue, lake_env["WEWARD_GLUE_DATABASE"])
    rows = read_table(glue, clients.filesystem, "step_events")
    assert rows.num_rows == 120 - theirs and not set(rows.column("user_id").to_pylist()) & {8, 9}
    # Granted again (what `roles-sql` prints), the re-run finishes the erasure.
    grant_catalog(admin_url, catalog, pipeline_roles)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("REVOKE DELETE ON step_events, users FROM {}").format(sql.Identifier(pipeline_roles.redact_role))
        )
    assert cli.main(["erase", "--ids-file", str(request), "--postgres", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "completed" and report["rows_erased"] == 2  # the users' snapshot rows
    assert {t["table"]: t["postgres_rows_deleted"] for t in report["tables"]} == {"step_events": 0, "users": 2}
    with psycopg.connect(admin_url) as conn:
        for table, column in (("step_events", "user_id"), ("users", "id")):
            assert conn.execute(f"SELECT count(*) FROM {table} WHERE {column} = ANY(%s)", ([8, 9],)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 38
    rows = read_table(glue, clients.filesystem, "users")
    assert rows.num_rows == 38 and not set(rows.column("id").to_pylist()) & {8, 9}


def test_role_passwords_are_stored_as_scram_verifiers_and_the_urls_work(app, pg_server):
    admin_url, pipeline_roles, _ = app
    with psycopg.connect(pg_server.admin_url()) as conn:
        stored = conn.execute(
            "SELECT rolname, rolpassword, rolsuper, rolcreaterole, rolcreatedb FROM pg_authid WHERE rolname = ANY(%s)",
            (pipeline_roles.names,),
        ).fetchall()
    assert len(stored) == 3
    for _, password, *powers in stored:
        assert password.startswith("SCRAM-SHA-256$") and not any(powers)
        for plain in (pipeline_roles.export_password, pipeline_roles.redact_password, pipeline_roles.erase_password):
            assert plain not in password
    assert "password" not in repr(pipeline_roles)
    assert not [
        p
        for p in (pipeline_roles.export_password, pipeline_roles.redact_password, pipeline_roles.erase_password)
        if p in repr(pipeline_roles)
    ]
    for url in (
        pipeline_roles.export_url(admin_url),
        pipeline_roles.redact_url(admin_url),
        pipeline_roles.erase_url(admin_url),
    ):
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] in pipeline_roles.names
    ensure_roles(pg_server.admin_url(), pipeline_roles)  # idempotent: a second `stack up` keeps working


def test_the_grants_a_dba_reviews_are_the_ones_the_stack_runs(app):
    admin_url, pipeline_roles, catalog = app
    text = print_sql(catalog, "weward_app", pipeline_roles)
    assert f'GRANT SELECT ON "public"."step_events" TO "{pipeline_roles.export_role}";' in text
    assert f'GRANT SELECT ON "public"."step_events" TO "{pipeline_roles.redact_role}";' in text
    assert f'GRANT DELETE ON "public"."step_events" TO "{pipeline_roles.redact_role}";' in text
    assert f'GRANT SELECT ("id") ON "public"."users" TO "{pipeline_roles.redact_role}";' in text
    assert 'reward_offers" TO "' + pipeline_roles.redact_role not in text
    # The erasure role: key and user columns and DELETE on every table with a user_column, even a
    # redacted one (whose whole exported row the redaction role reads); nothing on the others.
    erase = pipeline_roles.erase_role
    assert f'GRANT SELECT ("id", "user_id") ON "public"."step_events" TO "{erase}";' in text
    assert f'GRANT DELETE ON "public"."step_events" TO "{erase}";' in text
    assert f'GRANT SELECT ("id") ON "public"."users" TO "{erase}";' in text
    assert f'GRANT DELETE ON "public"."users" TO "{erase}";' in text
    assert [
        line
        for line in text.splitlines()
        if line.startswith("GRANT")
        and f'TO "{erase}"' in line
        and "ON DATABASE" not in line
        and "ON SCHEMA" not in line
    ] == [
        f'GRANT SELECT ("id", "user_id") ON "public"."step_events" TO "{erase}";',
        f'GRANT DELETE ON "public"."step_events" TO "{erase}";',
        f'GRANT SELECT ("id") ON "public"."users" TO "{erase}";',
        f'GRANT DELETE ON "public"."users" TO "{erase}";',
    ]
    assert f'CREATE ROLE "{erase}" LOGIN NOINHERIT CONNECTION LIMIT {roles_module.ERASE_CONNECTION_LIMIT};' in text
    assert pipeline_roles.export_password not in text
    with psycopg.connect(admin_url) as conn:
        by_column = print_sql(catalog, "weward_app", pipeline_roles, lambda t: roles_module.table_columns(conn, t))
    users_grant = next(
        line
        for line in by_column.splitlines()
        if line.startswith("GRANT SELECT (") and '"users" TO "weward_export' in line
    )
    assert '"country"' in users_grant and '"phone"' not in users_grant and '"email"' not in users_grant


def test_the_local_stack_hands_out_the_roles_never_the_superuser(tmp_path):
    from weward_pipeline.devstack.stack import LocalStack

    stack = LocalStack(tmp_path / "stack")
    stack.state.export_password, stack.state.redact_password, stack.state.pii_key = "e" * 24, "r" * 24, "k" * 48
    stack.state.erase_password = "x" * 24
    stack.postgres.port, stack.postgres.admin_password = 5999, "admin-secret"
    env = stack.env()
    assert env["WEWARD_PG_URL"].startswith("postgresql://weward_export:eeee")
    assert env["WEWARD_PG_REDACT_URL"].startswith("postgresql://weward_redact:rrrr")
    assert env["WEWARD_PG_ERASE_URL"].startswith(
        "postgresql://weward_erase:xxxx"
    )  # erasure deletes through its own role
    assert "admin-secret" not in str(env) and env["WEWARD_PII_KEY"] == "k" * 48
    # A stack whose state file predates the erasure role still loads (its role is made on the next `stack up`).
    stack._save()
    state = json.loads(stack.state_file.read_text())
    del state["erase_password"]
    stack.state_file.write_text(json.dumps(state))
    assert LocalStack(tmp_path / "stack").state.erase_password == ""


# -- SQL injection through catalog names ------------------------------------------------------------


def test_names_that_try_injection_are_rejected_or_quoted(app, lake_env, clients, pg_server):
    admin_url, pipeline_roles, _ = app
    with pytest.raises(ConfigError, match="must match"):
        make_catalog({"name": "users; DROP TABLE users; --", "mode": "snapshot", "primary_key": ["id"]})
    evil = 'steps"; DROP TABLE users; --'
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, {} timestamptz, {} bigint)").format(
                sql.Identifier(evil), sql.Identifier("at'; DELETE FROM users; --"), sql.Identifier("who) OR (1=1")
            )
        )
        conn.execute(sql.SQL("INSERT INTO {} VALUES (1, '2024-04-01 12:00+02', 7)").format(sql.Identifier(evil)))
    catalog = make_catalog(
        {
            "name": "evil_steps",
            "source_table": evil,
            "mode": "append",
            "partition_column": "at'; DELETE FROM users; --",
            "primary_key": ["id"],
            "user_column": "who) OR (1=1",
            "pii": {"who) OR (1=1": "hash"},
            "retention_days": 3,
        }
    )
    # An erasure role whose name is an injection attempt too: created, granted and used, quoted.
    evil_roles = dataclasses.replace(pipeline_roles, erase_role='weward_erase"; DROP TABLE users; --')
    ensure_roles(pg_server.admin_url(), evil_roles)
    grant_catalog(admin_url, catalog, evil_roles)
    printed = print_sql(catalog, "weward_app", evil_roles)
    assert (
        'GRANT SELECT ("id", "who) OR (1=1") ON "public"."steps""; DROP TABLE users; --" '
        'TO "weward_erase""; DROP TABLE users; --";'
    ) in printed
    from weward_pipeline.secret_store import PiiKey

    result = export_day(
        make_settings(lake_env, pipeline_roles.export_url(admin_url)),
        catalog,
        catalog.tables[0],
        DAY,
        clients=clients,
        pii_key=PiiKey(b"k" * 40, "test"),
    )
    assert result.rows == 1
    # Erasure quotes the same names, in the lake and in its PostgreSQL deletes (erasure role).
    from weward_pipeline.erasure import erase_users

    try:
        settings = make_settings(
            {**lake_env, "WEWARD_PG_ERASE_URL": evil_roles.erase_url(admin_url)}, pipeline_roles.export_url(admin_url)
        )
        report = erase_users(
            settings, catalog, ["7"], clients=clients, pii_key=PiiKey(b"k" * 40, "test"), delete_from_postgres=True
        )
        assert report.ok and report.rows_erased == 1 and report.tables[0].postgres_rows_deleted == 1
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(evil_roles.erase_role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(evil_roles.erase_role)))
    # A source name that is an injection attempt is just a table that does not exist.
    catalog = make_catalog(
        {"name": "users2", "source_table": "users; DROP TABLE users", "mode": "snapshot", "primary_key": ["id"]}
    )
    with pytest.raises(SourceError, match="PostgreSQL has no table public.users; DROP TABLE users"):
        export_day(
            make_settings(lake_env, admin_url),
            catalog,
            catalog.tables[0],
            DAY,
            clients=clients,
            now=dt.datetime(2024, 4, 2, 1, tzinfo=dt.UTC),
        )
    with psycopg.connect(admin_url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 40
    assert roles_module.redaction_access(catalog.tables[0]) is None
