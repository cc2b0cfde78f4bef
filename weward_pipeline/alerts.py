"""Alerts to a person: one SNS message per failure, with a link to where to look.

The Dagster service's sensors (weward_pipeline/defs/alerts.py) publish run failures and failed
blocking checks through this; the topic (Terraform: email subscription, optional chat) is named by
WEWARD_ALERT_TOPIC_ARN, the Dagster UI's address by WEWARD_DAGSTER_UI_URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import boto3
from botocore.config import Config as BotoConfig

from weward_pipeline.config import aws_region
from weward_pipeline.secret_store import scrub

ALERT_TOPIC_ENV = "WEWARD_ALERT_TOPIC_ARN"
UI_URL_ENV = "WEWARD_DAGSTER_UI_URL"
SUBJECT_LIMIT = 100  # SNS: at most 100 printable ASCII characters
MESSAGE_LIMIT = 200_000  # below SNS's 256 KB


@dataclass(frozen=True)
class Alert:
    subject: str
    body: str
    link: str | None = None

    def message(self) -> str:
        text = scrub(self.body)  # never a DSN or a password in an e-mail
        if self.link:
            text = f"{text}\n\nOpen: {self.link}"
        return text[:MESSAGE_LIMIT]


def run_link(ui_url: str | None, run_id: str) -> str | None:
    return f"{ui_url.rstrip('/')}/runs/{run_id}" if ui_url else None


def _subject(text: str) -> str:
    printable = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
    return printable[:SUBJECT_LIMIT]


class AlertPublisher:
    """Publishes alerts to one SNS topic."""

    def __init__(self, topic_arn: str, client) -> None:
        self.topic_arn = topic_arn
        self.client = client

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> AlertPublisher | None:
        """None when no topic is configured (alerts are then only in the Dagster UI)."""
        env = dict(os.environ if env is None else env)
        topic = env.get(ALERT_TOPIC_ENV, "").strip()
        if not topic:
            return None
        config = BotoConfig(
            region_name=aws_region(env),
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        )
        client = boto3.session.Session().client("sns", config=config, endpoint_url=env.get("AWS_ENDPOINT_URL") or None)
        return cls(topic, client)

    def publish(self, alert: Alert) -> str:
        """Sends one message; returns its SNS message id."""
        response = self.client.publish(
            TopicArn=self.topic_arn, Subject=_subject(alert.subject), Message=alert.message()
        )
        return response["MessageId"]
