"""The whole local stack in one place: PostgreSQL with the sample app data, moto S3+Glue,
the lake bucket and a SQLite Dagster instance, with its state in one JSON file.

`up()` is idempotent (reuses running servers), `down()` stops them by PID and removes the state,
so `make demo` can run twice in a row.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from weward_pipeline.devstack.aws import LocalAws
from weward_pipeline.devstack.postgres import LocalPostgres
from weward_pipeline.devstack.processes import pid_alive

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = Path(os.environ.get("WEWARD_STACK_DIR", REPO_ROOT / ".local" / "stack"))
APP_DATABASE = "weward_app"
LAKE_BUCKET = "weward-lake-local"
LAKE_PREFIX = "lake"
GLUE_DATABASE = "weward_lake"
# The local stack's catalog is the sample catalog with retentions short enough that a few days of
# sample data reach them: the demo shows a redaction run through Dagster, with its audit, instead
# of a redaction asset "never materialized" against a 90-day retention.
LOCAL_RETENTION_DAYS = {"step_events": 3}
# Freshness deadline at local midnight: a day is expected as soon as it ends, so the demo (which
# exports yesterday) ends green at any hour. With production's 08:00, before 08:00 the check still
# expects the day before yesterday, which a snapshot table exported for the first time yesterday can
# never have (its snapshot can no longer be taken): red until 08:00.
LOCAL_SETTINGS = {"WEWARD_FRESHNESS_DEADLINE_HOUR": "0"}


@dataclass
class StackState:
    pg_port: int = 0
    pg_admin_password: str = ""
    moto_port: int = 0
    moto_pid: int | None = None
    seeded: dict = field(default_factory=dict)
    extra_env: dict = field(default_factory=dict)
    # Least-privilege roles (roles.py) and the local pseudonymization key.
    export_password: str = ""
    redact_password: str = ""
    erase_password: str = ""  # absent from a state file written before the erasure role: made on the next up()
    pii_key: str = ""


class LocalStack:
    def __init__(self, base_dir: Path | str = DEFAULT_DIR) -> None:
        self.base_dir = Path(base_dir)
        self.state_file = self.base_dir / "state.json"
        self.state = StackState()
        if self.state_file.exists():
            self.state = StackState(**json.loads(self.state_file.read_text()))
        self.postgres = LocalPostgres(
            self.base_dir / "postgres", port=self.state.pg_port, admin_password=self.state.pg_admin_password
        )
        self.aws = LocalAws(self.base_dir / "moto", port=self.state.moto_port, pid=self.state.moto_pid)

    @property
    def dagster_home(self) -> Path:
        return self.base_dir / "dagster_home"

    def _save(self) -> None:
        self.state.pg_port = self.postgres.port
        self.state.pg_admin_password = self.postgres.admin_password
        self.state.moto_port = self.aws.port
        self.state.moto_pid = self.aws.pid
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(asdict(self.state), indent=1))
        os.chmod(self.state_file, 0o600)  # holds the local admin password

    @property
    def catalog_file(self) -> Path:
        return self.base_dir / "tables.yaml"

    def _write_catalog(self) -> None:
        """The sample catalog with LOCAL_RETENTION_DAYS, unless WEWARD_TABLES_FILE names the user's own."""
        if "WEWARD_TABLES_FILE" in self.state.extra_env or os.environ.get("WEWARD_TABLES_FILE"):
            return
        import yaml

        from weward_pipeline.config import SAMPLE_CATALOG

        catalog = yaml.safe_load(SAMPLE_CATALOG.read_text())
        for table in catalog["tables"]:
            if table["name"] in LOCAL_RETENTION_DAYS:
                table["retention_days"] = LOCAL_RETENTION_DAYS[table["name"]]
        self.catalog_file.write_text(
            f"# The local stack's catalog: {SAMPLE_CATALOG} with short retentions "
            f"({', '.join(f'{t}: {d} days' for t, d in LOCAL_RETENTION_DAYS.items())}),\n"
            "# so that redaction runs on a few days of sample data. Written by weward-pipeline stack up/demo/dev.\n"
            + yaml.safe_dump(catalog, sort_keys=False, allow_unicode=True)
        )
        self.state.extra_env["WEWARD_TABLES_FILE"] = str(self.catalog_file)

    def catalog(self):
        from weward_pipeline.config import load_catalog

        return load_catalog(self.state.extra_env.get("WEWARD_TABLES_FILE"))

    def up(self) -> LocalStack:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o755)  # the PostgreSQL server user traverses it
        self._write_catalog()
        for name, value in LOCAL_SETTINGS.items():
            if not os.environ.get(name):  # a value of the user's own wins
                self.state.extra_env.setdefault(name, value)
        self.postgres.start()
        self.postgres.create_database(APP_DATABASE)
        self._ensure_roles()
        self.aws.start()
        self.aws.create_bucket(LAKE_BUCKET)
        self.dagster_home.mkdir(exist_ok=True)
        shutil.copy(REPO_ROOT / "dagster.yaml", self.dagster_home / "dagster.yaml")
        self._save()
        return self

    def running(self) -> bool:
        return self.postgres.pid() is not None and self.state.moto_pid is not None and pid_alive(self.state.moto_pid)

    def status(self) -> list[tuple[str, bool, str]]:
        """(component, up, detail) for PostgreSQL, S3+Glue and the sample data: what `stack status` prints."""
        pg_pid = self.postgres.pid()
        moto_up = self.state.moto_pid is not None and pid_alive(self.state.moto_pid)
        seeded = self.state.seeded
        return [
            (
                "PostgreSQL",
                pg_pid is not None,
                f"127.0.0.1:{self.postgres.port} (pid {pg_pid})"
                if pg_pid
                else f"was on 127.0.0.1:{self.postgres.port}"
                if self.postgres.port
                else "",
            ),
            (
                "S3+Glue (moto)",
                moto_up,
                f"{self.aws.endpoint_url} (pid {self.state.moto_pid})"
                if moto_up
                else f"was at {self.aws.endpoint_url}"
                if self.aws.port
                else "",
            ),
            (
                "sample data",
                bool(seeded),
                f"{seeded['days']} days ending {seeded['end_date']}, "
                + ", ".join(f"{t}={n:,}" for t, n in seeded["rows"].items())
                if seeded
                else "",
            ),
        ]

    def down(self, remove: bool = True) -> None:
        self.postgres.stop()
        self.aws.stop()
        if remove and self.base_dir.exists():
            shutil.rmtree(self.base_dir, ignore_errors=True)
        if remove:  # forget the old ports, passwords and seed: the next up() starts from scratch
            self.state = StackState()
            self.postgres = LocalPostgres(self.base_dir / "postgres")
            self.aws = LocalAws(self.base_dir / "moto")

    def pg_url(self) -> str:
        """The superuser URL: for seeding and granting, never handed to the pipeline."""
        return self.postgres.admin_url(APP_DATABASE)

    @property
    def roles(self):
        from weward_pipeline.roles import PipelineRoles

        return PipelineRoles(
            export_password=self.state.export_password,
            redact_password=self.state.redact_password,
            erase_password=self.state.erase_password,
        )

    def _ensure_roles(self) -> None:
        """The export, redaction and erasure roles (created once, passwords kept in the 0600 state file),
        granted on the catalog's tables that exist (again after seeding)."""
        import secrets

        from weward_pipeline import roles

        if not self.state.export_password:
            self.state.export_password = secrets.token_urlsafe(24)
            self.state.redact_password = secrets.token_urlsafe(24)
            self.state.pii_key = secrets.token_urlsafe(48)
        if not self.state.erase_password:
            self.state.erase_password = secrets.token_urlsafe(24)
        roles.ensure_roles(self.postgres.admin_url(), self.roles)
        roles.grant_catalog(self.pg_url(), self.catalog(), self.roles)

    def env(self) -> dict[str, str]:
        """The environment-variable contract, pointed at the local stack (least-privilege roles)."""
        return {
            **self.aws.env(),
            "WEWARD_PG_URL": self.roles.export_url(self.pg_url()),
            "WEWARD_PG_REDACT_URL": self.roles.redact_url(self.pg_url()),
            "WEWARD_PG_ERASE_URL": self.roles.erase_url(self.pg_url()),
            "WEWARD_PII_KEY": self.state.pii_key,
            "WEWARD_LAKE_URL": f"s3://{LAKE_BUCKET}/{LAKE_PREFIX}",
            "WEWARD_GLUE_DATABASE": GLUE_DATABASE,
            "DAGSTER_HOME": str(self.dagster_home),
            **self.state.extra_env,
        }

    def seed(
        self,
        *,
        days: int = 5,
        users: int = 2_000,
        end_date: dt.date | None = None,
        timezone: str = "Europe/Paris",
        seed: float = 0.42,
    ) -> dict[str, int]:
        """Load the sample app data, ending yesterday in `timezone` (so those days are exportable)."""
        from weward_pipeline.devstack import sample_data

        if self.state.seeded:
            return self.state.seeded["rows"]
        end_date = end_date or (dt.datetime.now(ZoneInfo(timezone)).date() - dt.timedelta(days=1))
        rows = sample_data.load(
            self.pg_url(),
            end_date=end_date,
            size=sample_data.SampleSize(users=users, days=days),
            timezone=timezone,
            seed=seed,
        )
        self.state.seeded = {"rows": rows, "end_date": end_date.isoformat(), "days": days}
        self._ensure_roles()  # the tables exist now: grant on them
        self._save()
        return rows
