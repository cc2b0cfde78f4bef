"""Scheduled exports retry transient failures with backoff, and never retry bad data or config.

The transient failure is real: a TCP proxy in front of the test PostgreSQL resets the export's
first connection (what a failover or a NAT timeout does), then forwards the next ones.
"""

from __future__ import annotations

import datetime as dt
import socket
import struct
import threading

import adbc_driver_postgresql.dbapi as adbc
import dagster as dg
import psycopg
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from weward_pipeline.config import ConfigError
from weward_pipeline.defs.assets import EXPORT_RETRY_POLICY, lake_asset
from weward_pipeline.defs.resources import LakeResource
from weward_pipeline.export import ExportError
from weward_pipeline.extract import SourceError
from weward_pipeline.failures import transient_reason
from weward_pipeline_tests.conftest import make_catalog

DAY = dt.date(2024, 3, 12)
FAST_RETRIES = dg.RetryPolicy(max_retries=2, delay=0.2, backoff=dg.Backoff.EXPONENTIAL)


class ResettingProxy:
    """Forwards TCP to PostgreSQL, except that the first `resets` connections get an RST."""

    def __init__(self, target_port: int, resets: int = 1) -> None:
        self.target_port = target_port
        self.resets_left = resets
        self.accepted = 0
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            if self.resets_left > 0:
                self.resets_left -= 1
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()  # linger 0: the peer sees "connection reset", like a failover
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closed.set()
        self.server.close()


@pytest.fixture
def events_database(fresh_database):
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, note text)")
        conn.execute(
            "INSERT INTO events SELECT g, timestamptz '2024-03-12 00:30+01' + g * interval '10 minutes', 'n' || g "
            "FROM generate_series(1, 120) g"
        )
    return fresh_database


def materialize(lake_env: dict, pg_url: str, table: dict, retry_policy: dg.RetryPolicy = FAST_RETRIES):
    catalog = make_catalog(table)
    asset = lake_asset(catalog.tables[0], catalog, retry_policy=retry_policy)
    lake = LakeResource(
        pg_url=pg_url,
        lake_url=lake_env["WEWARD_LAKE_URL"],
        glue_database=lake_env["WEWARD_GLUE_DATABASE"],
        aws_region=lake_env["AWS_REGION"],
        aws_endpoint_url=lake_env["AWS_ENDPOINT_URL"],
    )
    return dg.materialize([asset], partition_key=DAY.isoformat(), resources={"lake": lake}, raise_on_error=False)


def events_of(result, event_type: str) -> list:
    return [e for e in result.all_events if e.event_type_value == event_type]


EVENTS = {"name": "events", "mode": "append", "partition_column": "created_at", "primary_key": ["id"]}


def test_a_connection_reset_is_retried_and_the_day_is_then_exported(lake_env, events_database, pg_server):
    proxy = ResettingProxy(pg_server.port, resets=1)
    try:
        url = events_database.replace(f":{pg_server.port}/", f":{proxy.port}/")
        assert url != events_database
        result = materialize(lake_env, url, EVENTS)
    finally:
        proxy.close()
    assert result.success
    [retry] = events_of(result, "STEP_UP_FOR_RETRY")
    assert "transient" in retry.message or "transient" in str(retry.event_specific_data)
    [materialization] = result.get_asset_materialization_events()
    rows = materialization.step_materialization_data.materialization.metadata["dagster/row_count"].value
    assert rows == 120
    assert proxy.accepted >= 2  # the reset one, then the retry's


def test_a_missing_column_fails_once_without_retries(lake_env, events_database):
    table = {**EVENTS, "partition_column": "created_on"}
    result = materialize(lake_env, events_database, table)
    assert not result.success
    assert not events_of(result, "STEP_UP_FOR_RETRY"), "bad config must not be retried"
    [failure] = events_of(result, "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "created_on" in message


def test_a_wrong_password_is_not_worth_retrying(events_database, pg_server):
    from weward_pipeline.extract import DayWindow, Extraction

    catalog = make_catalog(EVENTS)
    wrong = events_database.replace(f":{pg_server.admin_password}@", ":not-the-password@")
    assert wrong != events_database
    with pytest.raises(SourceError) as caught:
        Extraction(wrong, catalog.tables[0], DayWindow(DAY, catalog.timezone)).open()
    assert "not-the-password" not in str(caught.value)
    assert transient_reason(caught.value) is None


def test_a_server_side_disconnect_is_transient(events_database):
    """pg_terminate_backend is what a failover or an admin restart looks like to the client."""
    conn = adbc.connect(events_database)
    with psycopg.connect(events_database, autocommit=True) as admin:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            backend = cur.fetchone()[0]
        admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
    with pytest.raises(Exception) as caught:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - the connection is already dead
        pass
    assert transient_reason(caught.value) is not None, repr(caught.value)
    # Wrapped the way extract.py wraps it (raise SourceError(...) from None): still found.
    try:
        try:
            raise caught.value
        except Exception:
            raise SourceError("table events: query on public.events failed: terminated") from None
    except SourceError as wrapped:
        assert transient_reason(wrapped) is not None


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject"), True),
        (
            ClientError({"Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}, "PutObject"),
            True,
        ),
        (
            ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "PutObject"),
            False,
        ),
        (
            ClientError({"Error": {"Code": "NoSuchBucket"}, "ResponseMetadata": {"HTTPStatusCode": 404}}, "HeadBucket"),
            False,
        ),
        (EndpointConnectionError(endpoint_url="https://s3.eu-west-3.amazonaws.com"), True),
        (
            OSError("When uploading part for key 'x' in bucket 'b': AWS Error SLOW_DOWN during UploadPart operation"),
            True,
        ),
        (
            OSError(
                "When initiating multipart upload for key 'x': AWS Error ACCESS_DENIED during CreateMultipartUpload"
            ),
            False,
        ),
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (ConfigError("table 'x': unknown key(s) foo"), False),
        (ValueError("value 1e400 does not fit in column amount"), False),
    ],
)
def test_aws_and_network_errors_are_classified_by_what_a_retry_can_change(error, transient):
    # As export.py raises them: wrapped in an ExportError whose cause is the original error.
    try:
        try:
            raise error
        except Exception as exc:
            raise ExportError("table x day 2024-03-12: writing to the lake failed") from exc
    except ExportError as wrapped:
        assert (transient_reason(wrapped) is not None) is transient


def test_the_production_retry_policy_backs_off():
    assert EXPORT_RETRY_POLICY.max_retries == 3
    assert EXPORT_RETRY_POLICY.backoff == dg.Backoff.EXPONENTIAL
    assert EXPORT_RETRY_POLICY.delay >= 10  # seconds: long enough for a failover to finish
