"""The Athena engine: StartQueryExecution in the configured workgroup, polled until it settles.

Results go to WEWARD_ATHENA_OUTPUT or the workgroup's own location; progress is reported through
a callback; bytes scanned and their cost are reported; the query is stopped on Ctrl-C, timeout or
a client-side scan limit; Athena's failure reasons become errors an analyst can act on.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from weward_pipeline.query import dialect
from weward_pipeline.query.catalog import (
    ATHENA_CATALOG,
    latest_view_name,
    latest_view_sql,
    list_lake_tables,
    queryable_names,
)
from weward_pipeline.query.errors import (
    BytesScannedLimitError,
    QueryCancelledError,
    QueryError,
    QueryFailedError,
    QuerySyntaxError,
    UnknownTableError,
)
from weward_pipeline.query.output import QueryProgress, QueryResult
from weward_pipeline.query.settings import (
    ATHENA_USD_PER_TB,
    CLIENT_LIMIT_SOURCE,
    athena_cost_usd,
    format_bytes,
    format_usd,
)

TERMINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")
_ATHENA_POSITION = re.compile(r"line (\d+):(\d+):\s*(.*)", re.S)
_SYNTAX_MARKERS = ("mismatched input", "extraneous input", "no viable alternative", "syntax_error", "missing ")


def _athena_arrow_type(info: dict) -> pa.DataType:
    kind = info.get("Type", "varchar").lower()
    if kind in ("tinyint", "smallint", "integer", "int", "bigint"):
        return {"tinyint": pa.int8(), "smallint": pa.int16(), "integer": pa.int32(), "int": pa.int32()}.get(
            kind, pa.int64()
        )
    if kind in ("double", "float", "real"):
        return pa.float64() if kind == "double" else pa.float32()
    if kind == "decimal":
        precision = int(info.get("Precision") or 38)
        return pa.decimal128(max(precision, 1), int(info.get("Scale") or 0))
    if kind == "boolean":
        return pa.bool_()
    if kind == "date":
        return pa.date32()
    if kind == "timestamp":
        return pa.timestamp("us")
    return pa.string()  # varchar, char, json, array, map, row, time, interval, varbinary: Athena's text


def athena_rows_to_arrow(column_info: list[dict], rows: list[list[str | None]]) -> pa.Table:
    """Athena returns every value as text (or absent for NULL); type them back by ColumnInfo."""
    arrays = []
    for index, info in enumerate(column_info):
        target = _athena_arrow_type(info)
        texts = pa.array([row[index] if index < len(row) else None for row in rows], pa.string())
        if pa.types.is_string(target):
            arrays.append(texts)
        elif pa.types.is_boolean(target):
            arrays.append(pc.equal(pc.utf8_lower(texts), "true"))
        elif pa.types.is_timestamp(target):
            arrays.append(pa.array([None if t is None else _parse_timestamp(t) for t in texts.to_pylist()], target))
        else:
            arrays.append(texts.cast(target))
    names = [info.get("Label") or info.get("Name") or f"_col{i}" for i, info in enumerate(column_info)]
    return pa.table(arrays, names=names) if arrays else pa.table({})


def _parse_timestamp(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace(" ", "T"))


class AthenaEngine:
    """Athena through boto3: one query execution, polled until it settles."""

    name = "athena"

    def __init__(
        self,
        athena_client,
        glue_client,
        database: str,
        *,
        workgroup: str = "primary",
        output_location: str | None = None,
        max_bytes_scanned: int | None = None,
        timeout_s: float | None = None,
        progress: Callable[[QueryProgress], None] | None = None,
        poll_interval_s: tuple[float, float] = (0.2, 2.0),
        usd_per_tb: float = ATHENA_USD_PER_TB,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.athena = athena_client
        self.glue_client = glue_client
        self.database = database
        self.workgroup = workgroup
        self.output_location = output_location
        self.max_bytes_scanned = max_bytes_scanned
        self.timeout_s = timeout_s
        self.progress = progress
        self.poll_interval_s = poll_interval_s
        self.usd_per_tb = usd_per_tb
        self.sleep = sleep
        self._workgroup_config: dict | None = None

    def workgroup_configuration(self) -> dict:
        if self._workgroup_config is None:
            from botocore.exceptions import ClientError

            try:
                workgroup = self.athena.get_work_group(WorkGroup=self.workgroup).get("WorkGroup")
            except ClientError as exc:
                workgroup = None
                if exc.response.get("Error", {}).get("Code") not in (
                    "InvalidRequestException",
                    "ResourceNotFoundException",
                ):
                    raise QueryError(f"cannot read Athena workgroup {self.workgroup}: {exc}") from None
            if not workgroup:
                raise QueryError(
                    f"Athena workgroup {self.workgroup!r} does not exist (or you may not use it); set "
                    "WEWARD_ATHENA_WORKGROUP to the analysts' workgroup (infra/modules/catalog)"
                )
            if workgroup.get("State", "ENABLED") != "ENABLED":
                raise QueryError(f"Athena workgroup {self.workgroup!r} is disabled; ask the lake owners to enable it")
            self._workgroup_config = workgroup.get("Configuration") or {}
        return self._workgroup_config

    @property
    def workgroup_cutoff(self) -> int | None:
        return self.workgroup_configuration().get("BytesScannedCutoffPerQuery")

    def _result_location(self) -> str | None:
        configured = (self.workgroup_configuration().get("ResultConfiguration") or {}).get("OutputLocation")
        return self.output_location or configured

    def start(self, sql: str) -> str:
        from botocore.exceptions import ClientError

        config = self.workgroup_configuration()
        location = self._result_location()
        if not location:
            raise QueryError(
                f"Athena needs a results location: set WEWARD_ATHENA_OUTPUT=s3://bucket/prefix/ or configure "
                f"one on workgroup {self.workgroup}"
            )
        request = {
            "QueryString": sql,
            "QueryExecutionContext": {"Database": self.database, "Catalog": ATHENA_CATALOG},
            "WorkGroup": self.workgroup,
        }
        if self.output_location and not config.get("EnforceWorkGroupConfiguration"):
            request["ResultConfiguration"] = {"OutputLocation": self.output_location}
        try:
            return self.athena.start_query_execution(**request)["QueryExecutionId"]
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise QueryError(f"Athena refused the query ({error.get('Code')}): {error.get('Message')}") from None

    def _stop(self, query_id: str) -> None:
        try:
            self.athena.stop_query_execution(QueryExecutionId=query_id)
        except Exception:  # noqa: BLE001 - best effort; the caller reports the cancellation anyway
            pass

    def wait(self, query_id: str) -> dict:
        """Poll until the query settles; stop it on timeout, scan limit or Ctrl-C."""
        started = time.monotonic()
        interval = self.poll_interval_s[0]
        scanned = 0
        try:
            while True:
                execution = self.athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
                state = execution["Status"]["State"]
                scanned = int((execution.get("Statistics") or {}).get("DataScannedInBytes") or 0)
                elapsed = time.monotonic() - started
                if self.progress:
                    self.progress(QueryProgress(self.name, state, elapsed, scanned, query_id))
                if state in TERMINAL_STATES:
                    return execution
                if self.max_bytes_scanned is not None and scanned > self.max_bytes_scanned:
                    self._stop(query_id)
                    raise BytesScannedLimitError(
                        self.max_bytes_scanned, scanned, CLIENT_LIMIT_SOURCE, f"Athena query {query_id}"
                    )
                if self.timeout_s is not None and elapsed > self.timeout_s:
                    self._stop(query_id)
                    raise QueryCancelledError(
                        f"Athena query {query_id} stopped after the {self.timeout_s:g} s timeout; it had scanned "
                        f"{format_bytes(scanned)} (billed: {format_usd(athena_cost_usd(scanned, self.usd_per_tb))})",
                        scanned,
                    )
                self.sleep(interval)
                interval = min(interval * 1.5, self.poll_interval_s[1])
        except KeyboardInterrupt:
            self._stop(query_id)
            raise QueryCancelledError(
                f"Athena query {query_id} cancelled (Ctrl-C) after {time.monotonic() - started:.1f} s; it had scanned "
                f"{format_bytes(scanned)} (billed: {format_usd(athena_cost_usd(scanned, self.usd_per_tb))})",
                scanned,
            ) from None

    def failure(self, execution: dict, sql: str) -> QueryError:
        """Athena's FAILED/CANCELLED reasons, in the analyst's terms."""
        status = execution.get("Status", {})
        state = status.get("State")
        athena_error = status.get("AthenaError") or {}
        reason = status.get("StateChangeReason") or athena_error.get("ErrorMessage") or ""
        scanned = int((execution.get("Statistics") or {}).get("DataScannedInBytes") or 0)
        query_id = execution.get("QueryExecutionId")
        lowered = reason.lower()
        if "bytes scanned limit" in lowered:
            return BytesScannedLimitError(
                self.workgroup_cutoff, scanned, f"Athena workgroup {self.workgroup}", f"Athena query {query_id}"
            )
        if state == "CANCELLED":
            return QueryCancelledError(
                f"Athena query {query_id} was cancelled{': ' + reason if reason else ' (from the console or another client)'}; "
                f"it had scanned {format_bytes(scanned)}",
                scanned,
            )
        body = re.sub(r"^[A-Z_]+: ", "", reason)
        position = _ATHENA_POSITION.search(body)
        line = int(position.group(1)) if position else None
        column = int(position.group(2)) if position else None
        detail = position.group(3).strip() if position else body
        if "TABLE_NOT_FOUND" in reason or re.search(r"Table '[^']+' does not exist", reason):
            name = re.search(r"Table '([^']+)' does not exist", reason)
            missing = [name.group(1).split(".")[-1]] if name else [detail]
            try:
                lake = list_lake_tables(self.glue_client, self.database)
                known = sorted(
                    set(queryable_names({n: t for n, t in lake.items() if not t.is_view}))
                    | {n for n, t in lake.items() if t.is_view}
                )
            except Exception:  # noqa: BLE001 - the listing is a hint; the error stands without it
                known = []
            return UnknownTableError(missing, known, self.database)
        if "SCHEMA_NOT_FOUND" in reason or "Schema '" in reason:
            return QueryFailedError(
                f"{detail} (the lake's Glue database is {self.database}: WEWARD_GLUE_DATABASE)", sql, line, column
            )
        if any(marker in lowered for marker in _SYNTAX_MARKERS) or athena_error.get("ErrorType") == 1004:
            return QuerySyntaxError(detail, sql, line, column)
        return QueryFailedError(detail or f"Athena query {query_id} {state}", sql, line, column)

    def results(self, query_id: str, statement_type: str) -> pa.Table:
        pages = self.athena.get_paginator("get_query_results").paginate(
            QueryExecutionId=query_id, PaginationConfig={"PageSize": 1000}
        )
        column_info: list[dict] = []
        rows: list[list[str | None]] = []
        first = True
        for page in pages:
            result_set = page["ResultSet"]
            column_info = column_info or result_set.get("ResultSetMetadata", {}).get("ColumnInfo", [])
            page_rows = [[d.get("VarCharValue") for d in r.get("Data", [])] for r in result_set.get("Rows", [])]
            if first and page_rows and statement_type == "DML":
                labels = [c.get("Label") or c.get("Name") for c in column_info]
                if page_rows[0] == labels:
                    page_rows = page_rows[1:]  # a SELECT's first row repeats the column labels
            first = False
            rows.extend(page_rows)
        return athena_rows_to_arrow(column_info, rows)

    def run(self, sql: str) -> QueryResult:
        started = time.monotonic()
        sql = sql.strip().rstrip(";").strip()
        dialect.parse(sql)  # what Athena would refuse fails here, before any request (and any bill)
        query_id = self.start(sql)
        execution = self.wait(query_id)
        if execution["Status"]["State"] != "SUCCEEDED":
            raise self.failure(execution, sql)
        statement_type = execution.get("StatementType") or "DML"
        table = self.results(query_id, statement_type)
        stats = execution.get("Statistics") or {}
        return QueryResult(
            sql=sql,
            engine=self.name,
            table=table,
            bytes_scanned=int(stats.get("DataScannedInBytes") or 0),
            elapsed_s=time.monotonic() - started,
            query_id=query_id,
            workgroup=self.workgroup,
            output_location=(execution.get("ResultConfiguration") or {}).get("OutputLocation"),
            statement_type=statement_type,
            usd_per_tb=self.usd_per_tb,
            executed_sql=sql,
        )

    def create_latest_views(self, tables: list[str] | None = None) -> list[QueryResult]:
        """CREATE OR REPLACE VIEW <t>_latest for every snapshot table (or those named)."""
        lake = list_lake_tables(self.glue_client, self.database)
        snapshot = sorted(t.name for t in lake.values() if t.mode == "snapshot" and not t.is_view)
        chosen = snapshot if not tables else [t for t in tables if t in snapshot]
        unknown = sorted(set(tables or []) - set(snapshot))
        if unknown:
            raise QueryError(
                f"not snapshot tables of {self.database}: {', '.join(unknown)}; snapshot tables: {', '.join(snapshot) or '(none)'}"
            )
        results = []
        for name in chosen:
            view = latest_view_name(name)
            existing = lake.get(view)
            if existing is not None and not existing.is_view:
                raise QueryError(f"cannot create view {view}: a table of that name exists in {self.database}")
            results.append(self.run(latest_view_sql(self.database, name)))
        return results
