"""Restatement: the catalog's window, the cheap comparison of exported days with PostgreSQL (index use,
locks), and re-exports that make the lake's day equal PostgreSQL's, against real servers."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest
import yaml

from weward_pipeline import cli, pg, restate
from weward_pipeline.config import DEFAULT_RESTATE_DAYS, ConfigError
from weward_pipeline.export import export_day
from weward_pipeline.extract import DayWindow, ExtractLimits, SourceError
from weward_pipeline_tests.conftest import TIMEZONE, OneTable, make_catalog
from weward_pipeline_tests.lake_reader import read_table

PURCHASES = {
    "name": "purchases",
    "mode": "append",
    "partition_column": "purchased_at",
    "primary_key": ["id"],
    "updated_column": "updated_at",
}
FIRST_DAY = dt.date(2024, 3, 1)
DAYS = 30
ROWS_PER_DAY = 2000


# -- the catalog ------------------------------------------------------------------------------------


def test_append_tables_restate_a_week_by_default_and_stay_below_their_retention():
    catalog = make_catalog(
        {"name": "a", "mode": "append", "partition_column": "t", "primary_key": ["id"]},
        {"name": "b", "mode": "append", "partition_column": "t", "primary_key": ["id"], "retention_days": 3},
        {"name": "c", "mode": "append", "partition_column": "t", "primary_key": ["id"], "restate_days": 0},
        {"name": "d", "mode": "snapshot", "primary_key": ["id"]},
    )
    assert [t.restate_days for t in catalog.tables] == [DEFAULT_RESTATE_DAYS, 2, 0, 0] and DEFAULT_RESTATE_DAYS == 7
    assert restate.restatement_days(catalog, catalog.tables[1], dt.date(2024, 3, 10)) == [
        dt.date(2024, 3, 9),
        dt.date(2024, 3, 8),
    ]
    assert restate.restatement_days(catalog, catalog.tables[1], dt.date(2024, 1, 2)) == [dt.date(2024, 1, 1)]
    assert restate.first_day_beyond(catalog.tables[1], dt.date(2024, 3, 10)) == dt.date(2024, 3, 7)


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"restate_days": -1}, "`restate_days` must be a whole number of days >= 0"),
        ({"restate_days": "7"}, "`restate_days` must be a whole number of days >= 0"),
        ({"retention_days": 5, "restate_days": 5}, "must be smaller than `retention_days` (5)"),
        ({"updated_column": "created_at"}, "`updated_column` 'created_at' is the partition column"),
        ({"updated_column": ""}, "`updated_column` must be a non-empty string"),
    ],
)
def test_bad_restatement_settings_name_the_table_and_the_fix(extra, message):
    with pytest.raises(ConfigError) as error:
        make_catalog(
            {"name": "step_events", "mode": "append", "partition_column": "created_at", "primary_key": ["id"], **extra}
        )
    assert "table 'step_events'" in str(error.value) and message in str(error.value)


def test_snapshot_tables_refuse_restatement_settings():
    with pytest.raises(ConfigError) as error:
        make_catalog(
            {
                "name": "users",
                "mode": "snapshot",
                "primary_key": ["id"],
                "restate_days": 3,
                "updated_column": "updated_at",
            }
        )
    assert "`restate_days` is for append tables" in str(error.value)
    assert "`updated_column` is for append tables" in str(error.value)


# -- the comparison -----------------------------------------------------------------------------------


@pytest.fixture
def shop_db(fresh_database):
    """`purchases`: 30 days x 2000 rows, indexes on purchased_at and updated_at, vacuumed and analyzed."""
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE purchases (id bigserial PRIMARY KEY, purchased_at timestamptz NOT NULL,
                                    status text NOT NULL, amount numeric(10,2) NOT NULL,
                                    updated_at timestamptz NOT NULL);
            CREATE INDEX ON purchases (purchased_at);
            CREATE INDEX ON purchases (updated_at);
        """)
        start = DayWindow(FIRST_DAY, TIMEZONE).start
        conn.execute(
            """
            INSERT INTO purchases (purchased_at, status, amount, updated_at)
            SELECT %(start)s + (n * interval '1 day' * %(days)s / %(rows)s), 'pending', (n %% 500) / 10.0,
                   %(start)s + (n * interval '1 day' * %(days)s / %(rows)s)
            FROM generate_series(0, %(rows)s - 1) n
        """,
            {"start": start, "days": DAYS, "rows": DAYS * ROWS_PER_DAY},
        )
        conn.execute("VACUUM ANALYZE purchases")
    return fresh_database


class Shop(OneTable):
    def __init__(self, lake_env, clients, pg_url, table=PURCHASES):
        super().__init__(lake_env, clients, pg_url, table)

    def export(self, day, now=None):
        return export_day(self.settings, self.catalog, self.table, day, clients=self.clients, now=now)

    def compare(self, *days):
        return restate.compare_days(self.settings, self.catalog, self.table, list(days), clients=self.clients)

    def sql(self, statement, params=()):
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            return conn.execute(statement, params)

    def pg_rows(self, day) -> dict[int, tuple]:
        window = DayWindow(day, TIMEZONE)
        with psycopg.connect(self.pg_url) as conn:
            return {
                r[0]: r[1:]
                for r in conn.execute(
                    "SELECT id, status, amount FROM purchases WHERE purchased_at >= %s AND purchased_at < %s",
                    (window.start, window.end),
                )
            }

    def lake_rows(self, day) -> dict[int, tuple]:
        table = read_table(self.glue, self.clients.filesystem, self.table.name, day.isoformat())
        ids = table.column("id").to_pylist()
        assert len(ids) == len(set(ids)), "a row is in the lake twice"
        return {
            i: (s, a) for i, s, a in zip(ids, table.column("status").to_pylist(), table.column("amount").to_pylist())
        }


@pytest.fixture
def shop(shop_db, lake_env, clients):
    return Shop(lake_env, clients, shop_db)


def first_id(shop: Shop, day: dt.date) -> int:
    return min(shop.pg_rows(day))


def test_inserts_updates_and_deletes_after_the_export_are_seen_and_untouched_days_are_not(shop):
    days = [FIRST_DAY + dt.timedelta(days=n) for n in (10, 11, 12, 13)]
    for day in days:
        shop.export(day)
    insert_day, update_day, delete_day, quiet_day = days
    shop.sql(
        "INSERT INTO purchases (purchased_at, status, amount, updated_at) VALUES (%s, 'pending', 1, now())",
        (DayWindow(insert_day, TIMEZONE).start + dt.timedelta(hours=5),),
    )
    shop.sql(
        "UPDATE purchases SET status = 'delivered', updated_at = now() WHERE id = %s", (first_id(shop, update_day),)
    )
    shop.sql("DELETE FROM purchases WHERE id = %s", (first_id(shop, delete_day),))

    statuses, unpublished = shop.compare(*days, FIRST_DAY)

    assert unpublished == [FIRST_DAY]
    by_day = {s.day: s for s in statuses}
    assert (by_day[insert_day].source_rows - by_day[insert_day].exported_rows, by_day[insert_day].updated_rows) == (
        1,
        1,
    )
    assert (by_day[update_day].source_rows - by_day[update_day].exported_rows, by_day[update_day].updated_rows) == (
        0,
        1,
    )
    assert (by_day[delete_day].source_rows - by_day[delete_day].exported_rows, by_day[delete_day].updated_rows) == (
        -1,
        0,
    )
    assert [d for d in days if by_day[d].changed] == [insert_day, update_day, delete_day]
    assert by_day[quiet_day].why() == "unchanged"
    assert by_day[insert_day].why().startswith("1 row(s) added (net)")
    assert by_day[update_day].why() == "1 row(s) added or updated since the export (updated column)"
    assert by_day[delete_day].why().startswith("1 row(s) deleted (net): the source holds 1999, the export 2000")


def test_without_updated_column_inserts_and_deletes_are_seen_and_updates_are_not(shop_db, lake_env, clients):
    shop = Shop(lake_env, clients, shop_db, {k: v for k, v in PURCHASES.items() if k != "updated_column"})
    day = FIRST_DAY + dt.timedelta(days=5)
    shop.export(day)
    shop.sql("UPDATE purchases SET status = 'delivered' WHERE id = %s", (first_id(shop, day),))
    [status], _ = shop.compare(day)
    assert not status.changed and status.updated_rows is None
    shop.sql("DELETE FROM purchases WHERE id = %s", (first_id(shop, day),))
    [status], _ = shop.compare(day)
    assert status.changed and status.source_rows == ROWS_PER_DAY - 1


def explain(pg_url: str, statement) -> str:
    with psycopg.connect(pg_url) as conn:
        return "\n".join(r[0] for r in conn.execute(psycopg.sql.SQL("EXPLAIN {}").format(statement)))


def test_the_detection_queries_use_an_index_and_never_scan_the_table(shop):
    day = FIRST_DAY + dt.timedelta(days=20)
    shop.export(day)
    manifest = restate.published_manifest(shop.glue, shop.clients.s3, "purchases", day.isoformat())[1]
    statements = restate.detection_sql(
        shop.table, DayWindow(day, TIMEZONE), "timestamptz", "timestamptz", manifest.snapshot_at
    )
    assert set(statements) == {"count", "updated"}
    for name, statement in statements.items():
        plan = explain(shop.pg_url, statement)
        assert "Seq Scan" not in plan, (name, plan)
        assert "Index" in plan, (name, plan)
    assert "purchases_purchased_at_idx" in explain(shop.pg_url, statements["count"])


def test_the_comparison_runs_read_only_under_the_export_limits_and_takes_only_access_share_locks(shop):
    day = FIRST_DAY + dt.timedelta(days=3)
    shop.export(day)
    _, manifest = restate.published_manifest(shop.glue, shop.clients.s3, "purchases", day.isoformat())
    with restate.SourceCounts(shop.settings, shop.table) as counts:
        counts.compare(manifest, TIMEZONE)
        settings = dict(
            counts.conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('transaction_read_only', 'statement_timeout', "
                "'lock_timeout', 'application_name', 'transaction_isolation')"
            ).fetchall()
        )
        modes = {
            r[0]
            for r in counts.conn.execute(
                "SELECT DISTINCT mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation'"
            )
        }
    assert settings["transaction_read_only"] == "on" and settings["transaction_isolation"] == "repeatable read"
    assert settings["statement_timeout"] == str(ExtractLimits().statement_timeout_s * 1000)
    assert settings["lock_timeout"] == str(ExtractLimits().lock_timeout_s * 1000)
    assert settings["application_name"] == "weward-restate purchases"
    assert modes == {"AccessShareLock"}
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        with pg.connect(shop.pg_url, "x", ExtractLimits().session(), autocommit=False) as conn:
            conn.execute("DELETE FROM purchases WHERE id = 1")


def test_a_missing_or_mistyped_updated_column_names_the_table_and_the_column(shop_db, lake_env, clients):
    for column, message in (
        ("changed_at", "updated_column 'changed_at' does not exist"),
        ("status", "updated_column 'status' is text; it must be one of timestamptz, timestamp"),
    ):
        shop = Shop(lake_env, clients, shop_db, {**PURCHASES, "updated_column": column})
        with pytest.raises(SourceError) as error:
            shop.compare(FIRST_DAY)
        assert "table purchases" in str(error.value) and message in str(error.value)


# -- carry-over: exactly what the pipeline deleted ------------------------------------------------------

from weward_pipeline import redaction_audit  # noqa: E402
from weward_pipeline.lake import write_manifest  # noqa: E402
from weward_pipeline_tests.test_redaction import DAY, OTHER_DAY, Scenario, app_db  # noqa: E402,F401 - fixture

LATE_ROW = (
    "INSERT INTO step_events (id, user_id, created_at, step_date, steps, source) "
    "VALUES (900010, 9, '2024-03-31 08:00:00+02', '2024-03-31', 800, 'garmin')"
)


@pytest.fixture
def scenario(app_db, lake_env, clients):  # noqa: F811
    return Scenario(lake_env, clients, app_db)


def test_rows_redaction_deleted_stay_through_every_re_export_and_a_row_the_app_deleted_leaves(scenario):
    day_rows = scenario.pg_ids(DAY)
    scenario.export()
    changed = min(day_rows)
    scenario.execute("UPDATE step_events SET steps = steps + 1 WHERE id = %s", (changed,))
    scenario.execute(LATE_ROW)
    report = scenario.redact()
    assert report.rows_deleted == len(day_rows) - 1 and report.audit_objects == report.batches
    audited = redaction_audit.read_deleted_keys(
        scenario.clients.s3, scenario.clients.filesystem, scenario.settings.lake, "step_events", DAY, ["id"]
    )
    assert set(audited.column("id").to_pylist()) == day_rows - {changed}
    scenario.execute("DELETE FROM step_events WHERE id = %s", (changed,))  # the app's own delete

    second = scenario.export()

    assert (second.carried_rows, second.dropped_rows) == (len(day_rows) - 1, 1)
    assert scenario.lake_ids() == (day_rows - {changed}) | {900010}
    scenario.redact()  # the late row goes too, with its proof
    for _ in range(2):
        again = scenario.export()
        assert (again.carried_rows, again.dropped_rows) == (len(day_rows), 0)
        assert scenario.lake_ids() == (day_rows - {changed}) | {900010}
    assert scenario.pg_ids(DAY) == set()
    comparison = restate.compare_rows(
        scenario.settings, scenario.catalog, scenario.table, DAY, clients=scenario.clients
    )
    assert comparison.equal and (comparison.redacted, comparison.source_rows) == (len(day_rows), 0)


def test_a_row_whose_day_moved_after_the_export_ends_up_in_exactly_one_day(scenario):
    scenario.export(DAY)
    scenario.export(OTHER_DAY)
    moved = min(scenario.pg_ids(DAY))
    scenario.execute("UPDATE step_events SET created_at = created_at - interval '1 day' WHERE id = %s", (moved,))

    first = scenario.export(DAY)
    scenario.export(OTHER_DAY)

    assert (first.carried_rows, first.dropped_rows) == (0, 1)
    assert moved not in scenario.lake_ids(DAY) and moved in scenario.lake_ids(OTHER_DAY)
    assert scenario.lake_ids(DAY) == scenario.pg_ids(DAY)
    assert scenario.lake_ids(OTHER_DAY) == scenario.pg_ids(OTHER_DAY)


def test_an_export_made_before_the_audit_existed_keeps_every_absent_row(scenario):
    """Its redactions may have left no audit: unsure rows are kept (the old rule), never lost."""
    day_rows = scenario.pg_ids(DAY)
    scenario.export()
    manifest = scenario.manifest()
    del manifest.extra[redaction_audit.MANIFEST_ENTRY]
    partition = scenario.glue.get_partition("step_events", DAY.isoformat())
    bucket, key = partition["Parameters"]["weward.manifest"].removeprefix("s3://").split("/", 1)
    write_manifest(scenario.clients.s3, bucket, key, manifest)
    gone = min(day_rows)
    scenario.execute("DELETE FROM step_events WHERE id = %s", (gone,))

    result = scenario.export()

    assert (result.carried_rows, result.dropped_rows) == (1, 0)
    assert scenario.lake_ids() == day_rows
    assert redaction_audit.MANIFEST_ENTRY in scenario.manifest().extra


# -- through Dagster: the daily tick re-exports what changed --------------------------------------------

from zoneinfo import ZoneInfo  # noqa: E402

import dagster as dg  # noqa: E402

from weward_pipeline.defs.assets import lake_key  # noqa: E402
from weward_pipeline.defs.checks import CHECK_NAMES  # noqa: E402
from weward_pipeline.defs.factory import build_definitions  # noqa: E402
from weward_pipeline.defs.restatement import (  # noqa: E402
    RESTATED_BECAUSE_TAG,
    RESTATEMENT_JOB,
    RESTATEMENT_SCHEDULE,
    SOURCE_CHECK,
)
from weward_pipeline.defs.schedules import ScheduleSettings  # noqa: E402

PARIS = ZoneInfo(TIMEZONE)


class DagsterShop(Shop):
    def __init__(self, lake_env, clients, pg_url, monkeypatch, *tables):
        super().__init__(lake_env, clients, pg_url, {**PURCHASES, "restate_days": 3})
        self.catalog = make_catalog(*(tables or ({**PURCHASES, "restate_days": 3},)))
        monkeypatch.setenv("WEWARD_PG_URL", pg_url)
        self.defs = build_definitions(self.catalog, schedules=ScheduleSettings())
        self.instance = dg.DagsterInstance.ephemeral()

    def export_days(self, *days, tables=("purchases",)):
        job = self.defs.resolve_job_def(RESTATEMENT_JOB)
        for day in days:
            result = job.execute_in_process(
                partition_key=day.isoformat(), instance=self.instance, asset_selection=[lake_key(t) for t in tables]
            )
            assert result.success

    def tick(self, exported_day: dt.date) -> list[dg.RunRequest]:
        """The restatement schedule, evaluated at 02:00 the day after `exported_day` (as the daemon would)."""
        tick = dt.datetime.combine(exported_day + dt.timedelta(days=1), dt.time(2), tzinfo=PARIS)
        schedule = self.defs.resolve_schedule_def(RESTATEMENT_SCHEDULE)
        context = dg.build_schedule_context(
            instance=self.instance,
            scheduled_execution_time=tick,
            repository_def=self.defs.get_repository_def(),
            resources=self.defs.resources,
        )
        return list(schedule.evaluate_tick(context).run_requests or [])

    def launch(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        """What the daemon does with a request: the job subset it names, the partition and tags it gives."""
        job = self.defs.resolve_job_def(RESTATEMENT_JOB)
        subset = job.get_subset(
            asset_selection=set(request.asset_selection),
            asset_check_selection=set(request.asset_check_keys) if request.asset_check_keys is not None else None,
        )
        return subset.execute_in_process(
            instance=self.instance,
            raise_on_error=False,
            tags={**request.tags, "dagster/partition": request.partition_key},
        )


@pytest.fixture
def dagster_shop(shop_db, lake_env, clients, monkeypatch):
    return DagsterShop(lake_env, clients, shop_db, monkeypatch)


def test_the_next_daily_tick_re_exports_a_changed_day_until_the_lake_equals_postgresql_and_says_why(dagster_shop):
    shop = dagster_shop
    day = FIRST_DAY + dt.timedelta(days=10)
    shop.export_days(day - dt.timedelta(days=1), day, day + dt.timedelta(days=1))
    rows = shop.pg_rows(day)
    late_at = DayWindow(day, TIMEZONE).start + dt.timedelta(hours=23, minutes=30)
    updated, deleted = sorted(rows)[:2]
    shop.sql(
        "INSERT INTO purchases (id, purchased_at, status, amount, updated_at) VALUES (990001, %s, 'pending', 9, now())",
        (late_at,),
    )
    shop.sql("UPDATE purchases SET status = 'refunded', updated_at = now() WHERE id = %s", (updated,))
    shop.sql("DELETE FROM purchases WHERE id = %s", (deleted,))
    assert shop.lake_rows(day) == rows

    requests = shop.tick(day + dt.timedelta(days=1))  # exports day+1; compares day .. day-2

    [restatement] = [r for r in requests if r.asset_selection]
    assert restatement.partition_key == day.isoformat()
    assert restatement.asset_selection == [lake_key("purchases")]
    why = json.loads(restatement.tags[RESTATED_BECAUSE_TAG])["purchases"]
    assert why == "2 row(s) added or updated since the export (updated column)"  # +1 -1: the count alone is even
    result = shop.launch(restatement)
    assert result.success
    [materialization] = result.asset_materializations_for_node("lake__purchases")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert (metadata["rows_added"], metadata["rows_changed"], metadata["rows_deleted"]) == (1, 1, 1)
    assert metadata["restated_because"] == why
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert {name: checks[name] for name in (*CHECK_NAMES.values(), SOURCE_CHECK)} == {
        **{name: True for name in CHECK_NAMES.values()},
        SOURCE_CHECK: True,
    }
    assert shop.lake_rows(day) == shop.pg_rows(day)
    assert shop.lake_rows(day)[updated] == ("refunded", rows[updated][1])

    again = shop.tick(day + dt.timedelta(days=1))
    assert [r for r in again if r.asset_selection] == []  # equal now: nothing to do


def test_a_change_older_than_the_window_fails_the_check_with_the_command_and_verify_names_the_key(
    dagster_shop, capsys, tmp_path, monkeypatch
):
    shop = dagster_shop
    old = FIRST_DAY + dt.timedelta(days=2)
    shop.export_days(old)
    gone = min(shop.pg_rows(old))
    shop.sql("DELETE FROM purchases WHERE id = %s", (gone,))

    exported = old + dt.timedelta(days=3)  # the window is old+2 .. old: `old` leaves it on the next tick
    requests = shop.tick(exported + dt.timedelta(days=1))

    [check_run] = [r for r in requests if r.asset_check_keys]
    assert check_run.partition_key == old.isoformat() and check_run.asset_selection == []
    assert check_run.asset_check_keys == [dg.AssetCheckKey(lake_key("purchases"), SOURCE_CHECK)]
    result = shop.launch(check_run)
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert result.get_asset_materialization_events() == []  # a check-only run re-exports nothing
    fix = evaluation.metadata["fix"].value
    assert f"--select lake/purchases --partition {old}" in fix and f"weward-pipeline verify purchases {old}" in fix

    shop.sql("UPDATE purchases SET amount = amount + 1 WHERE id = %s", (gone + 1,))
    catalog_file = tmp_path / "tables.yaml"
    catalog_file.write_text(
        yaml.safe_dump({"start_date": "2024-01-01", "timezone": TIMEZONE, "tables": [{**PURCHASES, "restate_days": 3}]})
    )
    monkeypatch.setenv("WEWARD_TABLES_FILE", str(catalog_file))
    capsys.readouterr()
    assert cli.main(["verify", "purchases", old.isoformat()]) == 1
    out = capsys.readouterr().out
    assert f"purchases {old}: DIFFERS" in out
    assert f"1 extra (in the lake, gone from PostgreSQL), e.g. keys [{gone}]" in out
    assert f"1 changed (other values in PostgreSQL), e.g. keys [{gone + 1}]" in out
    assert "missing" not in out


def test_an_update_stamped_before_the_export_but_committed_after_it_is_still_seen(shop):
    """A transaction in flight at export time stamps its rows with its own start (now()): before the
    snapshot, yet invisible to it. The export counted the rows stamped just before its snapshot."""
    day = FIRST_DAY + dt.timedelta(days=7)
    shop.export(day)
    _, manifest = restate.published_manifest(shop.glue, shop.clients.s3, "purchases", day.isoformat())
    assert manifest.extra[restate.MANIFEST_ENTRY] == {
        "updated_after_snapshot": 0,
        "updated_in_margin": 0,
        "margin_s": 600,
    }
    in_flight = dt.datetime.fromisoformat(manifest.snapshot_at) - dt.timedelta(minutes=1)
    shop.sql(
        "UPDATE purchases SET status = 'delivered', updated_at = %s WHERE id = %s", (in_flight, first_id(shop, day))
    )

    [status], _ = shop.compare(day)

    assert status.source_rows == status.exported_rows and status.updated_rows == 1 and status.changed


# -- every publish is checked, and redaction follows it -------------------------------------------------

from weward_pipeline.defs.erasure import ERASURE_JOB  # noqa: E402
from weward_pipeline_tests.test_redaction import STEP_EVENTS  # noqa: E402
from weward_pipeline_tests.test_redaction_dagster import LAKE, REDACTION, Pipeline  # noqa: E402


class ErasablePipeline(Pipeline):
    def __init__(self, lake_env, clients, pg_url, monkeypatch):
        Scenario.__init__(
            self,
            lake_env,
            clients,
            pg_url,
            {**STEP_EVENTS, "user_column": "user_id", "pii": {"user_id": "keep", "device_id": "drop"}},
        )
        monkeypatch.setenv("WEWARD_PG_URL", pg_url)
        self.defs = build_definitions(self.catalog)
        self.instance = dg.DagsterInstance.ephemeral()


def test_a_day_rewritten_by_erasure_gets_its_checks_and_is_then_redacted(
    app_db, lake_env, clients, monkeypatch, tmp_path
):  # noqa: F811
    pipeline = ErasablePipeline(lake_env, clients, app_db, monkeypatch)
    assert pipeline.run(LAKE, day=DAY.isoformat()).success
    exported = pipeline.manifest().export_id
    with psycopg.connect(app_db) as conn:
        (user,) = conn.execute("SELECT user_id FROM step_events WHERE id = %s", (min(pipeline.pg_ids(DAY)),)).fetchone()
    request = tmp_path / "request.txt"
    request.write_text(f"{user}\n")

    erasure = pipeline.defs.resolve_job_def(ERASURE_JOB).execute_in_process(
        instance=pipeline.instance, run_config={"ops": {"erase_users": {"config": {"request_url": str(request)}}}}
    )

    rewritten = pipeline.manifest().export_id
    assert erasure.success and rewritten != exported
    evaluations = erasure.get_asset_check_evaluations()
    assert {(e.check_name, e.passed, e.partition, e.metadata["export_id"].value) for e in evaluations} == {
        (name, True, DAY.isoformat(), rewritten) for name in CHECK_NAMES.values()
    }
    left = pipeline.pg_ids(DAY)
    redaction = pipeline.run(REDACTION, day=DAY.isoformat())
    assert redaction.success
    [materialization] = redaction.asset_materializations_for_node("redaction__step_events")
    assert materialization.metadata["export_id"].value == rewritten
    assert materialization.metadata["rows_deleted"].value == pipeline.manifest().source_rows > 0
    assert pipeline.pg_ids(DAY) == left - pipeline.lake_ids()


# -- readers -----------------------------------------------------------------------------------------------


def test_readers_see_each_day_old_or_restated_never_a_mix_while_a_tick_restates_several_days(dagster_shop):
    import threading

    shop = dagster_shop
    days = [FIRST_DAY + dt.timedelta(days=n) for n in (20, 21, 22)]
    shop.export_days(*days)
    before = {day: shop.lake_rows(day) for day in days}
    for day in days:
        shop.sql("UPDATE purchases SET status = 'delivered', updated_at = now() WHERE id = %s", (first_id(shop, day),))
        shop.sql("DELETE FROM purchases WHERE id = %s", (first_id(shop, day) + 1,))
    after = {day: shop.pg_rows(day) for day in days}
    requests = [r for r in shop.tick(days[-1] + dt.timedelta(days=1)) if r.asset_selection]
    assert sorted(r.partition_key for r in requests) == [d.isoformat() for d in days]  # one run per day
    done = threading.Event()
    outcomes = []

    def restate_all():
        try:
            outcomes.extend(shop.launch(r).success for r in requests)
        finally:
            done.set()

    worker = threading.Thread(target=restate_all)
    worker.start()
    seen, unreadable = {day: set() for day in days}, 0
    while not done.is_set():
        for day in days:
            try:
                rows = shop.lake_rows(day)
            except (OSError, AssertionError):  # the old prefix deleted between listing and reading: no mix
                unreadable += 1
                continue
            assert rows in (before[day], after[day]), f"{day}: a mix of the old and the restated day"
            seen[day].add("old" if rows == before[day] else "new")
    worker.join()
    assert outcomes == [True] * 3
    assert all(shop.lake_rows(day) == after[day] for day in days)
    assert any("old" in s for s in seen.values())  # the reader did read while the runs went on


# -- a re-export's diff against the published export (restate.ExportDiff) -----------------------------


@pytest.mark.parametrize("primary_key", [["id"], ["user_id", "day"]])
@pytest.mark.parametrize("updated_column", ["updated_at", None])
def test_a_re_exports_diff_counts_added_changed_and_deleted_rows_by_primary_key(tmp_path, primary_key, updated_column):
    """One key column goes through a hash set of the previous keys, several through a join: same answer."""
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from weward_pipeline.lake import Manifest, WrittenObject

    def rows(ids, stamps):
        data = {"id": pa.array(ids, pa.int64()), "user_id": pa.array([i // 10 for i in ids], pa.int64())}
        data["day"] = pa.array([f"d{i % 10}" for i in ids])
        data["created_at"] = pa.array([0] * len(ids), pa.timestamp("us", tz="UTC"))
        data["updated_at"] = pa.array(stamps, pa.timestamp("us", tz="UTC"))
        data["status"] = pa.array(["x"] * len(ids))
        return pa.RecordBatch.from_pydict(data)

    before = rows(list(range(100)), [1_000] * 100)
    pq.write_table(pa.Table.from_batches([before]), tmp_path / "part-00000.parquet")
    spec = {"name": "t", "mode": "append", "partition_column": "created_at", "primary_key": primary_key}
    table = make_catalog({**spec, **({"updated_column": updated_column} if updated_column else {})}).table("t")
    previous = Manifest(
        table="t",
        day="2024-03-01",
        export_id="e1",
        location="unused",
        objects=[WrittenObject(key="part-00000.parquet", rows=100)],
        rows=100,
        source_rows=100,
        window=None,
        columns=[{"name": n, "type": "x"} for n in before.schema.names],
        mode="append",
        created_at="2024-03-02T00:00:00+00:00",
    )
    diff = restate.ExportDiff(table, previous, pafs.LocalFileSystem(), str(tmp_path))
    # Rows 0-4 deleted (2 of them redacted: carried over), 100-102 added, 10-13 updated, one batch at a time.
    ids = list(range(5, 103))
    stamps = [2_000 if 10 <= i <= 13 else 1_000 for i in ids]
    diff.add(rows(ids[:50], stamps[:50]))
    diff.add(rows(ids[50:], stamps[50:]))

    changes = diff.finish(carried_rows=2)

    assert changes == {
        "previous_export_id": "e1",
        "rows_added": 3,
        "rows_deleted": 3,
        "rows_changed": 4 if updated_column else None,
    }


def test_keys_kept_across_a_day_are_copies_not_views_of_the_read_batches():
    """A view of an ADBC batch's column keeps the whole batch (every column) alive until the view goes."""
    import pyarrow as pa

    from weward_pipeline.extract import detached_columns

    batch = pa.RecordBatch.from_pydict({"id": pa.array([1, 2, 3], pa.int64()), "payload": ["a", "b", "c"]})
    kept = detached_columns(batch, ["id"])
    assert kept.schema.names == ["id"] and kept.column(0).to_pylist() == [1, 2, 3]
    assert kept.column(0).buffers()[1].address != batch.column(0).buffers()[1].address
