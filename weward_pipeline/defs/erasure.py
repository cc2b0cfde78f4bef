"""The `gdpr_erasure` job: the right to erasure, launched from the Dagster UI (Launchpad) or API.

The run config names a request file, never the ids themselves: Dagster keeps run configs forever
in its run storage and shows them in the UI, which is no place for the identities of people who
asked to be forgotten. Put the file (one user id per line) in a restricted location, e.g.
s3://<lake bucket>/_requests/erasure/<ticket>.txt with a short lifecycle, and launch:

    ops:
      erase_users:
        config:
          request_url: s3://weward-lake-prod/_requests/erasure/TICKET-1234.txt
          delete_from_postgres: true

Each rewritten day is recorded as an AssetObservation of `lake/<table>` (not a materialization:
the data was not re-exported, and redaction must not be re-triggered by it), with the erasure id,
rows erased and the new export id; the audit record itself is in S3 (`_audit/erasure/`). The
rewrite is a new publish of the day: its blocking checks are run on it right away (the same
verification, recorded as the checks' results for that day), so the day's redaction, which wants
passing checks for the export published now, proceeds by itself.
"""

from pathlib import Path

import dagster as dg
from pydantic import Field

from weward_pipeline.config import Catalog, ConfigError
from weward_pipeline.defs.assets import SOURCE_POOL, lake_key
from weward_pipeline.defs.checks import CHECK_NAMES, check_evaluations, verdict_observation
from weward_pipeline.defs.failures import as_failure
from weward_pipeline.defs.launch import task_definition_tags
from weward_pipeline.defs.resources import LakeResource
from weward_pipeline.erasure import ErasureError, ErasureLimits, ErasureRequest, erase_users, requests_url
from weward_pipeline.verify import verify_published_day

ERASURE_JOB = "gdpr_erasure"
# With the Dagster service, its runs start from the erasure task definition (erasure role and DSN),
# not the export's (defs/launch.py).
ERASURE_TASK_DEFINITION_ENV = "WEWARD_ERASURE_TASK_DEFINITION"


class ErasureConfig(dg.Config):
    request_url: str = Field(
        description="s3://<lake bucket>/_requests/erasure/<ticket>.txt, or a path the run worker "
        "can read: one user id per line"
    )
    delete_from_postgres: bool = Field(default=False, description="also delete the users' rows from PostgreSQL, first")
    dry_run: bool = Field(default=False, description="report what would be erased; change and write nothing")
    tables: list[str] = Field(
        default_factory=list, description="subset of the tables with a user_column (default: all)"
    )
    batch_rows: int = Field(default=ErasureLimits.batch_rows, description="PostgreSQL rows deleted per transaction")


def read_request(url: str, lake: LakeResource) -> ErasureRequest:
    if url.startswith("s3://"):
        allowed = requests_url(lake.settings().lake)
        if not url.startswith(allowed):
            raise ErasureError(
                f"erasure requests are read from {allowed} (the only place the erasure role may read); "
                f"put the request file there, not at {url}"
            )
        bucket, _, key = url.removeprefix("s3://").partition("/")
        try:
            body = lake.clients().s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:  # noqa: BLE001 - any S3 error: the same answer for the operator
            raise ErasureError(f"cannot read the erasure request {url}: {exc.__class__.__name__}") from None
        return ErasureRequest.parse(body.decode().splitlines())
    try:
        return ErasureRequest.parse(Path(url).read_text().splitlines())
    except OSError as exc:
        raise ErasureError(f"cannot read the erasure request {url}: {exc.strerror}") from None


def erasure_job(catalog: Catalog) -> dg.JobDefinition:
    @dg.op(
        name="erase_users",
        pool=SOURCE_POOL,  # it deletes from the same PostgreSQL the exports read
        # Resumable: a transient failure (S3 5xx, a failover) is worth a retry, which finishes the work.
        retry_policy=dg.RetryPolicy(max_retries=2, delay=60, backoff=dg.Backoff.EXPONENTIAL),
        description="Remove the requested users' rows from every exported day of the lake (and PostgreSQL).",
        out=dg.Out(dg.Nothing, description="the erasure report, as metadata"),
    )
    def erase_users_op(context: dg.OpExecutionContext, config: ErasureConfig, lake: LakeResource):
        try:
            request = read_request(config.request_url, lake)
            report = erase_users(
                lake.settings(),
                catalog,
                request,
                clients=lake.clients(),
                tables=config.tables or None,
                delete_from_postgres=config.delete_from_postgres,
                dry_run=config.dry_run,
                limits=ErasureLimits(batch_rows=config.batch_rows),
                on_progress=context.log.info,
            )
        except Exception as exc:  # noqa: BLE001 - classified: retried if transient
            raise as_failure(exc, where="erasure", known=(ConfigError, ErasureError)) from None
        clients = lake.clients() if any(d.status == "erased" for t in report.tables for d in t.days) else None
        for table in report.tables:
            for day in table.days:
                if day.status != "erased":
                    continue
                verification = verify_published_day(
                    lake.glue(clients), clients.s3, clients.filesystem, table.table, day.day
                )
                for evaluation in check_evaluations(table.table, day.day, verification):
                    context.log_event(evaluation)
                context.log_event(verdict_observation(table.table, day.day, verification, CHECK_NAMES.values()))
                context.log_event(
                    dg.AssetObservation(
                        asset_key=lake_key(table.table),
                        partition=day.day,
                        metadata={
                            "erasure_id": dg.MetadataValue.text(report.erasure_id),
                            "rows_erased": dg.MetadataValue.int(day.rows_erased),
                            "dagster/row_count": dg.MetadataValue.int(day.rows_after),
                            "export_id": dg.MetadataValue.text(day.export_id),
                            "replaces_export_id": dg.MetadataValue.text(day.previous_export_id),
                        },
                    )
                )
        summary = {
            "erasure_id": dg.MetadataValue.text(report.erasure_id),
            "status": dg.MetadataValue.text(report.status),
            "users": dg.MetadataValue.int(report.users),
            "rows_erased": dg.MetadataValue.int(report.rows_erased),
            "audit_record": dg.MetadataValue.text(report.audit_url or "(dry run: none written)"),
            "report": dg.MetadataValue.md("```\n" + report.summary() + "\n```"),
        }
        if not report.ok:
            raise dg.Failure(
                description=f"erasure {report.erasure_id} is {report.status}: re-run it to finish (it is resumable)",
                metadata=summary,
                allow_retries=False,
            )
        return dg.Output(None, metadata=summary)

    @dg.job(
        name=ERASURE_JOB,
        description="GDPR right to erasure: rewrite the lake without the users listed in a request file "
        "(see weward_pipeline/defs/erasure.py), optionally delete them from PostgreSQL; audit in S3.",
        tags={"weward/kind": "gdpr", **task_definition_tags(ERASURE_TASK_DEFINITION_ENV)},
    )
    def _job():
        erase_users_op()

    return _job
