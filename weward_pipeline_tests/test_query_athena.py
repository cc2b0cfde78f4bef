"""The Athena engine against the moto server: requests, polling, cancellation, results, errors.

moto's Athena runs no SQL: it records each query execution, moves it QUEUED -> RUNNING ->
SUCCEEDED (one step per GetQueryExecution with a manual transition), honours
StopQueryExecution, and returns results queued through its /moto-api. So these tests prove what
the engine sends and how it polls, stops and reads results; the failure reasons Athena gives
(moto never fails a query) are fed to `AthenaEngine.failure` in Athena's documented shape.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import secrets
import urllib.request

import pytest

from weward_pipeline import aws
from weward_pipeline.glue import GlueCatalog, GlueColumn
from weward_pipeline.query import (
    AthenaEngine,
    BytesScannedLimitError,
    QueryCancelledError,
    QueryError,
    QueryFailedError,
    QuerySettings,
    QuerySyntaxError,
    UnknownTableError,
    athena_cost_usd,
    latest_view_sql,
)

MOTO_ACCOUNT = "123456789012"


def moto_api(aws_server, path: str, payload: dict) -> None:
    request = urllib.request.Request(
        f"{aws_server.endpoint_url}/moto-api/{path}",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (200, 201)


def queue_result(aws_server, rows: list[list[str | None]], columns: list[dict]) -> None:
    """What moto answers to the next query: rows as Athena encodes them (absent value = NULL)."""
    moto_api(
        aws_server,
        "static/athena/query-results",
        {
            "account_id": MOTO_ACCOUNT,
            "region": aws_server.env()["AWS_REGION"],
            "results": [
                {
                    "rows": [{"Data": [{} if v is None else {"VarCharValue": v} for v in row]} for row in rows],
                    "column_info": columns,
                }
            ],
        },
    )


@pytest.fixture
def slow_athena(aws_server):
    """Queries advance one state per `times` polls; restored to immediate afterwards."""

    def set_ticks(times: int) -> None:
        moto_api(
            aws_server,
            "state-manager/set-transition",
            {"model_name": "athena::execution", "transition": {"progression": "manual", "times": times}},
        )

    yield set_ticks
    moto_api(aws_server, "state-manager/unset-transition", {"model_name": "athena::execution"})


@pytest.fixture
def athena_setup(lake_env, aws_server):
    """A Glue database with one snapshot and one append table, a results bucket, a workgroup."""
    settings = QuerySettings.from_env(lake_env)
    athena, glue = aws.clients(settings, "athena", "glue")
    catalog = GlueCatalog(glue, settings.glue_database)
    catalog.ensure_database()
    for name, mode in (("users", "snapshot"), ("step_events", "append")):
        catalog.ensure_table(
            name, f"s3://unused/{name}/", [GlueColumn("id", "bigint")], parameters={"weward.mode": mode}
        )
    results_bucket = f"athena-results-{secrets.token_hex(3)}"
    aws_server.create_bucket(results_bucket, versioning=False)
    workgroup = f"analysts-{secrets.token_hex(3)}"
    athena.create_work_group(
        Name=workgroup,
        Configuration={
            "ResultConfiguration": {"OutputLocation": f"s3://{results_bucket}/results/"},
            "EnforceWorkGroupConfiguration": True,
            "BytesScannedCutoffPerQuery": 10 * 1024**3,
        },
    )

    class Setup:
        pass

    setup = Setup()
    setup.settings, setup.athena, setup.glue, setup.workgroup = settings, athena, glue, workgroup
    setup.results_bucket = results_bucket

    def engine(**kwargs) -> AthenaEngine:
        kwargs.setdefault("poll_interval_s", (0.01, 0.05))
        return AthenaEngine(athena, glue, settings.glue_database, workgroup=workgroup, **kwargs)

    setup.engine = engine
    return setup


COLUMNS = [
    {"Name": "day", "Label": "day", "Type": "varchar"},
    {"Name": "syncs", "Label": "syncs", "Type": "bigint"},
    {"Name": "wards", "Label": "wards", "Type": "decimal", "Precision": 38, "Scale": 2},
    {"Name": "first_sync", "Label": "first_sync", "Type": "timestamp"},
    {"Name": "step_date", "Label": "step_date", "Type": "date"},
    {"Name": "mean", "Label": "mean", "Type": "double"},
    {"Name": "opted_in", "Label": "opted_in", "Type": "boolean"},
]


def test_a_query_runs_in_the_workgroup_on_the_glue_database_and_comes_back_typed(aws_server, athena_setup):
    sql = "SELECT dt AS day, count(*) AS syncs FROM step_events WHERE dt = '2024-03-31' GROUP BY dt"
    queue_result(
        aws_server,
        [
            ["day", "syncs", "wards", "first_sync", "step_date", "mean", "opted_in"],  # Athena's header row
            ["2024-03-31", "1234", "99.50", "2024-03-30 23:00:00.000", "2024-03-31", "1.5E2", "true"],
            ["2024-04-01", "7", None, None, None, None, "false"],
        ],
        COLUMNS,
    )
    result = athena_setup.engine().run(sql + ";")

    assert result.rows == [
        {
            "day": "2024-03-31",
            "syncs": 1234,
            "wards": decimal.Decimal("99.50"),
            "first_sync": dt.datetime(2024, 3, 30, 23),
            "step_date": dt.date(2024, 3, 31),
            "mean": 150.0,
            "opted_in": True,
        },
        {
            "day": "2024-04-01",
            "syncs": 7,
            "wards": None,
            "first_sync": None,
            "step_date": None,
            "mean": None,
            "opted_in": False,
        },
    ]
    execution = athena_setup.athena.get_query_execution(QueryExecutionId=result.query_id)["QueryExecution"]
    assert execution["Query"] == sql
    assert execution["WorkGroup"] == athena_setup.workgroup
    assert execution["QueryExecutionContext"] == {
        "Database": athena_setup.settings.glue_database,
        "Catalog": "AwsDataCatalog",
    }
    assert result.workgroup == athena_setup.workgroup
    assert (
        "scanned 0 B" in result.summary()
        and "cost $0.000000 at $5/TB" in result.summary()
        and result.query_id in result.summary()
    )


def test_the_client_results_location_is_sent_when_the_workgroup_does_not_enforce_its_own(aws_server, athena_setup):
    workgroup = f"loose-{secrets.token_hex(3)}"
    athena_setup.athena.create_work_group(Name=workgroup, Configuration={"EnforceWorkGroupConfiguration": False})
    output = f"s3://{athena_setup.results_bucket}/mine/"
    engine = AthenaEngine(
        athena_setup.athena,
        athena_setup.glue,
        athena_setup.settings.glue_database,
        workgroup=workgroup,
        output_location=output,
        poll_interval_s=(0.01, 0.05),
    )
    result = engine.run("SELECT 1")
    assert result.output_location.startswith(output) and result.output_location.endswith(f"{result.query_id}.csv")


def test_progress_is_reported_on_each_state_while_polling(athena_setup, slow_athena):
    slow_athena(2)
    seen = []
    result = athena_setup.engine(progress=seen.append).run("SELECT count(*) FROM users_latest")
    states = [p.state for p in seen]
    assert states[0] == "QUEUED" and states[-1] == "SUCCEEDED" and "RUNNING" in states
    assert states.index("RUNNING") < states.index("SUCCEEDED")
    assert all(p.query_id == result.query_id for p in seen)
    assert [p.elapsed_s for p in seen] == sorted(p.elapsed_s for p in seen)


def test_a_query_past_its_timeout_is_stopped_in_athena(athena_setup, slow_athena):
    slow_athena(100_000)
    engine = athena_setup.engine(timeout_s=0.3)
    seen = []
    engine.progress = seen.append
    with pytest.raises(QueryCancelledError) as error:
        engine.run("SELECT * FROM step_events")
    query_id = seen[-1].query_id
    assert f"Athena query {query_id} stopped after the 0.3 s timeout" in str(error.value)
    status = athena_setup.athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]
    assert status["State"] == "CANCELLED"


def test_ctrl_c_stops_the_query_in_athena(athena_setup, slow_athena):
    slow_athena(100_000)
    polls = []

    def progress(p):
        polls.append(p)
        if len(polls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(QueryCancelledError) as error:
        athena_setup.engine(progress=progress).run("SELECT * FROM step_events")
    assert "cancelled (Ctrl-C)" in str(error.value)
    state = athena_setup.athena.get_query_execution(QueryExecutionId=polls[0].query_id)["QueryExecution"]["Status"][
        "State"
    ]
    assert state == "CANCELLED"


def test_a_query_cancelled_elsewhere_is_reported_as_cancelled(athena_setup, slow_athena):
    slow_athena(100_000)

    def someone_else_stops_it(p):
        if p.state == "QUEUED":
            athena_setup.athena.stop_query_execution(QueryExecutionId=p.query_id)

    with pytest.raises(QueryCancelledError) as error:
        athena_setup.engine(progress=someone_else_stops_it).run("SELECT * FROM step_events")
    assert "was cancelled (from the console or another client)" in str(error.value)


def test_an_unknown_workgroup_says_which_variable_to_set(athena_setup):
    engine = AthenaEngine(athena_setup.athena, athena_setup.glue, athena_setup.settings.glue_database, workgroup="nope")
    with pytest.raises(QueryError) as error:
        engine.run("SELECT 1")
    assert "workgroup 'nope' does not exist" in str(error.value) and "WEWARD_ATHENA_WORKGROUP" in str(error.value)


def test_a_missing_results_location_says_how_to_set_one(athena_setup):
    workgroup = f"bare-{secrets.token_hex(3)}"
    athena_setup.athena.create_work_group(Name=workgroup, Configuration={})
    engine = AthenaEngine(
        athena_setup.athena, athena_setup.glue, athena_setup.settings.glue_database, workgroup=workgroup
    )
    with pytest.raises(QueryError) as error:
        engine.run("SELECT 1")
    assert "WEWARD_ATHENA_OUTPUT" in str(error.value)


def test_create_latest_views_sends_one_create_view_per_snapshot_table(athena_setup):
    results = athena_setup.engine().create_latest_views()
    database = athena_setup.settings.glue_database
    assert [r.sql for r in results] == [latest_view_sql(database, "users")]
    sent = athena_setup.athena.get_query_execution(QueryExecutionId=results[0].query_id)["QueryExecution"]
    assert sent["Query"].startswith(f'CREATE OR REPLACE VIEW "{database}"."users_latest" AS')
    assert sent["StatementType"] == "DDL" and results[0].cost_usd == 0.0
    with pytest.raises(QueryError, match="not snapshot tables"):
        athena_setup.engine().create_latest_views(["step_events"])


# Failure reasons as Athena (engine version 3) reports them in GetQueryExecution's Status.
def _failed(state: str, reason: str, scanned: int = 0, error_type: int | None = None) -> dict:
    status = {"State": state, "StateChangeReason": reason}
    if error_type is not None:
        status["AthenaError"] = {
            "ErrorCategory": 2,
            "ErrorType": error_type,
            "Retryable": False,
            "ErrorMessage": reason,
        }
    return {"QueryExecutionId": "q-1", "Status": status, "Statistics": {"DataScannedInBytes": scanned}}


def test_the_workgroup_scan_cutoff_is_explained_with_the_limit_and_the_fix(athena_setup):
    execution = _failed("CANCELLED", "Bytes scanned limit was exceeded", scanned=10 * 1024**3 + 1)
    error = athena_setup.engine().failure(execution, "SELECT * FROM step_events")
    assert isinstance(error, BytesScannedLimitError)
    message = str(error)
    assert "10.00 GB" in message and f"Athena workgroup {athena_setup.workgroup}" in message
    assert "WHERE dt BETWEEN" in message and "bytes_scanned_cutoff_per_query" in message


def test_athena_table_not_found_lists_the_lake_tables(athena_setup):
    database = athena_setup.settings.glue_database
    reason = f"TABLE_NOT_FOUND: line 1:15: Table 'awsdatacatalog.{database}.step_event' does not exist"
    error = athena_setup.engine().failure(_failed("FAILED", reason, error_type=1301), "SELECT * FROM step_event")
    assert isinstance(error, UnknownTableError)
    assert error.missing == ["step_event"]
    assert "did you mean step_events" in str(error) and "users_latest" in str(error)


def test_athena_syntax_error_keeps_the_position(athena_setup):
    sql = "SELECT dt\nFORM step_events"
    reason = "line 2:1: mismatched input 'FORM'. Expecting: ',', 'FROM', <EOF>"
    error = athena_setup.engine().failure(_failed("FAILED", reason, error_type=1004), sql)
    assert isinstance(error, QuerySyntaxError) and (error.line, error.column) == (2, 1)
    assert "mismatched input 'FORM'" in str(error) and "FORM step_events\n  ^" in str(error)


def test_athena_column_error_is_a_query_failure_with_position(athena_setup):
    reason = "COLUMN_NOT_FOUND: line 1:8: Column 'stepz' cannot be resolved or requester is not authorized to access requested resources"
    error = athena_setup.engine().failure(_failed("FAILED", reason, error_type=1006), "SELECT stepz FROM step_events")
    assert isinstance(error, QueryFailedError) and (error.line, error.column) == (1, 8)
    assert "Column 'stepz' cannot be resolved" in str(error)


def test_athena_bills_per_megabyte_with_a_ten_megabyte_minimum():
    assert athena_cost_usd(0) == 0.0
    assert athena_cost_usd(1) == pytest.approx(5.0 * 10 / 1024**2)  # 10 MB of a TB
    assert athena_cost_usd(1024**4) == pytest.approx(5.0)
    assert athena_cost_usd(10 * 1024**2 + 1) == pytest.approx(5.0 * 11 / 1024**2)


def test_sql_athena_would_refuse_fails_before_any_request(athena_setup):
    engine = athena_setup.engine()
    before = athena_setup.athena.list_query_executions(WorkGroup=athena_setup.workgroup)["QueryExecutionIds"]
    with pytest.raises(QuerySyntaxError) as error:
        engine.run("SELECT dt, count(*)\nFORM step_events\nGROUP BY dt")
    assert (error.value.line, error.value.column) == (2, 6) and "did you mean FROM?" in str(error.value)
    with pytest.raises(QueryFailedError, match="Athena has no function strftime"):
        engine.run("SELECT strftime(created_at, '%Y') FROM step_events")
    after = athena_setup.athena.list_query_executions(WorkGroup=athena_setup.workgroup)["QueryExecutionIds"]
    assert after == before
