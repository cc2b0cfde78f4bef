"""The local stand-in for the deployed account: what Terraform and the DBA create, with local values.

Production's names come from deploy/prod.env (the bucket, the Glue database, Dagster's storage
database and user), so the jobs run with the task definition's environment unchanged; only the
endpoints and the secrets' values are local.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import psycopg
from psycopg import sql

from weward_pipeline.config import SAMPLE_CATALOG, LakeLocation, load_catalog
from weward_pipeline.devstack import sample_data
from weward_pipeline.roles import PipelineRoles, ensure_roles, grant_catalog
from weward_pipeline_tests.rehearsal import runtime
from weward_pipeline_tests.rehearsal.proxy import RecordingProxy, job_credentials

ROOT = Path(__file__).resolve().parents[2]
PROD_ENV = ROOT / "deploy" / "prod.env"


def read_env_file(path: Path = PROD_ENV) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    )


def ensure_glue_database(endpoint_url: str, region: str, name: str) -> None:
    """What Terraform's catalog module creates (as the admin, not through the recording proxy)."""
    glue = boto3.client("glue", endpoint_url=endpoint_url, region_name=region)
    try:
        glue.create_database(DatabaseInput={"Name": name})
    except glue.exceptions.AlreadyExistsException:
        pass


@dataclass
class JobRun:
    job: str
    task: runtime.TaskRuntime
    result: subprocess.CompletedProcess

    def failure(self) -> str | None:
        if self.result.returncode == 0:
            return None
        tail = "\n".join((self.result.stdout + self.result.stderr).splitlines()[-25:])
        return f"job {self.job} ({runtime.describe(self.task)}) exited {self.result.returncode}:\n{tail}"


@dataclass
class Stage:
    pg_server: object
    aws_server: object
    proxy: RecordingProxy
    base: Path
    old_day: dt.date  # a day past step_events' 90-day retention, exported as a backfill, then redacted
    secret_values: dict[str, str] = field(default_factory=dict)
    runs: dict[str, JobRun] = field(default_factory=dict)
    app_url: str = ""  # the app's database (superuser): what the rehearsal reads to pick users

    @classmethod
    def build(cls, pg_server, aws_server, proxy, base: Path) -> Stage:
        prod = read_env_file()
        today = dt.date.today()
        stage = cls(pg_server, aws_server, proxy, base, old_day=today - dt.timedelta(days=95))
        app = pg_server.create_database(f"rehearsal_app_{secrets.token_hex(3)}")
        sample_data.load(
            app, end_date=stage.old_day, size=sample_data.SampleSize(users=30, days=2), timezone="Europe/Paris"
        )
        roles = PipelineRoles(
            export_role="rehearsal_export", redact_role="rehearsal_redact", erase_role="rehearsal_erase"
        )
        admin = pg_server.admin_url()
        ensure_roles(admin, roles)
        grant_catalog(app, load_catalog(SAMPLE_CATALOG), roles)
        # Dagster's own storage: the database and user deploy/prod.env names.
        dagster_password = secrets.token_urlsafe(18)
        with psycopg.connect(admin, autocommit=True) as conn:
            user, db = prod["DAGSTER_PG_USERNAME"], prod["DAGSTER_PG_DB"]
            # Idempotent: several rehearsal modules of one session share the server.
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(user), sql.Literal(dagster_password))
            )
            # A fresh Dagster storage per stage: runs a previous stage left failed may still hold
            # postgres_source slots (no daemon frees them here), and a later export would wait on them.
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(user)))
        # What Terraform creates: the lake bucket and the Glue database.
        lake = LakeLocation.parse(prod["WEWARD_LAKE_URL"])
        aws_server.create_bucket(lake.bucket)
        ensure_glue_database(aws_server.endpoint_url, prod["AWS_REGION"], prod["WEWARD_GLUE_DATABASE"])
        local = {
            "WEWARD_PG_URL": roles.export_url(app),
            "WEWARD_PG_REDACT_URL": roles.redact_url(app),
            "WEWARD_PG_ERASE_URL": roles.erase_url(app),
            "WEWARD_PII_KEY": secrets.token_urlsafe(48),
            "DAGSTER_PG_PASSWORD": dagster_password,
        }
        # By secret name, as deploy/prod.env names them (<VARIABLE>_SECRET=<secret name>).
        stage.secret_values = {
            name: local[key.removesuffix("_SECRET")]
            for key, name in prod.items()
            if key.endswith("_SECRET") and key.removesuffix("_SECRET") in local
        }
        stage.app_url = app
        return stage

    @property
    def lake(self) -> LakeLocation:
        return LakeLocation.parse(read_env_file()["WEWARD_LAKE_URL"])

    def admin(self, service: str):
        """A client of the local AWS endpoint as the operator/Terraform (not through the proxy)."""
        return boto3.client(
            service, endpoint_url=self.aws_server.endpoint_url, region_name=read_env_file()["AWS_REGION"]
        )

    def put_erasure_request(self, ticket: str, users: int = 2) -> tuple[str, list[str]]:
        """An operator puts a request (ids of `users` users of the app) where the erasure task reads."""
        from weward_pipeline.erasure import requests_url

        with psycopg.connect(self.app_url) as conn:
            ids = [str(row[0]) for row in conn.execute("SELECT id FROM users ORDER BY id LIMIT %s", (users,))]
        url = f"{requests_url(self.lake)}{ticket}.txt"
        bucket, _, key = url.removeprefix("s3://").partition("/")
        self.admin("s3").put_object(Bucket=bucket, Key=key, Body=("\n".join(ids) + "\n").encode())
        return url, ids

    def table_locations(self, database: str) -> dict[tuple[str, str], str]:
        tables = self.admin("glue").get_tables(DatabaseName=database)["TableList"]
        return {(database, t["Name"]): t["StorageDescriptor"]["Location"] for t in tables}

    def check_evaluations(self) -> list[tuple[str, str, str | None, str]]:
        """(asset key as JSON, check, partition, execution status) of every check of every run (Dagster's storage)."""
        with psycopg.connect(self.pg_server.admin_url(read_env_file()["DAGSTER_PG_DB"])) as conn:
            return [
                tuple(row)
                for row in conn.execute(
                    "SELECT asset_key, check_name, partition, execution_status FROM asset_check_executions"
                )
            ]

    def launch(
        self,
        job: str,
        daemon: runtime.TaskRuntime,
        image: runtime.Image,
        metadata_uri: str,
        dagster_job: str,
        *,
        tags: dict | None = None,
        run_config: dict | None = None,
        timeout: float = 300,
    ) -> JobRun:
        """`dagster job launch` of `dagster_job` as the Dagster daemon launches it: in the daemon's
        task runtime (environment, secrets, read-only root, volumes), deploy/workspace.yaml and
        deploy/dagster.yaml (EcsRunLauncher) but for the run coordinator: the daemon's queue hands
        each run to instance.launch_run, which is what the CLI does with the default coordinator.
        Recorded under `job`."""
        import yaml

        work = self.base / job
        work.mkdir(parents=True)
        work.chmod(0o755)
        config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
        config["run_coordinator"] = {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}
        instance_yaml = work / "dagster.yaml"
        instance_yaml.write_text(yaml.safe_dump(config))
        instance_yaml.chmod(0o644)
        task = runtime.TaskRuntime(
            **{
                **daemon.__dict__,
                "command": [
                    "dagster",
                    "job",
                    "launch",
                    "-w",
                    "/opt/dagster/app/workspace.yaml",
                    "-j",
                    dagster_job,
                    "--tags",
                    json.dumps(tags or {}),
                    "--config-json",
                    json.dumps(run_config or {}),
                ],
            }
        )
        overrides = {
            **self.overrides(job),
            "ECS_CONTAINER_METADATA_URI_V4": metadata_uri,
            "AWS_DEFAULT_REGION": daemon.environment["AWS_REGION"],
        }
        result = runtime.run_task(
            task,
            image,
            secret_values=self.secret_values,
            overrides=overrides,
            base=work,
            timeout=timeout,
            extra_binds={f"{image.env['DAGSTER_HOME']}/dagster.yaml": str(instance_yaml)},
        )
        self.runs[job] = JobRun(job, task, result)
        return self.runs[job]

    def watch_and_stop(
        self,
        job: str,
        daemon: runtime.TaskRuntime,
        image: runtime.Image,
        metadata_uri: str,
        dagster_job: str,
        *,
        timeout: float = 300,
    ) -> JobRun:
        """What the service does with a launched run after the launch, through EcsRunLauncher's own
        methods in the daemon's runtime: the run monitoring's health check, the failure message's
        debug info (task and its logs), and the UI's terminate. Recorded under `job`."""
        script = (
            "import sys, dagster as dg\n"
            "instance = dg.DagsterInstance.get()\n"
            f"(run,) = instance.get_runs(filters=dg.RunsFilter(job_name={dagster_job!r}), limit=1)\n"
            "launcher = instance.run_launcher\n"
            "print('health', launcher.check_run_worker_health(run).status)\n"
            "print('debug', launcher.get_run_worker_debug_info(run) is not None)\n"
            "print('terminated', launcher.terminate(run.run_id))\n"
        )
        task = runtime.TaskRuntime(**{**daemon.__dict__, "command": ["python", "-c", script]})
        work = self.base / job
        work.mkdir(parents=True)
        work.chmod(0o755)
        overrides = {
            **self.overrides(job),
            "ECS_CONTAINER_METADATA_URI_V4": metadata_uri,
            "AWS_DEFAULT_REGION": daemon.environment["AWS_REGION"],
        }
        result = runtime.run_task(
            task, image, secret_values=self.secret_values, overrides=overrides, base=work, timeout=timeout
        )
        self.runs[job] = JobRun(job, task, result)
        return self.runs[job]

    def run_cli(
        self, job: str, argv: list[str], environment: dict[str, str], role: str, *, timeout: float = 300
    ) -> JobRun:
        """A command an analyst runs on their machine (no task runtime), as `role`, recorded under `job`."""
        env = {"PATH": os.environ["PATH"], "HOME": str(self.base), **environment, **self.overrides(job)}
        result = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        task = runtime.TaskRuntime(
            family="(an analyst's machine)",
            command=argv,
            environment=environment,
            secrets={},
            user=None,
            readonly_root=False,
            mount_points={},
            role=role,
        )
        self.runs[job] = JobRun(job, task, result)
        return self.runs[job]

    def overrides(self, job: str) -> dict[str, str]:
        return {
            **job_credentials(job),
            "AWS_ENDPOINT_URL": self.proxy.endpoint_url,
            "AWS_ALLOW_HTTP": "true",
            "AWS_EC2_METADATA_DISABLED": "true",
            "PGSSLMODE": "disable",
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.pg_server.port),
            "PYTHONPATH": str(ROOT),
        }

    def run(self, job: str, task: runtime.TaskRuntime, image: runtime.Image, *, timeout: float = 600) -> JobRun:
        """Run `task` once under its runtime; its requests are recorded under `job`."""
        values = dict(self.secret_values)
        work = self.base / job
        work.mkdir(parents=True)
        work.chmod(0o755)
        result = runtime.run_task(
            task, image, secret_values=values, overrides=self.overrides(job), base=work, timeout=timeout
        )
        self.runs[job] = JobRun(job, task, result)
        return self.runs[job]
