"""Redaction tries hard to lose data here, against the real PostgreSQL server and S3/Glue endpoint.

Each test exports real days of the sample app's `step_events`, does something nasty between the
export and the redaction, redacts, and asserts the exact set of rows left in PostgreSQL and the
exact set of rows in the lake (read back through Glue, as Athena would).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psycopg
import pyarrow.parquet as pq
import pytest

from weward_pipeline import redact
from weward_pipeline.devstack import sample_data
from weward_pipeline.export import ExportError, export_day
from weward_pipeline.extract import DayWindow
from weward_pipeline.glue import GlueCatalog
from weward_pipeline.keys import RedactionKeys
from weward_pipeline.redact import RedactionLimits, RedactionRefused, redact_day
from weward_pipeline.verify import published_manifest
from weward_pipeline_tests.conftest import TIMEZONE, make_catalog, make_settings
from weward_pipeline_tests.lake_reader import read_table

DAY = dt.date(2024, 3, 31)  # 23 hours in Europe/Paris
OTHER_DAY = dt.date(2024, 3, 30)
STEP_EVENTS = {"name": "step_events", "mode": "append", "partition_column": "created_at", "primary_key": ["id"],
               "retention_days": 30}
# Small batches so a day of the test data takes several; no pauses to keep the tests quick.
FAST = RedactionLimits(batch_rows=25, pause_s=0, retry_backoff_s=0.05, lock_timeout_s=0.5)


@pytest.fixture
def app_db(fresh_database):
    """The sample app, 3 days ending 2024-04-01, ~40 users: about 120 step events a day."""
    sample_data.load(fresh_database, end_date=dt.date(2024, 4, 1),
                     size=sample_data.SampleSize(users=40, days=3), timezone=TIMEZONE)
    return fresh_database


class Scenario:
    def __init__(self, lake_env, clients, pg_url, table=STEP_EVENTS):
        self.settings = make_settings(lake_env, pg_url)
        self.catalog = make_catalog(table)
        self.table = self.catalog.tables[0]
        self.clients = clients
        self.pg_url = pg_url
        self.glue = GlueCatalog(clients.glue, self.settings.glue_database)

    def export(self, day=DAY):
        return export_day(self.settings, self.catalog, self.table, day, clients=self.clients)

    def redact(self, day=DAY, **kwargs):
        kwargs.setdefault("limits", FAST)
        return redact_day(self.settings, self.catalog, self.table, day, clients=self.clients, **kwargs)

    def pg_ids(self, day: dt.date | None = None) -> set[int]:
        query, params = "SELECT id FROM step_events", ()
        if day is not None:
            window = DayWindow(day, TIMEZONE)
            query += " WHERE created_at >= %s AND created_at < %s"
            params = (window.start, window.end)
        with psycopg.connect(self.pg_url) as conn:
            return {row[0] for row in conn.execute(query, params)}

    def lake_ids(self, day=DAY) -> set[int]:
        ids = read_table(self.glue, self.clients.filesystem, self.table.name, day.isoformat()).column("id").to_pylist()
        assert len(ids) == len(set(ids)), "a row is in the lake twice"
        return set(ids)

    def execute(self, statement: str, params=()):
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            conn.execute(statement, params)

    def manifest(self, day=DAY):
        return published_manifest(self.glue, self.clients.s3, self.table.name, day.isoformat())[1]


@pytest.fixture
def scenario(app_db, lake_env, clients):
    return Scenario(lake_env, clients, app_db)


def test_exported_day_is_deleted_from_postgres_and_stays_whole_in_the_lake(scenario):
    everything = scenario.pg_ids()
    day_rows = scenario.pg_ids(DAY)
    scenario.export()

    report = scenario.redact()

    assert report.status == "done" and report.why_quit is None
    assert report.rows_in_export == report.rows_deleted == len(day_rows) > 50
    assert report.kept_back == {} and not report.needs_reexport
    assert report.batches == -(-len(day_rows) // FAST.batch_rows)
    assert report.lake_verified_after is True
    assert scenario.pg_ids() == everything - day_rows
    assert scenario.lake_ids() == day_rows


def test_running_it_twice_deletes_nothing_the_second_time(scenario):
    everything = scenario.pg_ids()
    day_rows = scenario.pg_ids(DAY)
    scenario.export()
    scenario.redact()

    again = scenario.redact()

    assert again.rows_deleted == 0 and again.rows_already_gone == len(day_rows)
    assert scenario.pg_ids() == everything - day_rows
    assert scenario.lake_ids() == day_rows
