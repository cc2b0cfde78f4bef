"""No password, DSN or PII key in anything a person or a log can read: run the product through
Dagster (export, checks, redaction, erasure, a failing connection) and scan what it left behind:
captured logs and output, Dagster's event log and run configs, materialization and check
metadata, Glue, manifests, Parquet, the erasure audit."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import secrets

import dagster as dg
import psycopg
import pyarrow.parquet as pq
import pytest
import yaml

from weward_pipeline.config import Settings, load_catalog, mask_url
from weward_pipeline.devstack import sample_data
from weward_pipeline.export import AwsClients, export_day
from weward_pipeline.extract import SourceError
from weward_pipeline.roles import PipelineRoles, drop_roles, ensure_roles, grant_catalog
from weward_pipeline.secret_store import scrub
from weward_pipeline_tests.conftest import make_catalog, make_settings

DAY = "2024-03-31"
KEY = "leak-test-key-" + secrets.token_urlsafe(32)
CATALOG = {
    "start_date": "2024-01-01",
    "timezone": "Europe/Paris",
    "tables": [
        {
            "name": "step_events",
            "mode": "append",
            "partition_column": "created_at",
            "primary_key": ["id"],
            "retention_days": 1,
            "user_column": "user_id",
            "pii": {"user_id": "keep", "device_id": "drop"},
        },
        {
            "name": "ward_transactions",
            "mode": "append",
            "partition_column": "created_at",
            "primary_key": ["id"],
            "user_column": "user_id",
            "pii": {"user_id": "hash", "reason": "drop"},
        },
    ],
}


@pytest.fixture
def product(fresh_database, pg_server, lake_env, tmp_path, monkeypatch):
    """The sample app behind least-privilege roles whose passwords are distinctive, a catalog file,
    and the environment-variable contract as production sets it."""
    sample_data.load(fresh_database, end_date=dt.date(2024, 4, 1), size=sample_data.SampleSize(users=25, days=2))
    suffix = secrets.token_hex(3)
    roles = PipelineRoles(
        export_role=f"leak_export_{suffix}",
        redact_role=f"leak_redact_{suffix}",
        erase_role=f"leak_erase_{suffix}",
        export_password="ExportPw-" + secrets.token_hex(8),
        redact_password="RedactPw-" + secrets.token_hex(8),
        erase_password="ErasePw-" + secrets.token_hex(8),
    )
    catalog_file = tmp_path / "tables.yaml"
    catalog_file.write_text(yaml.safe_dump(CATALOG))
    catalog = load_catalog(catalog_file)
    ensure_roles(pg_server.admin_url(), roles)
    grant_catalog(fresh_database, catalog, roles)
    env = {
        "WEWARD_TABLES_FILE": str(catalog_file),
        "WEWARD_PG_URL": roles.export_url(fresh_database),
        "WEWARD_PG_REDACT_URL": roles.redact_url(fresh_database),
        "WEWARD_PG_ERASE_URL": roles.erase_url(fresh_database),
        "WEWARD_PII_KEY": KEY,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with psycopg.connect(fresh_database) as conn:
        raw = [r[0] for r in conn.execute("SELECT reason FROM ward_transactions WHERE reason IS NOT NULL")]
    admin_password = pg_server.admin_password
    secrets_ = {
        "export password": roles.export_password,
        "redaction password": roles.redact_password,
        "erasure password": roles.erase_password,
        "admin password": admin_password,
        "export DSN": env["WEWARD_PG_URL"],
        "redaction DSN": env["WEWARD_PG_REDACT_URL"],
        "erasure DSN": env["WEWARD_PG_ERASE_URL"],
        "PII key": KEY,
    }
    yield catalog, env, secrets_, raw, tmp_path
    drop_roles(pg_server.admin_url(), roles, [fresh_database.rsplit("/", 1)[1]])


def leaks(text: str, secrets_: dict[str, str]) -> list[str]:
    return [name for name, value in secrets_.items() if value and value in text]


def test_nothing_secret_reaches_logs_metadata_or_the_lake(product, lake_env, caplog, capfd):
    catalog, env, secrets_, raw_reasons, tmp_path = product
    from weward_pipeline.defs.factory import build_definitions

    caplog.set_level(logging.DEBUG)
    defs = build_definitions(catalog)
    instance = dg.DagsterInstance.ephemeral()
    keys = [dg.AssetKey(["lake", "step_events"]), dg.AssetKey(["lake", "ward_transactions"])]
    checks = [c for c in defs.asset_checks if any(k.asset_key in keys for k in c.check_keys)]
    exported = dg.materialize(
        [defs.get_assets_def(k) for k in keys] + checks, partition_key=DAY, instance=instance, resources=defs.resources
    )
    assert exported.success
    redaction = dg.materialize(
        [defs.get_assets_def(dg.AssetKey(["redaction", "step_events"]))],
        partition_key=DAY,
        instance=instance,
        resources=defs.resources,
        raise_on_error=False,
    )
    # The erasure job, with its request file in S3 (user 4; the run config only names it) and
    # PostgreSQL deletes through the erasure role.
    clients = AwsClients.from_settings(Settings.from_env())
    bucket = lake_env["WEWARD_LAKE_URL"].removeprefix("s3://").split("/")[0]
    clients.s3.put_object(Bucket=bucket, Key="_requests/erasure/TICKET-1.txt", Body=b"4\n")
    erasure = defs.get_job_def("gdpr_erasure").execute_in_process(
        instance=instance,
        resources=defs.resources,
        run_config={
            "ops": {
                "erase_users": {
                    "config": {
                        "request_url": f"s3://{bucket}/_requests/erasure/TICKET-1.txt",
                        "delete_from_postgres": True,
                    }
                }
            }
        },
    )
    assert erasure.success
    # A connection that fails, with a distinctive wrong password: the error must not echo it.
    wrong = env["WEWARD_PG_URL"].replace(secrets_["export password"], "WrongPw-" + secrets.token_hex(6))
    secrets_["wrong password"] = wrong.split(":")[2].split("@")[0]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WEWARD_PG_URL", wrong)
        failed = dg.materialize(
            [defs.get_assets_def(keys[0])],
            partition_key="2024-04-01",
            instance=instance,
            resources=build_definitions(catalog).resources,
            raise_on_error=False,
        )
    assert not failed.success

    texts = []
    for run in instance.get_runs():
        texts.append(json.dumps(run.run_config, default=str))
        texts.append(dg.serialize_value(run.tags))
        texts.extend(dg.serialize_value(entry) for entry in instance.all_logs(run.run_id))
    failure = next(e for e in failed.all_events if e.event_type_value == "STEP_FAILURE")
    texts.append(str(failure.event_specific_data.error))
    assert "cannot connect to PostgreSQL" in texts[-1] and mask_url(wrong) in texts[-1]
    texts += [record.getMessage() for record in caplog.records]
    captured = capfd.readouterr()
    texts += [captured.out, captured.err]

    glue_db = lake_env["WEWARD_GLUE_DATABASE"]
    for table in ("step_events", "ward_transactions"):
        texts.append(json.dumps(clients.glue.get_table(DatabaseName=glue_db, Name=table), default=str))
        texts.append(json.dumps(clients.glue.get_partitions(DatabaseName=glue_db, TableName=table), default=str))
    lake_text = []
    for page in clients.s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            body = clients.s3.get_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])[
                "Body"
            ].read()
            if version["Key"].endswith(".parquet"):
                parquet = pq.ParquetFile(io.BytesIO(body))
                lake_text.append(json.dumps(parquet.read().to_pylist(), default=str))
                lake_text.append(str(parquet.metadata.metadata) + str(parquet.schema_arrow))
            elif not version["Key"].startswith("_requests/"):  # the request file holds the id, by design
                lake_text.append(body.decode())  # manifests and the erasure audit
    texts += lake_text
    assert any("_audit/erasure/" in t or '"erasure_id"' in t for t in lake_text)

    everything = "\n".join(texts)
    assert len(everything) > 10_000  # the scan did see the product's output
    assert leaks(everything, secrets_) == []
    # and personal data the catalog drops never reached the lake
    assert not [r for r in raw_reasons if r in "\n".join(lake_text)]
    # The runs did what they claim (so the scan covered real work): redaction deleted, erasure erased.
    assert redaction.success, [
        str(e.event_specific_data.error) for e in redaction.all_events if e.event_type_value == "STEP_FAILURE"
    ]
    (materialization,) = [e.materialization for e in redaction.get_asset_materialization_events()]
    assert materialization.metadata["rows_deleted"].value > 0
    (output,) = [e for e in erasure.all_events if e.event_type_value == "STEP_OUTPUT"]
    assert output.event_specific_data.metadata["rows_erased"].value > 0


def test_connection_errors_mask_passwords_even_url_encoded(lake_env, clients):
    password = "p@ss:w/rd%sec" + secrets.token_hex(4)
    from urllib.parse import quote

    url = f"postgresql://someone:{quote(password, safe='')}@127.0.0.1:9/app"
    catalog = make_catalog({"name": "t", "mode": "append", "partition_column": "at", "primary_key": ["id"]})
    with pytest.raises(SourceError) as error:
        export_day(make_settings(lake_env, url), catalog, catalog.tables[0], dt.date(2024, 3, 31), clients=clients)
    message = str(error.value) + repr(error.value)
    assert password not in message and quote(password, safe="") not in message
    assert "postgresql://someone@127.0.0.1:9/app" in message


def test_scrub_masks_urls_keyword_passwords_and_known_secrets():
    env = {"WEWARD_PG_URL": "postgresql://u:S3cret-Pw@h:5432/db", "WEWARD_PII_KEY": "k" * 40}
    text = (
        "connect postgresql://u:S3cret-Pw@h:5432/db failed; password=S3cret-Pw; key "
        + "k" * 40
        + " other mysql://a:b@c/d"
    )
    cleaned = scrub(text, env=env)
    assert "S3cret-Pw" not in cleaned and "k" * 40 not in cleaned and "a:b@" not in cleaned
    assert "postgresql://u:***@h:5432/db" in cleaned
    # Each DSN of the contract is known as a secret, the erasure role's too: its bare password goes.
    for name in ("WEWARD_PG_URL", "WEWARD_PG_REDACT_URL", "WEWARD_PG_ERASE_URL"):
        assert (
            scrub("a driver echoed Bare-Pw-789 alone", env={name: "postgresql://r:Bare-Pw-789@h/db"})
            == "a driver echoed *** alone"
        ), name


def test_settings_print_masked():
    settings = Settings.from_env(
        {
            "WEWARD_PG_URL": "postgresql://exp:Pw-One-123@db:5432/app",
            "WEWARD_PG_REDACT_URL": "postgresql://red:Pw-Two-456@db:5432/app",
            "WEWARD_LAKE_URL": "s3://b/p",
        }
    )
    for text in (repr(settings), str(settings), f"{settings}", repr([settings])):
        assert "Pw-One-123" not in text and "Pw-Two-456" not in text
    assert "postgresql://exp@db:5432/app" in repr(settings) and settings.pg_url.endswith("@db:5432/app")
