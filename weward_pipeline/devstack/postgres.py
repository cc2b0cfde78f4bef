"""A real PostgreSQL server for the local stack, from the binaries on the machine.

PostgreSQL refuses to run as root, so when we are root the server runs as the `postgres`
system user (created by Debian's package) or a dedicated `weward_pg` user we create.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from weward_pipeline.devstack.processes import free_port, pid_alive, stop_pid, wait_for

ADMIN_USER = "weward_admin"

# Durability is pointless for a throwaway local server and costs seconds per test session.
LOCAL_SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "log_min_messages": "warning",
    "log_lock_waits": "on",
}


def find_bindir() -> Path:
    override = os.environ.get("WEWARD_PG_BINDIR")
    candidates = [override] if override else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    if shutil.which("pg_ctl"):
        candidates.append(str(Path(shutil.which("pg_ctl")).parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found. Install them with "
        "`scripts/install-system-deps.sh` (Debian package postgresql) or set WEWARD_PG_BINDIR."
    )


def _server_user() -> pwd.struct_passwd | None:
    """The OS user the server runs as, or None to run as ourselves (when not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "weward_pg"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "weward_pg"],
        check=True,
    )
    return pwd.getpwnam("weward_pg")


@dataclass
class LocalPostgres:
    """One PostgreSQL cluster under `base_dir`. `start()` is idempotent; `stop()` stops by PID."""

    base_dir: Path
    port: int = 0
    admin_password: str = ""

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    def admin_url(self, database: str = "postgres") -> str:
        return url(ADMIN_USER, self.admin_password, self.port, database)

    def _run(self, args: list[str], extra_env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
        user = _server_user()
        preexec = None
        if user is not None:

            def preexec() -> None:  # drop root before exec: postgres refuses to run as root
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", **(extra_env or {})}
        try:
            return subprocess.run(args, preexec_fn=preexec, env=env, check=True, **kwargs)
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or b"").decode(errors="replace").strip()
            hint = ""
            if user is not None:
                hint = (
                    f" (the server runs as OS user {user.pw_name!r}: every parent directory of "
                    f"{self.base_dir} must be traversable by it)"
                )
            raise RuntimeError(f"{Path(args[0]).name} failed: {detail}{hint}") from None

    def _chown_for_server(self, path: Path) -> None:
        user = _server_user()
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)

    def init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        bindir = find_bindir()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o755)  # the server user must be able to traverse it
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self._chown_for_server(self.data_dir)
        self.admin_password = self.admin_password or secrets.token_urlsafe(18)
        pwfile = self.base_dir / ".pwfile"
        pwfile.write_text(self.admin_password + "\n")
        os.chmod(pwfile, 0o600)
        self._chown_for_server(pwfile)
        try:
            self._run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    ADMIN_USER,
                    f"--pwfile={pwfile}",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def pid(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError, PermissionError):
            return None
        return pid if pid_alive(pid) else None

    def server_settings(self) -> dict[str, str]:
        return dict(LOCAL_SERVER_SETTINGS)

    def start(self) -> None:
        self.init()
        if self.pid() is not None:
            return
        self.port = self.port or free_port()
        if not self.log_file.exists():
            self.log_file.touch()
            self._chown_for_server(self.log_file)
        options = " ".join(f"-c {k}={v}" for k, v in self.server_settings().items())
        options += f" -p {self.port} -k {self.data_dir}"
        self._run(
            [
                str(find_bindir() / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_for(self._accepts_connections, 30, f"PostgreSQL on port {self.port}")

    def _accepts_connections(self) -> bool:
        import psycopg

        with psycopg.connect(self.admin_url(), connect_timeout=2):
            return True

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            import signal

            stop_pid(pid, timeout=30, sig=signal.SIGINT)  # SIGINT: PostgreSQL's "fast" shutdown

    def create_database(self, name: str) -> str:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.admin_url(name)


@dataclass
class LocalStandby(LocalPostgres):
    """A hot standby of `primary`, streaming its WAL: `pg_basebackup -R` from the same binaries.

    Read-only queries run on it as on a production read replica; a long one can be cancelled by a
    recovery conflict (SQLSTATE 40001) when the primary vacuums rows its snapshot still needs and
    the standby has waited `max_standby_streaming_delay` to replay that cleanup.
    """

    primary: LocalPostgres | None = None
    max_standby_streaming_delay: str = "30s"
    hot_standby_feedback: bool = False

    def init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        if self.primary is None or self.primary.pid() is None:
            raise RuntimeError("a standby needs its primary running first")
        self.admin_password = self.primary.admin_password
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o755)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self._chown_for_server(self.data_dir)
        # -R writes standby.signal and primary_conninfo; -X stream copies the WAL the backup needs.
        self._run(
            [
                str(find_bindir() / "pg_basebackup"),
                "-D",
                str(self.data_dir),
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "--no-sync",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.primary.port),
                "-U",
                ADMIN_USER,
            ],
            extra_env={"PGPASSWORD": self.primary.admin_password},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def start(self) -> None:
        super().start()
        # Not on the command line, where ALTER SYSTEM (set()) could not override them.
        self.set(
            max_standby_streaming_delay=self.max_standby_streaming_delay,
            hot_standby_feedback="on" if self.hot_standby_feedback else "off",
        )

    def server_settings(self) -> dict[str, str]:
        return {
            **LOCAL_SERVER_SETTINGS,
            "hot_standby": "on",
            # After half of this without a message the standby asks the primary for a keepalive, so
            # even an idle primary tells it within 2 s (default 30 s) how far it is
            # (pg_stat_wal_receiver.last_msg_send_time, standby.py).
            "wal_receiver_timeout": "4s",
        }

    def _accepts_connections(self) -> bool:
        import psycopg

        with psycopg.connect(self.admin_url(), connect_timeout=2) as conn:
            streaming = conn.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
            return streaming is not None and streaming[0] == "streaming"

    def set(self, **settings: str) -> None:
        """Change settings that need only a reload (max_standby_streaming_delay, hot_standby_feedback)."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            for name, value in settings.items():
                conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
            conn.execute("SELECT pg_reload_conf()")
            # The reload is asynchronous; wait until this session's backend applies it too.
            wait_for(
                lambda: all(
                    conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0] == value
                    for name, value in settings.items()
                ),
                10,
                "the standby to reload its settings",
            )

    def pause_replay(self) -> None:
        self._admin("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self._admin("SELECT pg_wal_replay_resume()")

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(statement)

    def wait_caught_up(self, timeout: float = 30) -> None:
        """Until the standby has replayed everything the primary had written when this was called."""
        import psycopg

        with psycopg.connect(self.primary.admin_url(), autocommit=True) as conn:
            # The insert position: with synchronous_commit=off the last commits may not be written yet.
            target = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]

        def replayed() -> bool:
            with psycopg.connect(self.admin_url(), autocommit=True) as conn:
                return conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0]

        wait_for(replayed, timeout, f"the standby on port {self.port} to replay up to {target}", interval=0.05)


def url(user: str, password: str, port: int, database: str, host: str = "127.0.0.1") -> str:
    return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{quote(database, safe='')}"
