"""`query`: SQL on the lake from Dagster code (Athena in production, DuckDB on the local stack)."""

import os

import dagster as dg

from weward_pipeline.config import DEFAULT_AWS_REGION, DEFAULT_GLUE_DATABASE
from weward_pipeline.query import ENGINES, QueryProgress, QueryResult, QuerySettings, build_engine, parse_size


class QueryResource(dg.ConfigurableResource):
    """Runs SQL against the Glue database, like `weward-pipeline query`.

    `engine="auto"` means DuckDB over the lake's Parquet objects when an AWS endpoint override is
    set (the local stack: moto runs no SQL), Athena otherwise.
    """

    engine: str = "auto"
    glue_database: str = DEFAULT_GLUE_DATABASE
    aws_region: str = DEFAULT_AWS_REGION
    aws_endpoint_url: str | None = None
    athena_workgroup: str = "primary"
    athena_output: str | None = None
    # Stop (and fail) a query past this many bytes scanned; the workgroup's cutoff applies as well.
    max_bytes_scanned: int | None = None
    timeout_s: float | None = None

    def settings(self) -> QuerySettings:
        if self.engine not in ENGINES:
            raise dg.Failure(
                description=f"query resource: engine must be one of {', '.join(ENGINES)}, got {self.engine!r}",
                allow_retries=False,
            )
        return QuerySettings(
            glue_database=self.glue_database,
            aws_region=self.aws_region,
            aws_endpoint_url=self.aws_endpoint_url,
            athena_workgroup=self.athena_workgroup,
            athena_output=self.athena_output,
            max_bytes_scanned=self.max_bytes_scanned,
            engine=self.engine,
        )

    def run(self, sql: str, log=None) -> QueryResult:
        """Run one statement; progress (state, bytes scanned) goes to `log` (e.g. context.log)."""
        last = {"state": None}

        def progress(p: QueryProgress) -> None:
            if log is not None and p.state != last["state"]:
                last["state"] = p.state
                log.info(
                    f"query {p.query_id or ''} {p.state} after {p.elapsed_s:.1f} s, {p.bytes_scanned} bytes scanned"
                )

        engine = build_engine(
            self.settings(), max_bytes_scanned=self.max_bytes_scanned, timeout_s=self.timeout_s, progress=progress
        )
        result = engine.run(sql)
        if log is not None:
            log.info(result.summary())
        return result

    @staticmethod
    def metadata(result: QueryResult) -> dict:
        """Materialization metadata for a query-backed asset: size, scan and cost."""
        metadata = {
            "dagster/row_count": dg.MetadataValue.int(result.table.num_rows),
            "query_engine": dg.MetadataValue.text(result.engine),
            "bytes_scanned": dg.MetadataValue.int(result.bytes_scanned),
            "cost_usd": dg.MetadataValue.float(round(result.cost_usd, 6)),
            "elapsed_s": dg.MetadataValue.float(round(result.elapsed_s, 3)),
            "sql": dg.MetadataValue.md(f"```sql\n{result.sql}\n```"),
        }
        if result.query_id:
            metadata["athena_query_id"] = dg.MetadataValue.text(result.query_id)
        return metadata


def query_resource_from_env() -> QueryResource:
    """Deploy-time values from the environment (deploy/<env>.env): none of them is a secret."""
    settings = QuerySettings.from_env()
    return QueryResource(
        engine=settings.engine,
        glue_database=settings.glue_database,
        aws_region=settings.aws_region,
        aws_endpoint_url=settings.aws_endpoint_url,
        athena_workgroup=settings.athena_workgroup,
        athena_output=settings.athena_output,
        max_bytes_scanned=parse_size(os.environ.get("WEWARD_QUERY_MAX_BYTES_SCANNED")),
    )
