"""The export and redaction task definitions as main (33e6433) renders them for deploy/prod.env:
infra/modules/export_job's container definition with pipeline_stack's commands. Kept to show that
the runtime rehearsal fails on the old deployment (defect 3: no writable temporary directory)."""

from __future__ import annotations

from weward_pipeline_tests.rehearsal.runtime import TaskRuntime
from weward_pipeline_tests.rehearsal.stage import read_env_file

ACCOUNT = "123456789012"


def _secret(name: str) -> str:
    return f"arn:aws:secretsmanager:eu-west-3:{ACCOUNT}:secret:{name}-AbCdEf"


def main_tasks() -> dict[str, TaskRuntime]:
    prod = read_env_file()
    environment = {k: v for k, v in prod.items() if not k.endswith("_SECRET")}
    environment.update(
        DAGSTER_HOME="/opt/dagster/dagster_home",
        DAGSTER_PG_HOST="weward-prod.cluster.eu-west-3.rds.amazonaws.com",
        DAGSTER_RUN_TASK_DEFINITION="weward-prod-export",
    )
    mounts = {"/tmp": "tmp", "/opt/dagster/dagster_home/storage": "dagster-home"}
    secret = {
        var: _secret(prod[f"{var}_SECRET"])
        for var in ("WEWARD_PG_URL", "WEWARD_PII_KEY", "WEWARD_PG_REDACT_URL", "DAGSTER_PG_PASSWORD")
    }
    export = TaskRuntime(
        family="weward-prod-export",
        command=[
            "sh",
            "-c",
            "exec dagster asset materialize -m weward_pipeline.definitions --select 'key:lake/*' "
            '--partition "$(TZ=Europe/Paris date -d yesterday +%F)"',
        ],
        environment=environment,
        user=(10001, 10001),
        readonly_root=True,
        mount_points=mounts,
        secrets={k: secret[k] for k in ("WEWARD_PG_URL", "WEWARD_PII_KEY", "DAGSTER_PG_PASSWORD")},
        role=f"arn:aws:iam::{ACCOUNT}:role/weward-prod-export",
    )
    redact = TaskRuntime(
        family="weward-prod-redact",
        command=["weward-pipeline", "redact-due", "--lookback-days", "30"],
        environment=environment,
        user=(10001, 10001),
        readonly_root=True,
        mount_points=mounts,
        secrets={
            "WEWARD_PG_REDACT_URL": secret["WEWARD_PG_REDACT_URL"],
            "DAGSTER_PG_PASSWORD": secret["DAGSTER_PG_PASSWORD"],
            "WEWARD_PG_URL": secret["WEWARD_PG_REDACT_URL"],
        },
        role=f"arn:aws:iam::{ACCOUNT}:role/weward-prod-redaction",
    )
    return {"export": export, "redact": redact}
