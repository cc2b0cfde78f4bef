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

    def _run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        user = _server_user()
        preexec = None
        if user is not None:
            def preexec() -> None:  # drop root before exec: postgres refuses to run as root
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        try:
            return subprocess.run(args, preexec_fn=preexec, env=env, check=True, **kwargs)
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or b"").decode(errors="replace").strip()
            hint = ""
            if user is not None:
                hint = (f" (the server runs as OS user {user.pw_name!r}: every parent directory of "
                        f"{self.base_dir} must be traversable by it)")
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
                    str(bindir / "initdb"), "-D", str(self.data_dir), "-U", ADMIN_USER,
                    f"--pwfile={pwfile}", "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
                    "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
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

    def start(self) -> None:
        self.init()
        if self.pid() is not None:
            return
        self.port = self.port or free_port()
        if not self.log_file.exists():
            self.log_file.touch()
            self._chown_for_server(self.log_file)
        options = " ".join(f"-c {k}={v}" for k, v in LOCAL_SERVER_SETTINGS.items())
        options += f" -p {self.port} -k {self.data_dir}"
        self._run(
            [str(find_bindir() / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
             "-o", options, "-w", "-t", "60", "start"],
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


def url(user: str, password: str, port: int, database: str, host: str = "127.0.0.1") -> str:
    return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{quote(database, safe='')}"
