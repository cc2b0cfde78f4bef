"""Run a job the way its ECS task runs it: non-root, read-only root file system, only the task's
volumes writable, the task definition's environment and secrets, the scheduler's command.

bubblewrap (Debian's `bubblewrap`) builds the container's view of the file system:
- `/` is the host's, read-only (the Python, the venv and the worktree come from there);
- `/opt` is replaced by the image's layout (deploy/Dockerfile): DAGSTER_HOME with the production
  dagster.yaml, the table catalog, the workspace, the venv at /opt/venv; then made read-only;
- each mount point of the task definition gets a fresh directory with Fargate's ownership rule:
  a bind-mount volume is root-owned 0755 unless the image declares a VOLUME at that path, in
  which case it starts as the image's directory (its owner and mode);
- the process runs as the task's `user` inside a user namespace whose only mapped id is ours
  (so it reads the host's Python and venv), with no capabilities: a directory the container user
  does not own is owned, on the host, by an unmapped id (65534), so "root-owned 0755" really is
  unwritable to it (it shows as nobody-owned inside).
The network is shared (the local PostgreSQL and moto are on loopback).

What differs from Fargate, on purpose: endpoints (AWS_ENDPOINT_URL, the local PostgreSQL),
credentials (one access key per job, so the recording proxy can tell jobs apart), PGSSLMODE (the
local server has no TLS) and PYTHONPATH (the worktree instead of the package installed in the
image). Each override is listed by `LOCAL_OVERRIDES` and nothing else is changed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
# main's (33e6433) Dockerfile, kept to show the rehearsal fails on the old deployment (defect 3).
DOCKERFILE_AT_MAIN = Path(__file__).parent / "fixtures" / "Dockerfile.main"
# Variables the local stack must override, and why (everything else comes from the task definition).
LOCAL_OVERRIDES = {
    "AWS_ENDPOINT_URL": "the recording proxy in front of moto",
    "AWS_ACCESS_KEY_ID": "one key per job, so the proxy tags each request with its job",
    "AWS_SECRET_ACCESS_KEY": "moto accepts any",
    "AWS_ALLOW_HTTP": "polars/object_store refuse plain http otherwise",
    "AWS_EC2_METADATA_DISABLED": "no instance metadata here",
    "PGSSLMODE": "the local PostgreSQL has no TLS",
    "DAGSTER_PG_HOST": "the local PostgreSQL",
    "DAGSTER_PG_PORT": "the local PostgreSQL",
    "PYTHONPATH": "the worktree instead of the package installed in the image",
    # The launcher rehearsal only (rehearsal/ecs.py):
    "ECS_CONTAINER_METADATA_URI_V4": "the ECS agent's task metadata endpoint (a local server answering for the daemon's task)",
    "AWS_DEFAULT_REGION": "Fargate sets it in every container (boto3 reads no AWS_REGION)",
}


# PATH of the python:3.11-slim-bookworm base image, which the Dockerfile's ENV PATH extends.
BASE_IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class RuntimeUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class Image:
    """What deploy/Dockerfile's final stage gives the container."""

    env: dict[str, str]
    user: tuple[int, int]
    workdir: str
    volumes: tuple[str, ...]  # VOLUME paths
    owned: dict[str, tuple[int, int]]  # directories the Dockerfile chowns, -> (uid, gid)
    files: dict[str, str]  # container path -> repository path (COPY of files from this repository)


def read_dockerfile(path: Path = DOCKERFILE, *, tables_file: str) -> Image:
    text = path.read_text().replace("\\\n", " ")
    final = text[text.rindex("\nFROM ") :]  # the final stage
    env: dict[str, str] = {"PATH": BASE_IMAGE_PATH}
    volumes: list[str] = []
    owned: dict[str, tuple[int, int]] = {}
    files: dict[str, str] = {}
    user, workdir = (0, 0), "/"
    for line in final.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        instruction = instruction.upper()
        if instruction == "ENV":
            for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', rest):
                env[key] = re.sub(
                    r"\$(\w+)|\$\{(\w+)\}", lambda m: env.get(m.group(1) or m.group(2), ""), value.strip('"')
                )
        elif instruction == "USER":
            uid, _, gid = rest.strip().partition(":")
            user = (int(uid), int(gid or uid))
        elif instruction == "WORKDIR":
            workdir = rest.strip()
        elif instruction == "VOLUME":
            rest = rest.strip()
            volumes += [
                v.strip().strip('"') for v in (rest.strip("[]").split(",") if rest.startswith("[") else rest.split())
            ]
        elif instruction == "RUN":
            for uid, gid, targets in re.findall(r"chown\s+(?:-R\s+)?(\d+):(\d+)\s+([^&;|]+)", rest):
                for target in targets.split():
                    owned[target.rstrip("/")] = (int(uid), int(gid))
        elif instruction == "COPY" and "--from=" not in rest:
            parts = [p for p in rest.split() if not p.startswith("--")]
            if len(parts) == 2:
                source = parts[0].replace("${TABLES_FILE}", tables_file)
                files[parts[1]] = source
    return Image(env=env, user=user, workdir=workdir, volumes=tuple(volumes), owned=owned, files=files)


@dataclass
class TaskRuntime:
    """One container of a rendered ECS task definition."""

    family: str
    command: list[str]
    environment: dict[str, str]
    secrets: dict[str, str]  # variable -> secret ARN (valueFrom)
    user: tuple[int, int] | None
    readonly_root: bool
    mount_points: dict[str, str]  # container path -> volume name
    role: str | None = None  # the task role ARN
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_rendered(
        cls, task_definition, command: list[str] | None = None, environment: dict[str, str] | None = None
    ) -> TaskRuntime:
        """From terraform_render's TaskDefinition (its essential container); `command` and
        `environment` override the container's, as RunTask's containerOverrides do (a backfill of
        another day, an erasure's run config)."""
        container = task_definition.container
        runtime = cls.from_container_definition(
            task_definition.family,
            container.definition,
            task_definition.task_role.arn if task_definition.task_role else None,
        )
        if command is not None:
            runtime.command = list(command)
        runtime.environment.update(environment or {})
        return runtime

    @classmethod
    def from_container_definition(cls, family: str, container: dict, task_role: str | None = None) -> TaskRuntime:
        user = container.get("user")
        uid_gid = None
        if user:
            uid, _, gid = str(user).partition(":")
            uid_gid = (int(uid), int(gid or uid))
        return cls(
            family=family,
            command=list(container.get("command") or []),
            environment={e["name"]: e["value"] for e in container.get("environment") or []},
            secrets={s["name"]: s["valueFrom"] for s in container.get("secrets") or []},
            user=uid_gid,
            readonly_root=bool(container.get("readonlyRootFilesystem")),
            mount_points={m["containerPath"]: m["sourceVolume"] for m in container.get("mountPoints") or []},
            role=task_role,
        )


def _image_directory_mode(path: str, image: Image) -> tuple[int, int, int]:
    """Owner and mode a VOLUME path starts with: the image's directory."""
    if path == "/tmp":
        return 0, 0, 0o1777  # python:*-slim's /tmp
    uid, gid = image.owned.get(path, (0, 0))
    return uid, gid, 0o755


UNMAPPED_ID = 65534  # a host id outside the sandbox's user namespace: "someone else", e.g. the container's root


def volume_directory(path: str, image: Image, base: Path, user: tuple[int, int]) -> Path:
    """A fresh host directory for one task volume, owned as Fargate would leave it."""
    host = base / ("vol" + path.replace("/", "_"))
    host.mkdir(parents=True)
    if path in image.volumes:
        uid, gid, mode = _image_directory_mode(path, image)
    else:
        uid, gid, mode = 0, 0, 0o755  # Fargate bind mount without a VOLUME in the image
    # Container ids -> host ids: the container user is us (the one mapped id), anyone else is unmapped.
    os.chown(host, os.getuid() if uid == user[0] else UNMAPPED_ID, os.getgid() if gid == user[1] else UNMAPPED_ID)
    os.chmod(host, mode)
    return host


def bwrap_available() -> str | None:
    return shutil.which("bwrap")


def build_command(
    task: TaskRuntime, image: Image, *, env: dict[str, str], base: Path, extra_binds: dict[str, str] | None = None
) -> tuple[list[str], dict[str, Path]]:
    """The bwrap command line running `task.command`, and the host directory of each volume."""
    bwrap = bwrap_available()
    if bwrap is None:
        raise RuntimeUnavailable(
            "bubblewrap is not installed: run scripts/install-system-deps.sh (apt-get install bubblewrap)"
        )
    uid, gid = task.user or image.user
    # A mount point outside /opt that this host's read-only root lacks (ECS Exec's /managed-agents,
    # /var/lib/amazon/ssm: only its agent, as root, writes there) cannot be created by bwrap: skipped.
    mounted = [p for p in task.mount_points if p.startswith("/opt") or Path(p).is_dir()]
    volumes = {path: volume_directory(path, image, base, (uid, gid)) for path in mounted}
    opt = ["--tmpfs", "/opt"]
    venv = os.environ.get("WEWARD_REHEARSAL_VENV", str(Path(os.sys.executable).parents[1]))
    binds = {"/opt/venv": venv}
    for container_path, source in image.files.items():
        host = source if source.startswith("/") else str(ROOT / source)
        binds[container_path] = host
    binds.update(extra_binds or {})
    dirs = sorted({str(Path(p).parent) for p in binds} | {image.workdir} | set(volumes) | set(image.owned))
    for directory in dirs:
        if directory.startswith("/opt"):
            opt += ["--dir", directory]
    for container_path, host in binds.items():
        opt += ["--ro-bind", host, container_path]
    root = ["--ro-bind", "/", "/"] if task.readonly_root else ["--bind", "/", "/"]
    args = [
        bwrap,
        "--unshare-user",
        "--uid",
        str(uid),
        "--gid",
        str(gid),
        "--unshare-pid",
        "--unshare-ipc",
        "--die-with-parent",
        *root,
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        *opt,
        "--remount-ro",
        "/opt",
    ]
    for container_path, host in volumes.items():
        args += ["--bind", str(host), container_path]
    # The sandbox reaches the host's venv and checkout by their own paths (the venv's script shebangs,
    # PYTHONPATH's worktree). A checkout under a task volume's path (CI clones into /tmp, a Fargate
    # volume here) would be hidden by it: bind them back on top, read-only, onto mount points made in
    # the volume's host directory (the container user could not create them; nothing else changes).
    for exposed in sorted({str(Path(venv).absolute()), str(ROOT)}):
        for container_path, host in volumes.items():
            if Path(exposed).is_relative_to(container_path):
                (host / Path(exposed).relative_to(container_path)).mkdir(parents=True, exist_ok=True)
                args += ["--ro-bind", exposed, exposed]
    args += ["--chdir", image.workdir, "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    command = [*args, "--", *task.command]
    return command, volumes


def secret_name(value_from: str) -> str:
    """The secret's name in a valueFrom (a Secrets Manager ARN ends in `secret:<name>-<6 random>`)."""
    if ":secret:" in value_from:
        name = value_from.split(":secret:", 1)[1].split(":", 1)[0]
        return re.sub(r"-[A-Za-z0-9]{6}$", "", name)
    return value_from


def container_environment(
    task: TaskRuntime, image: Image, secret_values: dict[str, str], overrides: dict[str, str]
) -> dict[str, str]:
    """Image ENV, then the task's environment and secrets (as ECS sets them), then the local overrides.

    `secret_values` maps a secret's name (as deploy/<env>.env names it) to its local value; each
    secret variable gets the value of the secret its valueFrom names, as ECS injects it."""
    resolved, missing = {}, []
    for variable, value_from in task.secrets.items():
        name = secret_name(value_from)
        if name in secret_values:
            resolved[variable] = secret_values[name]
        else:
            missing.append(f"{variable} (from {value_from})")
    if missing:
        raise KeyError(f"no local value for the task's secret(s) {', '.join(missing)}")
    unknown = sorted(set(overrides) - set(LOCAL_OVERRIDES))
    if unknown:
        raise KeyError(
            f"override(s) {', '.join(unknown)} are not local endpoint/credential settings: "
            "the rehearsal must run with the task definition's environment"
        )
    return {**image.env, **task.environment, **resolved, **overrides}


def run_task(
    task: TaskRuntime,
    image: Image,
    *,
    secret_values: dict[str, str],
    overrides: dict[str, str],
    base: Path,
    timeout: float = 600,
    extra_binds: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    env = container_environment(task, image, secret_values, overrides)
    command, _ = build_command(task, image, env=env, base=base, extra_binds=extra_binds)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def describe(task: TaskRuntime) -> str:
    return f"{task.family}: {shlex.join(task.command)}"
