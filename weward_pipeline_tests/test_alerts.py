"""Alerting sensors against the local stack: SNS on the moto server, read back through an SQS
queue subscribed to the topic, as an e-mail subscription would receive it."""

from __future__ import annotations

import json
import secrets
import tempfile

import boto3
import dagster as dg
import pytest

from weward_pipeline.alerts import ALERT_TOPIC_ENV, UI_URL_ENV
from weward_pipeline.defs.alerts import alert_on_failed_blocking_checks, alert_on_run_failure
from weward_pipeline.defs.factory import build_definitions
from weward_pipeline_tests.conftest import make_catalog

UI = "https://dagster.weward.example"


@pytest.fixture
def alert_inbox(lake_env, monkeypatch):
    """A topic named by WEWARD_ALERT_TOPIC_ARN and a function returning what it delivered so far."""
    suffix = secrets.token_hex(4)
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name=f"weward-alerts-{suffix}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"inbox-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    monkeypatch.setenv(ALERT_TOPIC_ENV, topic)
    monkeypatch.setenv(UI_URL_ENV, UI + "/")

    def delivered() -> list[dict]:
        messages = []
        while True:
            batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not batch:
                return messages
            for message in batch:
                messages.append(json.loads(message["Body"]))  # the SNS envelope: Subject, Message
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])

    return delivered


def local_instance():
    """A SQLite instance whose event log is not sharded per run, like production's PostgreSQL one."""
    return dg.instance_for_test(
        overrides={
            "event_log_storage": {
                "module": "dagster._core.storage.event_log",
                "class": "ConsolidatedSqliteEventLogStorage",
                "config": {"base_dir": tempfile.mkdtemp(prefix="weward-events-")},
            }
        }
    )


def tick(sensor, instance, cursor):
    data = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor))
    return data.cursor


def test_a_failing_export_sends_exactly_one_notification_with_a_link_to_its_run(
    alert_inbox, fresh_database, monkeypatch
):
    monkeypatch.setenv("WEWARD_PG_URL", fresh_database)  # an empty database: the table is missing
    catalog = make_catalog(
        {"name": "step_events", "mode": "append", "partition_column": "created_at", "primary_key": ["id"]}
    )
    defs = build_definitions(catalog)
    with dg.instance_for_test() as instance:
        cursor = tick(alert_on_run_failure, instance, None)  # the daemon's first tick starts from now
        result = dg.materialize(
            [defs.get_assets_def(dg.AssetKey(["lake", "step_events"]))],
            partition_key="2024-03-31",
            instance=instance,
            resources=defs.resources,
            raise_on_error=False,
        )
        assert not result.success
        cursor = tick(alert_on_run_failure, instance, cursor)
        tick(alert_on_run_failure, instance, cursor)  # and later ticks: no duplicate

    (alert,) = alert_inbox()
    assert alert["Subject"] == "weward_pipeline: run failed: lake__step_events 2024-03-31"
    assert f"Open: {UI}/runs/{result.run_id}" in alert["Message"]
    assert "step_events" in alert["Message"] and fresh_database not in alert["Message"]


partitions = dg.DailyPartitionsDefinition(start_date="2024-01-01")


@dg.asset(key=["lake", "probe"], partitions_def=partitions)
def probe() -> None:
    return None


@dg.asset_check(asset=probe, blocking=True, partitions_def=partitions)
def rows_match(context) -> dg.AssetCheckResult:
    """Fails on 2024-03-31 with WARN severity (the run succeeds) and on 2024-03-29 with ERROR (the run fails)."""
    day = context.partition_key
    return dg.AssetCheckResult(
        passed=day not in ("2024-03-29", "2024-03-31"),
        description="12 rows in Parquet, 13 in PostgreSQL",
        severity=dg.AssetCheckSeverity.WARN if day == "2024-03-31" else dg.AssetCheckSeverity.ERROR,
    )


def test_a_failed_blocking_check_sends_one_notification_whether_or_not_its_run_fails(alert_inbox):
    with local_instance() as instance:
        cursors = {s: tick(s, instance, None) for s in (alert_on_failed_blocking_checks, alert_on_run_failure)}
        results = {
            day: dg.materialize([probe, rows_match], partition_key=day, instance=instance, raise_on_error=False)
            for day in ("2024-03-29", "2024-03-30", "2024-03-31")
        }
        assert [r.success for r in results.values()] == [False, True, True]
        for _ in range(2):  # later ticks send nothing more
            cursors = {s: tick(s, instance, c) for s, c in cursors.items()}

    alerts = sorted(alert_inbox(), key=lambda a: a["Subject"])
    assert [a["Subject"] for a in alerts] == [
        "weward_pipeline: check failed: lake/probe 2024-03-31 rows_match",
        "weward_pipeline: run failed: lake__probe_rows_match 2024-03-29",
    ]
    alert, result = alerts[0], results["2024-03-31"]
    assert alert["Subject"] == "weward_pipeline: check failed: lake/probe 2024-03-31 rows_match"
    assert "12 rows in Parquet, 13 in PostgreSQL" in alert["Message"]
    assert f"Open: {UI}/runs/{result.run_id}" in alert["Message"]


def test_without_a_topic_the_sensors_skip(monkeypatch):
    monkeypatch.delenv(ALERT_TOPIC_ENV, raising=False)
    with dg.instance_for_test() as instance:
        data = alert_on_failed_blocking_checks.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert "WEWARD_ALERT_TOPIC_ARN is not set" in data.skip_message
