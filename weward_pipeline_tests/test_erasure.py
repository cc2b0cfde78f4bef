"""Right to erasure, end to end on the real PostgreSQL server and the S3/Glue endpoint with bucket
versioning on: exact rows left everywhere, every object version checked, audit without ids,
idempotent, resumable after a failure at any step."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import json

import psycopg
import pyarrow.parquet as pq
import pytest

from weward_pipeline import cli, erasure, lake
from weward_pipeline.config import ConfigError
from weward_pipeline.devstack import sample_data
from weward_pipeline.erasure import ErasureError, erase_users
from weward_pipeline.export import export_day
from weward_pipeline.glue import GlueCatalog
from weward_pipeline.redact import redact_day
from weward_pipeline.roles import PipelineRoles, drop_roles, ensure_roles, grant_catalog
from weward_pipeline.secret_store import PiiKey
from weward_pipeline.verify import published_manifest, verify_published_day
from weward_pipeline_tests.conftest import make_catalog, make_settings
from weward_pipeline_tests.lake_reader import read_table

KEY = "erasure-test-pii-key-0123456789-abcdefghijklmnop"
PII_KEY = PiiKey(KEY.encode(), "test")
DAYS = [dt.date(2024, 3, 31), dt.date(2024, 4, 1)]
AFTER = dt.datetime(2024, 4, 2, 1, 0, tzinfo=dt.UTC)
ERASED = ["3", "7"]
TABLES = (
    # retention: has redaction keys objects that must stay row-aligned with the data
    {
        "name": "step_events",
        "mode": "append",
        "partition_column": "created_at",
        "primary_key": ["id"],
        "retention_days": 30,
        "user_column": "user_id",
        "pii": {"user_id": "keep", "device_id": "drop"},
    },
    # pseudonymized user column: erasure must hash the requested ids with the same key
    {
        "name": "ward_transactions",
        "mode": "append",
        "partition_column": "created_at",
        "primary_key": ["id"],
        "user_column": "user_id",
        "pii": {"user_id": "hash"},
    },
    {
        "name": "users",
        "mode": "snapshot",
        "primary_key": ["id"],
        "user_column": "id",
        "pii": {"id": "keep", "email": "hash", "phone": "drop", "first_name": "drop"},
    },
    {"name": "reward_offers", "mode": "snapshot", "primary_key": ["id"]},  # no user column: untouched
)


def pseudonym(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def belongs_to_erased(table: str, row: dict) -> bool:
    if table == "reward_offers":
        return False
    if table == "ward_transactions":
        return row["user_id"] in {pseudonym(u) for u in ERASED}
    return str(row["user_id" if table == "step_events" else "id"]) in ERASED


@pytest.fixture
def app_db(fresh_database):
    sample_data.load(fresh_database, end_date=DAYS[-1], size=sample_data.SampleSize(users=30, days=2))
    return fresh_database


@pytest.fixture
def exported(app_db, lake_env, clients):
    """Two days of the append tables, one of the snapshots; step_events day 1 exported twice, so the
    versioned bucket holds a superseded (noncurrent) export with the users' rows too."""
    settings = make_settings(lake_env, app_db)
    catalog = make_catalog(*TABLES)
    for day in DAYS:
        for name in ("step_events", "ward_transactions"):
            export_day(settings, catalog, catalog.table(name), day, clients=clients, pii_key=PII_KEY)
    export_day(settings, catalog, catalog.table("step_events"), DAYS[0], clients=clients, pii_key=PII_KEY)
    for name in ("users", "reward_offers"):
        export_day(settings, catalog, catalog.table(name), DAYS[-1], clients=clients, pii_key=PII_KEY, now=AFTER)
    return settings, catalog


def lake_rows(clients, settings, table: str) -> list[dict]:
    rows = read_table(GlueCatalog(clients.glue, settings.glue_database), clients.filesystem, table).to_pylist()
    return sorted(rows, key=lambda r: (r["dt"], r["id"]))


def snapshot(clients, settings) -> dict[str, list[dict]]:
    return {t["name"]: lake_rows(clients, settings, t["name"]) for t in TABLES}


def every_stored_version(clients, settings) -> list[tuple[str, str, bytes]]:
    s3, bucket = clients.s3, settings.lake.bucket
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            body = s3.get_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])["Body"].read()
            out.append((version["Key"], version["VersionId"], body))
    return out


def versions_holding_erased(clients, settings, erased_step_ids: set[int]) -> list[str]:
    """Every stored version of every object: data files by user column, keys files by primary key."""
    found = []
    for key, version, body in every_stored_version(clients, settings):
        if not key.endswith(".parquet"):
            continue
        table = pq.read_table(io.BytesIO(body))
        if ".keys/" in key:
            if "step_events" in key and erased_step_ids & set(table.column("id").to_pylist()):
                found.append(f"{key}@{version}")
            continue
        name = key.split("/")[1]
        if any(belongs_to_erased(name, row) for row in table.to_pylist()):
            found.append(f"{key}@{version}")
    return found


def erased_step_ids(db: str) -> set[int]:
    with psycopg.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT id FROM step_events WHERE user_id = ANY(%s)", ([3, 7],))}


def test_erasure_removes_exactly_the_users_rows_from_every_day_and_every_version(exported, app_db, clients):
    settings, catalog = exported
    before = snapshot(clients, settings)
    glue = GlueCatalog(clients.glue, settings.glue_database)
    _, manifest_before = published_manifest(glue, clients.s3, "step_events", DAYS[0].isoformat())
    step_ids = erased_step_ids(app_db)
    assert versions_holding_erased(clients, settings, step_ids)  # the test data does hold them, also noncurrent
    expected = {name: [r for r in rows if not belongs_to_erased(name, r)] for name, rows in before.items()}
    erased_rows = sum(len(before[n]) - len(expected[n]) for n in before)
    assert erased_rows > 20

    report = erase_users(settings, catalog, ERASED, clients=clients, pii_key=PII_KEY)

    assert report.ok and report.status == "completed" and report.rows_erased == erased_rows
    assert snapshot(clients, settings) == expected  # all other rows identical; reward_offers untouched
    for table in ("step_events", "ward_transactions", "users"):
        for partition in glue.list_partitions(table):
            day = partition["Values"][0]
            assert verify_published_day(glue, clients.s3, clients.filesystem, table, day).passed(), (table, day)
            assert partition["Parameters"]["weward.erasure_id"] == report.erasure_id
    assert versions_holding_erased(clients, settings, step_ids) == []
    # Per-day report: before - erased = after, as published.
    for table in report.tables:
        for day in table.days:
            assert day.rows_after == day.rows_before - day.rows_erased
            assert glue.get_partition(table.table, day.day)["Parameters"]["weward.rows"] == str(day.rows_after)

    # The manifest records the lineage; the redaction keys lost exactly the erased rows.
    _, after = published_manifest(glue, clients.s3, "step_events", DAYS[0].isoformat())
    (entry,) = after.extra["erasures"]
    assert entry["erasure_id"] == report.erasure_id and entry["previous_export_id"] == manifest_before.export_id
    assert (
        after.rows == manifest_before.rows - entry["rows_erased"]
        and after.source_rows + after.carried_rows == after.rows
    )
    keys = after.extra["redaction_keys"]
    assert keys["rows"] == after.source_rows and sum(o["rows"] for o in keys["objects"]) == keys["rows"]
    assert all(
        o.key.startswith(lake.version_prefix(settings.lake, "step_events", DAYS[0], after.export_id))
        for o in after.objects
    )

    # Redaction still accepts the rewritten days: keys aligned with data, counts consistent.
    redaction = redact_day(
        settings,
        catalog,
        catalog.table("step_events"),
        DAYS[0],
        clients=clients,
        dry_run=True,
        now=AFTER + dt.timedelta(days=60),
    )
    remaining = [r for r in expected["step_events"] if r["dt"] == DAYS[0].isoformat()]
    assert redaction.rows_in_export == redaction.rows_would_delete == len(remaining)

    # The audit record says what happened, with no identifier of the users.
    audit = erasure.read_audit(clients.s3, settings.lake, report.erasure_id)
    assert audit["status"] == "completed" and audit["users"] == 2 and audit["rows_erased"] == erased_rows
    assert audit["request_digest"] == pseudonym("3\n7")
    assert {t["table"] for t in audit["tables"]} == {"step_events", "ward_transactions", "users"}
    text = json.dumps(audit)
    with psycopg.connect(app_db) as conn:
        emails = [r[0] for r in conn.execute("SELECT email FROM users WHERE id = ANY(%s)", ([3, 7],))]
    assert not any(e in text for e in emails) and pseudonym("3") not in text and pseudonym("7") not in text
    strings = []

    def walk(value):
        if isinstance(value, dict):
            [walk(v) for v in value.values()]
        elif isinstance(value, list):
            [walk(v) for v in value]
        elif isinstance(value, str):
            strings.append(value)

    walk(audit)
    assert not set(strings) & set(ERASED)
    # The rows are still in PostgreSQL (not asked): the report says how many a re-export would bring back.
    assert {t.table: t.postgres_rows_found > 0 for t in report.tables} == {
        "step_events": True,
        "ward_transactions": True,
        "users": True,
    }

    # Idempotent: a second run finds nothing and changes nothing.
    publications = {
        (p["Values"][0], t): p["Parameters"]["weward.export_id"]
        for t in ("step_events", "users")
        for p in glue.list_partitions(t)
    }
    again = erase_users(settings, catalog, ERASED, clients=clients, pii_key=PII_KEY)
    assert again.ok and again.rows_erased == 0 and all(t.versions_purged == 0 for t in again.tables)
    assert all(d.status == "clean" for t in again.tables for d in t.days)
    assert {
        (p["Values"][0], t): p["Parameters"]["weward.export_id"]
        for t in ("step_events", "users")
        for p in glue.list_partitions(t)
    } == publications


def test_dry_run_writes_nothing_and_bad_requests_say_why_without_echoing_ids(
    exported, clients, tmp_path, capsys, monkeypatch, app_db
):
    settings, catalog = exported
    stored = {(k, v) for k, v, _ in every_stored_version(clients, settings)}
    report = erase_users(settings, catalog, ERASED, clients=clients, pii_key=PII_KEY, dry_run=True)
    assert report.status == "dry_run" and not report.audit_url
    assert {(k, v) for k, v, _ in every_stored_version(clients, settings)} == stored
    before = snapshot(clients, settings)
    expected = sum(1 for name, rows in before.items() for r in rows if belongs_to_erased(name, r))
    assert report.rows_erased == expected
    assert all(d.status in ("would_erase", "clean") for t in report.tables for d in t.days)
    assert any(t.versions_with_users for t in report.tables)  # the superseded step_events export

    # The console script: ids from a file, never echoed; exit 0; still nothing written.
    catalog_file = tmp_path / "tables.yaml"
    catalog_file.write_text(
        json.dumps({"start_date": "2024-01-01", "timezone": "Europe/Paris", "tables": list(TABLES)})
    )
    for name, value in {
        "WEWARD_TABLES_FILE": str(catalog_file),
        "WEWARD_PG_URL": app_db,
        "WEWARD_PII_KEY": KEY,
    }.items():
        monkeypatch.setenv(name, value)
    request = tmp_path / "ticket.txt"
    request.write_text("# ticket 1234\n3\n7\n")
    assert cli.main(["erase", "--ids-file", str(request), "--dry-run"]) == 0
    out = capsys.readouterr()
    assert f"{expected} lake row(s) would be erased" in out.out and "(dry run" in out.err
    assert "would be erased" not in out.err, "the report is printed once, on stdout"
    assert cli.main(["erase", "--ids-file", str(request), "--dry-run", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["rows_erased"] == expected and json.loads(out.out)["status"] == "dry_run"
    assert {(k, v) for k, v, _ in every_stored_version(clients, settings)} == stored

    # A malformed request (an id that is not of a user column's type) is refused whole, before
    # anything is read for erasure or changed: exit 2 "bad request", not 1 "incomplete, re-run".
    request.write_text("3\nnot-a-number-42\n")
    for extra in ([], ["--postgres"]):
        assert cli.main(["erase", "--ids-file", str(request), "--tables", "step_events", *extra]) == 2
        out = capsys.readouterr()
        assert (
            "not-a-number-42" not in out.out + out.err and "id number 2 of the request is not a valid value" in out.err
        )
        assert out.out == "" and "erasure " not in out.err, "refused before the erasure started"
    assert {(k, v) for k, v, _ in every_stored_version(clients, settings)} == stored

    # --postgres with PostgreSQL down: one line, non-zero, before anything (not five warnings and 0).
    from weward_pipeline.devstack.processes import free_port

    request.write_text("3\n7\n")
    monkeypatch.setenv("WEWARD_PG_REDACT_URL", f"postgresql://weward_redact:s3cret-pw@127.0.0.1:{free_port()}/app")
    assert cli.main(["erase", "--ids-file", str(request), "--dry-run", "--postgres"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1 and "cannot connect to PostgreSQL" in out.err
    assert "s3cret-pw" not in out.err
    monkeypatch.delenv("WEWARD_PG_REDACT_URL")

    # Requests that cannot be carried out say why.
    with pytest.raises(ErasureError, match=r"unknown table\(s\) nope .*table\(s\) reward_offers without `user_column`"):
        erase_users(settings, catalog, ERASED, clients=clients, pii_key=PII_KEY, tables=["nope", "reward_offers"])
    with pytest.raises(ErasureError, match="id number 2 of the request is not a valid value") as refused:
        erase_users(
            settings, catalog, ["3", "not-a-number-42"], clients=clients, pii_key=PII_KEY, tables=["step_events"]
        )
    assert "not-a-number-42" not in str(refused.value)
    assert {(k, v) for k, v, _ in every_stored_version(clients, settings)} == stored  # no audit record either
    monkeypatch.delenv("WEWARD_PII_KEY", raising=False)
    with pytest.raises(ConfigError, match="no PII key .erasure of a pseudonymized user column"):
        erase_users(settings, catalog, ERASED, clients=clients, tables=["ward_transactions"])
    with pytest.raises(ErasureError, match="no user id"):
        erase_users(settings, catalog, ["", "# only a comment"], clients=clients, pii_key=PII_KEY)
    with pytest.raises(ConfigError, match="is not the key that pseudonymized"):
        erase_users(
            settings, catalog, ERASED, clients=clients, tables=["ward_transactions"], pii_key=PiiKey(b"x" * 40, "wrong")
        )
    assert repr(erasure.ErasureRequest.parse(["12345"])) == "ErasureRequest(1 user id(s))"


def test_delete_from_postgres_uses_the_redaction_role(exported, app_db, clients, pg_server, lake_env):
    """A deployment without WEWARD_PG_ERASE_URL erases through the redaction role (its grants cover
    erasure); test_roles.py erases through the erasure role itself."""
    settings, catalog = exported
    pipeline_roles = PipelineRoles(
        export_role="weward_export_erasure", redact_role="weward_redact_erasure", erase_role="weward_erase_erasure"
    )
    ensure_roles(pg_server.admin_url(), pipeline_roles)
    grant_catalog(app_db, catalog, pipeline_roles)
    try:
        with psycopg.connect(app_db) as conn:
            counts = {
                t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("step_events", "ward_transactions", "users", "reward_offers")
            }
            theirs = {
                t: conn.execute(f"SELECT count(*) FROM {t} WHERE {c} = ANY(%s)", ([3, 7],)).fetchone()[0]
                for t, c in (("step_events", "user_id"), ("ward_transactions", "user_id"), ("users", "id"))
            }
        redact_settings = make_settings(
            {**lake_env, "WEWARD_PG_REDACT_URL": pipeline_roles.redact_url(app_db)}, pipeline_roles.export_url(app_db)
        )
        report = erase_users(
            redact_settings,
            catalog,
            ERASED,
            clients=clients,
            pii_key=PII_KEY,
            delete_from_postgres=True,
            limits=erasure.ErasureLimits(batch_rows=7),
        )
        assert report.ok
        assert {t.table: t.postgres_rows_deleted for t in report.tables} == theirs
        with psycopg.connect(app_db) as conn:
            for table, count in counts.items():
                assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == count - theirs.get(table, 0)
            assert (
                conn.execute("SELECT count(*) FROM step_events WHERE user_id = ANY(%s)", ([3, 7],)).fetchone()[0] == 0
            )
        # A re-export of a day now cannot bring them back.
        export_day(settings, catalog, catalog.table("step_events"), DAYS[1], clients=clients, pii_key=PII_KEY)
        assert not any(belongs_to_erased("step_events", r) for r in lake_rows(clients, settings, "step_events"))
    finally:
        drop_roles(pg_server.admin_url(), pipeline_roles, [app_db.rsplit("/", 1)[1]])


def test_deleting_from_postgres_never_falls_back_to_the_select_only_export_dsn(exported, app_db, clients, lake_env):
    settings, catalog = exported
    with psycopg.connect(app_db) as conn:
        before = conn.execute("SELECT count(*) FROM step_events WHERE user_id = ANY(%s)", ([3, 7],)).fetchone()[0]
    export_only = make_settings(lake_env, settings.pg_url)  # WEWARD_PG_URL alone, as the export task has it
    assert export_only.pg_erase_url is None
    with pytest.raises(
        ErasureError, match="WEWARD_PG_ERASE_URL .or WEWARD_PG_REDACT_URL.*SELECT-only.*Nothing was changed"
    ):
        erase_users(export_only, catalog, ERASED, clients=clients, pii_key=PII_KEY, delete_from_postgres=True)
    with psycopg.connect(app_db) as conn:
        assert (
            conn.execute("SELECT count(*) FROM step_events WHERE user_id = ANY(%s)", ([3, 7],)).fetchone()[0] == before
        )
    audits = clients.s3.list_objects_v2(Bucket=settings.lake.bucket, Prefix=settings.lake.key("_audit"))
    assert "Contents" not in audits
    # The erasure DSN wins over the redaction DSN; neither is ever the export DSN.
    both = make_settings(
        {
            **lake_env,
            "WEWARD_PG_REDACT_URL": "postgresql://redact@db/app",
            "WEWARD_PG_ERASE_URL": "postgresql://erase:pw@db/app",
        },
        settings.pg_url,
    )
    assert both.pg_erase_url == "postgresql://erase:pw@db/app" and "pw" not in repr(both)
    assert (
        make_settings({**lake_env, "WEWARD_PG_REDACT_URL": "postgresql://redact@db/app"}, settings.pg_url).pg_erase_url
        == "postgresql://redact@db/app"
    )


def test_with_the_dagster_service_erasure_runs_start_from_the_erasure_task_definition(monkeypatch):
    """The daemon's EcsRunLauncher starts runs from the export task definition (export role: no object
    versions; no erasure DSN); gdpr_erasure names the erasure one through dagster-aws's run tag."""
    from weward_pipeline.defs.erasure import ERASURE_JOB, erasure_job

    catalog = make_catalog(*TABLES)
    monkeypatch.setenv(
        "WEWARD_ERASURE_TASK_DEFINITION", "arn:aws:ecs:eu-west-3:123456789012:task-definition/weward-prod-erase"
    )
    job = erasure_job(catalog)
    assert job.name == ERASURE_JOB
    assert json.loads(job.tags["ecs/run_task_kwargs"]) == {
        "taskDefinition": "arn:aws:ecs:eu-west-3:123456789012:task-definition/weward-prod-erase"
    }
    monkeypatch.delenv("WEWARD_ERASURE_TASK_DEFINITION")
    assert "ecs/run_task_kwargs" not in erasure_job(catalog).tags


def test_request_files_are_read_only_from_the_erasure_requests_prefix(lake_env):
    from weward_pipeline.defs.erasure import read_request
    from weward_pipeline.defs.resources import LakeResource

    resource = LakeResource(
        pg_url="postgresql://unused@localhost/unused",
        lake_url=lake_env["WEWARD_LAKE_URL"],
        glue_database=lake_env["WEWARD_GLUE_DATABASE"],
        aws_endpoint_url=lake_env["AWS_ENDPOINT_URL"],
    )
    bucket = lake_env["WEWARD_LAKE_URL"].removeprefix("s3://").split("/")[0]
    resource.clients().s3.put_object(Bucket=bucket, Key="_requests/erasure/T-1.txt", Body=b"3\n7\n")
    assert read_request(f"s3://{bucket}/_requests/erasure/T-1.txt", resource).user_ids == ("3", "7")
    with pytest.raises(ErasureError, match=f"read from s3://{bucket}/_requests/erasure/ .*put the request file there"):
        read_request(f"s3://{bucket}/exports/T-1.txt", resource)


def test_a_failure_midway_leaves_every_day_consistent_and_a_rerun_finishes(exported, app_db, clients, monkeypatch):
    settings, catalog = exported
    before = snapshot(clients, settings)
    expected = {name: [r for r in rows if not belongs_to_erased(name, r)] for name, rows in before.items()}
    glue = GlueCatalog(clients.glue, settings.glue_database)
    publish = GlueCatalog.publish_partition
    calls = []

    def flaky_publish(self, table, day, *args, **kwargs):
        calls.append((table, day))
        if len(calls) == 2:
            raise ConnectionError("Glue went away")  # the 2nd day fails before its switch
        return publish(self, table, day, *args, **kwargs)

    monkeypatch.setattr(GlueCatalog, "publish_partition", flaky_publish)
    first = erase_users(settings, catalog, ERASED, clients=clients, pii_key=PII_KEY)
    monkeypatch.setattr(GlueCatalog, "publish_partition", publish)
    assert first.status == "incomplete" and not first.ok
    failed = [d for t in first.tables for d in t.days if d.status == "failed"]
    assert len(failed) == 1 and "Glue went away" in failed[0].message and failed[0].rows_erased == 0
    # Every day is readable and consistent: either untouched or fully erased, never in between.
    after_first = snapshot(clients, settings)
    for name in ("step_events", "ward_transactions", "users"):
        for partition in glue.list_partitions(name):
            day = partition["Values"][0]
            assert verify_published_day(glue, clients.s3, clients.filesystem, name, day).passed()
            got = [r for r in after_first[name] if r["dt"] == day]
            assert got in ([r for r in before[name] if r["dt"] == day], [r for r in expected[name] if r["dt"] == day])
    # The failed attempt left nothing behind in S3 (its new prefix was removed).
    audit = erasure.read_audit(clients.s3, settings.lake, first.erasure_id)
    assert audit["status"] == "incomplete"

    second = erase_users(settings, catalog, ERASED, clients=clients, pii_key=PII_KEY)
    total = sum(1 for name, rows in before.items() for r in rows if belongs_to_erased(name, r))
    assert second.ok and first.rows_erased + second.rows_erased == total and second.rows_erased > 0
    assert snapshot(clients, settings) == expected
    assert versions_holding_erased(clients, settings, erased_step_ids(app_db)) == []


def test_killed_after_publishing_the_superseded_export_is_purged_on_rerun(exported, app_db, clients, monkeypatch):
    settings, catalog = exported

    def killed(*args, **kwargs):
        raise SystemExit("killed")  # the process dies right after the Glue switch

    monkeypatch.setattr(erasure._Context, "purge_export", killed)
    with pytest.raises(SystemExit):
        erase_users(settings, catalog, ERASED, clients=clients, pii_key=PII_KEY, tables=["users"])
    monkeypatch.undo()
    glue = GlueCatalog(clients.glue, settings.glue_database)
    assert verify_published_day(glue, clients.s3, clients.filesystem, "users", DAYS[-1]).passed()
    assert not any(belongs_to_erased("users", r) for r in lake_rows(clients, settings, "users"))
    holding = versions_holding_erased(clients, settings, set())
    assert any("/users/" in v for v in holding)  # the old export still has them...
    second = erase_users(settings, catalog, ERASED, clients=clients, pii_key=PII_KEY, tables=["users"])
    assert second.ok and second.rows_erased == 0 and second.tables[0].versions_purged > 0  # ...until the sweep
    assert not any("/users/" in v for v in versions_holding_erased(clients, settings, set()))


def test_row_comparison_treats_nan_as_equal_and_catches_any_other_difference():
    import pyarrow as pa

    table = pa.table(
        {
            "id": [1, 2, 3],
            "x": [1.5, float("nan"), None],
            "xs": [[float("nan")], None, [2.0, 3.0]],
            "t": ["a", "b", None],
        }
    )
    same = pa.table(
        {
            "id": [1, 2, 3],
            "x": [1.5, float("nan"), None],
            "xs": [[float("nan")], None, [2.0, 3.0]],
            "t": ["a", "b", None],
        }
    )
    assert erasure._streams_equal(iter([table]), iter([same.slice(0, 1), same.slice(1)])) == (True, 3)
    for column, values in (
        ("x", [1.5, 2.0, None]),
        ("x", [1.5, float("nan"), 0.0]),
        ("xs", [[float("nan")], None, [2.0]]),
        ("t", ["a", "B", None]),
    ):
        other = same.set_column(
            same.schema.get_field_index(column), column, pa.array(values, same.schema.field(column).type)
        )
        assert erasure._streams_equal(iter([table]), iter([other]))[0] is False, column
    assert erasure._streams_equal(iter([table]), iter([same.slice(0, 2)]))[0] is False  # a row missing
