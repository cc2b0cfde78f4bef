"""Terraform's own rendering of an environment, and the one place tests run terraform offline.

`render(env)` plans infra/envs/<env> with its rehearsal (infra/envs/prod/tests/rehearsal.tftest.hcl:
a mock AWS provider whose values are all known at plan time, ARNs in the shape AWS assigns them,
account 123456789012, region eu-west-3) and returns what Terraform itself computed: the policy
documents are `jsonencode` of the modules' locals, evaluated by Terraform, not HCL re-parsed here.

    from weward_pipeline_tests.terraform_render import render

    prod = render("prod")                                  # REHEARSAL_VARIABLES: Dagster service on, an analyst
    prod = render("prod", dagster_service_enabled=False)   # any root variable with a default
    role = prod.roles["weward-prod-export"]                # Role: .name .arn .trust .policies
    role.policies["export"]                                # {"Version": ..., "Statement": [...]}
    prod.role_by_arn(arn)                                  # Role
    task = prod.task_definitions["weward-prod-export"]     # TaskDefinition, keyed by family
    task.task_role.name, task.execution_role.name          # Role
    task.container.command / .environment / .secrets       # list, {name: value}, {name: secret ARN}
    task.container.user, .readonly_root_filesystem, .mount_points ({containerPath: volume name}), .writable_paths
    task.volumes, task.cpu, task.memory, task.cpu_architecture, task.operating_system
    schedule = prod.schedules["weward-prod-export"]        # Schedule: .state .expression .timezone
    schedule.role.name, schedule.task_definition (TaskDefinition or None), .input, .ecs, .dead_letter_arn
    prod.event_rules[name]                                 # EventRule: .event_pattern (dict) .targets
    prod.security_groups[name]                             # SecurityGroup: .id .ingress .egress
    prod.vpc_endpoints[service]                            # e.g. "ecs", "s3": the resource's values
    prod.bucket_policies[bucket], prod.key_policies[key_arn], prod.secrets[name] (ARN)
    prod.resources("aws_sqs_queue")                        # every planned resource of a type
    prod.outputs["task_definition_arns"]

Renderings are cached per process (one pytest session). The first render(env) runs
`terraform test -verbose -json` once in infra/envs/<env> on the rehearsal, planned once per
rendering in VARIANTS (the ones the tests read), so that one terraform process loads the AWS
provider for all of them (~10 s of CPU per environment; ~5 s per rendering alone). Variables
outside VARIANTS are planned on their own. Terraform or the AWS provider missing is an error naming
what to install (`require_terraform`), never a skip.

Every root and module is also initialized and tested (`checked(directory)`, the test suite's
`test_terraform_validates_and_tests_every_root_and_module_offline`): `check_in_background(dirs)`
starts that work on WORKERS - 1 threads, and `checked` runs a directory not yet started in the
caller, so that at most WORKERS (2, the machine's cores; $WEWARD_TERRAFORM_WORKERS) terraform
processes run at once. Each directory is initialized once per session, from one provider plugin
cache shared by every session (hard links to the mirror: nothing copied); terraform commands in
one directory never overlap.

Everything runs on a private copy of infra/ and deploy/ (terraform writes .terraform/ into each
directory it initializes); envs/dev gets the prod test suites with deploy/dev.env's names.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
DEPLOY = ROOT / "deploy"
ENVS = ("dev", "prod")
REHEARSAL = "tests/rehearsal.tftest.hcl"
ACCOUNT_ID = "123456789012"  # of the rehearsal's mock provider
REGION = "eu-west-3"
AWS_PROVIDER_VERSION = "5.100.0"
MIN_TERRAFORM = (1, 11)  # override_during = plan in test files
WORKERS = max(1, int(os.environ.get("WEWARD_TERRAFORM_WORKERS", "2")))  # terraform processes at once
# Root variables of every rendering unless the caller overrides them: every optional part on,
# so that every role, task definition and rule is rendered.
REHEARSAL_VARIABLES = {
    "dagster_service_enabled": True,
    "analyst_principal_arns": [
        f"arn:aws:iam::{ACCOUNT_ID}:role/aws-reserved/sso.amazonaws.com/{REGION}/AWSReservedSSO_Analyst_0123456789abcdef"
    ],
}
# The renderings the tests ask for (overrides of REHEARSAL_VARIABLES), planned together: one
# `terraform test` per environment plans its deployment suite and one rehearsal run per variant,
# loading the AWS provider once. render() with other variables plans them on their own.
VARIANTS = {
    "rehearsal": {},
    "without_the_dagster_service": {"dagster_service_enabled": False},
    "every_other_switch": {"launch_type": "ec2_instance", "manage_catalog_encryption": True},
}
# The committed rehearsal suite's run block, replaced in the workspace by one run per variant.
REHEARSAL_RUN = 'run "rehearsal" {\n  command = plan\n}\n'


class TerraformUnavailable(RuntimeError):
    """terraform or the AWS provider mirror is missing; the message says what to install."""


class RenderError(RuntimeError):
    """terraform failed; the message holds its diagnostics."""


# ---------------------------------------------------------------------------------------------
# Running terraform offline
# ---------------------------------------------------------------------------------------------


def provider_mirror() -> Path | None:
    for candidate in (os.environ.get("TF_PROVIDER_MIRROR"), "/opt/tf-plugins"):
        if candidate and (Path(candidate) / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
            return Path(candidate)
    return None


@functools.cache
def require_terraform() -> tuple[str, Path]:
    """(terraform binary, provider mirror), or TerraformUnavailable saying what to install."""
    binary = shutil.which("terraform")
    if binary is None:
        raise TerraformUnavailable(
            "terraform is not installed: install Terraform >= 1.11 "
            "(https://developer.hashicorp.com/terraform/install, or apt-get install terraform from "
            "apt.releases.hashicorp.com); the infra tests plan every environment offline with it"
        )
    version = subprocess.run(
        [binary, "version", "-json"],
        capture_output=True,
        text=True,
        check=True,
        env=_base_env(Path(tempfile.gettempdir())),
        timeout=60,
    )
    found = tuple(int(part) for part in json.loads(version.stdout)["terraform_version"].split(".")[:2])
    if found < MIN_TERRAFORM:
        raise TerraformUnavailable(
            f"terraform {'.'.join(map(str, found))} is too old: install >= "
            f"{'.'.join(map(str, MIN_TERRAFORM))} (the rehearsal uses override_during)"
        )
    mirror = provider_mirror()
    if mirror is None or not (mirror / "registry.terraform.io/hashicorp/aws" / AWS_PROVIDER_VERSION).is_dir():
        raise TerraformUnavailable(
            f"no hashicorp/aws {AWS_PROVIDER_VERSION} provider mirror in $TF_PROVIDER_MIRROR or /opt/tf-plugins: "
            f"on a machine with registry access run `terraform providers mirror /opt/tf-plugins` in "
            f"infra/envs/prod (the lock files pin {AWS_PROVIDER_VERSION}), or set TF_PROVIDER_MIRROR"
        )
    return binary, mirror


def _base_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
    }


def env_names(env: str) -> dict[str, str]:
    """The names of an environment that appear literally in the test suites (prod's are written there)."""
    values = read_env_file(DEPLOY / f"{env}.env")
    names = {key: value for key, value in values.items() if key.endswith("_SECRET")}
    names["lake_bucket"] = values["WEWARD_LAKE_URL"].removeprefix("s3://").split("/")[0]
    names["results_bucket"] = values["WEWARD_ATHENA_OUTPUT"].removeprefix("s3://").split("/")[0]
    names["workgroup"] = values["WEWARD_ATHENA_WORKGROUP"]
    names["access_logs_bucket"] = f"weward-s3-access-logs-{env}"
    names["prefix"] = f"weward-{env}"
    names["app_host"] = f"weward-app-{env}"
    return names


def translate_from_prod(text: str, env: str) -> str:
    """A prod test suite for another environment: prod's names replaced by that environment's."""
    if env == "prod":
        return text
    prod, other = env_names("prod"), env_names(env)
    placeholders = {}
    for i, key in enumerate(sorted(prod, key=lambda k: len(prod[k]), reverse=True)):
        placeholder = f"\0{i}\0"
        text = text.replace(prod[key], placeholder)
        placeholders[placeholder] = other[key]
    for placeholder, value in placeholders.items():
        text = text.replace(placeholder, value)
    return text


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


_rehearsal_template: dict[str, str] = {}  # env -> its rehearsal suite as committed (names translated)


def rehearsal_runs(variables_by_run: dict[str, dict]) -> str:
    """Plan-only run blocks of the rehearsal, each with its root variables (JSON is HCL syntax)."""
    blocks = []
    for name, variables in variables_by_run.items():
        lines = "".join(f"    {key} = {json.dumps(value)}\n" for key, value in sorted(variables.items()))
        blocks.append(f'run "{name}" {{\n  command = plan\n\n  variables {{\n{lines}  }}\n}}\n')
    return "\n".join(blocks)


def plugin_cache(mirror: Path) -> Path:
    """One provider plugin cache for every session of this user: the mirror's provider, hard-linked
    (copied only across file systems), put in place by an atomic rename. terraform then links each
    directory's .terraform/providers to it and never writes to it (the cache is not safe for
    concurrent writers; read-only use is)."""
    cache = Path(tempfile.gettempdir()) / f"weward-terraform-plugin-cache-{os.getuid()}"
    relative = Path("registry.terraform.io/hashicorp/aws") / AWS_PROVIDER_VERSION
    source = mirror / relative
    for platform in sorted(p.name for p in source.iterdir() if p.is_dir()):
        target = cache / relative / platform
        if target.is_dir():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{platform}-", dir=target.parent))
        try:
            shutil.copytree(source / platform, staging / platform, copy_function=_link_or_copy)
            os.rename(staging / platform, target)
        except OSError:
            if not target.is_dir():  # another session won the rename: use its copy
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return cache


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


@functools.cache
def workspace() -> Path:
    """A private copy of infra/ and deploy/ with a CLI config that installs from the mirror only."""
    _, mirror = require_terraform()
    base = Path(tempfile.mkdtemp(prefix="weward-terraform-"))
    atexit.register(shutil.rmtree, base, True)
    atexit.register(_stop_background)  # runs first: no terraform left writing into `base`
    shutil.copytree(INFRA, base / "infra", ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    shutil.copytree(DEPLOY, base / "deploy")
    for env in ENVS:  # the roots differ only by their name: prod's suites serve both
        tests = base / "infra" / "envs" / env / "tests"
        shutil.rmtree(tests, ignore_errors=True)
        tests.mkdir()
        for suite in (INFRA / "envs" / "prod" / "tests").glob("*.tftest.hcl"):
            text = translate_from_prod(suite.read_text(), env)
            if f"tests/{suite.name}" == REHEARSAL:
                assert text.count(REHEARSAL_RUN) == 1, f"{suite} must end with {REHEARSAL_RUN!r}"
                _rehearsal_template[env] = text
                text = text.replace(
                    REHEARSAL_RUN,
                    rehearsal_runs(
                        {name: {**REHEARSAL_VARIABLES, **overrides} for name, overrides in VARIANTS.items()}
                    ),
                )
            (tests / suite.name).write_text(text)
    (base / "cli.tfrc").write_text(
        "provider_installation {\n  filesystem_mirror {\n"
        f'    path    = "{mirror}"\n    include = ["registry.terraform.io/hashicorp/aws"]\n  }}\n'
        '  direct {\n    exclude = ["registry.terraform.io/hashicorp/aws"]\n  }\n}\n'
        f'plugin_cache_dir = "{plugin_cache(mirror)}"\n'
    )
    return base


_directory_locks: dict[str, threading.RLock] = {}
_locks_lock = threading.Lock()
_running: set[subprocess.Popen] = set()
_stopping = threading.Event()


def _directory_lock(directory: str) -> threading.RLock:
    with _locks_lock:
        return _directory_locks.setdefault(directory, threading.RLock())


def terraform(directory: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """terraform <args> in infra/<directory> of the workspace; never raises on a non-zero exit.
    Commands in one directory run one at a time (terraform keeps per-directory state in .terraform/)."""
    binary, _ = require_terraform()
    base = workspace()
    run_env = {**_base_env(base), "TF_CLI_CONFIG_FILE": str(base / "cli.tfrc")}
    with _directory_lock(directory):
        if _stopping.is_set():
            raise RenderError("the session is ending")
        process = subprocess.Popen(
            [binary, *args],
            cwd=base / "infra" / directory,
            env=run_env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _running.add(process)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            stderr += f"\nterraform {' '.join(args)} in infra/{directory} killed after {timeout} s"
        finally:
            _running.discard(process)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


_initialized: dict[str, Path] = {}


def initialized(directory: str) -> Path:
    """`terraform init -backend=false` once per directory, from the mirror, against the committed lock file."""
    with _directory_lock(directory):
        if directory not in _initialized:
            result = terraform(directory, "init", "-backend=false", "-input=false", "-no-color", "-lockfile=readonly")
            if result.returncode != 0:
                raise RenderError(
                    f"terraform init failed in infra/{directory} (a lock file out of date? run "
                    f"`terraform init -backend=false` there and commit .terraform.lock.hcl):\n"
                    f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
                )
            _initialized[directory] = workspace() / "infra" / directory
        return _initialized[directory]


def terraform_directories() -> list[str]:
    """Every root and module (relative to infra/): each is initialized and tested (which validates)."""
    return sorted(str(p.parent.relative_to(INFRA)) for p in INFRA.glob("*/*/versions.tf"))


# ---------------------------------------------------------------------------------------------
# Every root and module tested, WORKERS at a time
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestRun:
    """One `terraform test -json` of a directory."""

    __test__ = False  # not a pytest test class

    directory: str
    returncode: int
    runs: dict[str, list[str]]  # test file -> its run blocks (test_abstract)
    summary: dict  # test_summary: status, passed, failed, errored, skipped
    plans: dict[tuple[str, str], dict]  # (test file, run) -> plan (with -verbose)
    problems: list[str]  # error diagnostics, failed runs
    messages: str = field(repr=False)  # what terraform says, as text, for failure reports

    def report(self) -> str:
        return "\n".join(self.problems) + "\n" + self.messages[-6000:]


def terraform_test(directory: str, *args: str, test_directory: str = "tests") -> TestRun:
    """`terraform test -json <args>` in infra/<directory> (initialized first)."""
    initialized(directory)
    result = terraform(directory, "test", "-json", "-no-color", f"-test-directory={test_directory}", *args)
    runs, summary, plans, problems, messages = {}, {}, {}, [], []
    for line in result.stdout.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            messages.append(line)
            continue
        kind = message.get("type")
        if kind != "test_plan":
            messages.append(message.get("@message", ""))
        if kind == "test_abstract":
            runs = message["test_abstract"]
        elif kind == "test_summary":
            summary = message["test_summary"]
        elif kind == "test_plan":
            plans[(message["@testfile"], message["@testrun"])] = message["test_plan"]
        elif kind == "test_run" and message["test_run"].get("status") in ("fail", "error"):
            problems.append(f"{message['@testfile']} run {message['@testrun']}: {message['test_run']['status']}")
        elif kind == "diagnostic" and message["diagnostic"]["severity"] == "error":
            d = message["diagnostic"]
            where = d.get("range", {}).get("filename", "")
            problems.append(
                f"{d['summary']}: {d.get('detail', '')} ({where}{' run ' + message['@testrun'] if '@testrun' in message else ''})"
            )
    if result.returncode != 0 and not problems:
        problems.append(result.stderr[-3000:])
    return TestRun(directory, result.returncode, runs, summary, plans, problems, "\n".join(messages))


_rehearsals: dict[str, TestRun] = {}


def rehearsal_run(env: str) -> TestRun:
    """The rehearsal suite of infra/envs/<env>, one plan per VARIANTS rendering, in one process
    (-verbose: each plan is in the output, ~14 MB of JSON each, which is why the deployment suite
    runs apart, without it)."""
    directory = f"envs/{env}"
    with _directory_lock(directory):
        if env not in _rehearsals:
            _rehearsals[env] = terraform_test(directory, "-verbose", f"-filter={REHEARSAL}")
        return _rehearsals[env]


def directory_tested(directory: str) -> TestRun:
    """`terraform test` of a root or module; a root's rehearsal is rehearsal_run's."""
    if directory.startswith("envs/"):
        suites = sorted(workspace().joinpath("infra", directory, "tests").glob("*.tftest.hcl"))
        return terraform_test(directory, *(f"-filter=tests/{p.name}" for p in suites if f"tests/{p.name}" != REHEARSAL))
    return terraform_test(directory)


@dataclass
class _Check:
    directory: str
    started: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    result: TestRun | None = None
    error: BaseException | None = None


_checks: dict[str, _Check] = {}
_checks_lock = threading.Lock()


def _claim(check: _Check) -> bool:
    with _checks_lock:
        if check.started:
            return False
        check.started = True
        return True


def _run_check(check: _Check) -> None:
    try:
        check.result = directory_tested(check.directory)
    except BaseException as exc:  # handed to the test that asks for this directory
        check.error = exc
    finally:
        check.done.set()


def _background_worker(order: list[_Check]) -> None:
    for check in order:
        if _stopping.is_set():
            return
        if _claim(check):
            _run_check(check)


def check_in_background(directories: list[str]) -> None:
    """Start `init` + `test` of these directories on WORKERS - 1 threads, taking them from the end
    of the list while the caller's `checked` calls take them from the start."""
    with _checks_lock:
        new = [_checks.setdefault(d, _Check(d)) for d in directories if d not in _checks]
    if not new or WORKERS < 2:
        return
    workspace()
    for i in range(WORKERS - 1):
        threading.Thread(target=_background_worker, args=(new[::-1],), daemon=True, name=f"terraform-{i}").start()


def checked(directory: str) -> TestRun:
    """`terraform init` (once) and `terraform test` of infra/<directory>: the background's result,
    or run here if no worker has started it."""
    with _checks_lock:
        check = _checks.setdefault(directory, _Check(directory))
    if _claim(check):
        _run_check(check)
    check.done.wait()
    if check.error is not None:
        raise check.error
    return check.result


def _stop_background() -> None:
    _stopping.set()
    for process in list(_running):
        process.kill()


# ---------------------------------------------------------------------------------------------
# The rendering
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    name: str
    arn: str
    trust: dict
    policies: dict[str, dict]  # inline policy name -> document
    values: dict = field(repr=False)

    def statements(self) -> list[dict]:
        """Every statement of every inline policy, each with its policy's name under "_policy"."""
        return [{**s, "_policy": name} for name, doc in self.policies.items() for s in as_list(doc["Statement"])]


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    command: list[str] | None
    environment: dict[str, str]
    secrets: dict[str, str]  # variable -> secret ARN (valueFrom)
    user: str | None
    readonly_root_filesystem: bool
    mount_points: dict[str, str]  # containerPath -> volume name (writable ones and read-only alike)
    essential: bool
    definition: dict = field(repr=False)

    @property
    def writable_paths(self) -> set[str]:
        """Mount points the container may write (readOnly false): all it may write on a read-only root."""
        return {m["containerPath"] for m in self.definition.get("mountPoints") or [] if not m.get("readOnly")}


@dataclass(frozen=True)
class TaskDefinition:
    family: str
    arn: str
    cpu: int
    memory: int
    cpu_architecture: str | None
    operating_system: str | None
    task_role: Role | None
    execution_role: Role | None
    volumes: list[str]
    containers: list[Container]
    values: dict = field(repr=False)

    @property
    def container(self) -> Container:
        """The task's one essential container."""
        (container,) = [c for c in self.containers if c.essential]
        return container


@dataclass(frozen=True)
class Schedule:
    name: str
    group: str
    state: str
    expression: str
    timezone: str | None
    target_arn: str
    role: Role | None
    input: dict | None
    ecs: dict | None  # ecs_parameters (task_definition_arn, launch_type, network_configuration, tags...)
    task_definition: TaskDefinition | None
    dead_letter_arn: str | None
    retry_policy: dict | None
    values: dict = field(repr=False)


@dataclass(frozen=True)
class EventRule:
    name: str
    event_pattern: dict | None
    schedule_expression: str | None
    state: str | None
    targets: list[dict]
    values: dict = field(repr=False)


@dataclass(frozen=True)
class SecurityGroup:
    name: str
    id: str
    ingress: list[dict]
    egress: list[dict]
    values: dict = field(repr=False)


@dataclass(frozen=True)
class Resource:
    address: str
    type: str
    values: dict


@dataclass(frozen=True)
class Rendering:
    env: str
    variables: dict
    roles: dict[str, Role]
    task_definitions: dict[str, TaskDefinition]
    schedules: dict[str, Schedule]
    event_rules: dict[str, EventRule]
    security_groups: dict[str, SecurityGroup]
    vpc_endpoints: dict[str, dict]
    bucket_policies: dict[str, dict]
    key_policies: dict[str, dict]
    secrets: dict[str, str]
    outputs: dict
    all_resources: list[Resource] = field(repr=False)
    account_id: str = ACCOUNT_ID
    region: str = REGION

    def resources(self, type_: str) -> list[Resource]:
        return [r for r in self.all_resources if r.type == type_]

    def role_by_arn(self, arn: str) -> Role:
        matches = [role for role in self.roles.values() if role.arn == arn]
        assert len(matches) == 1, f"no single role with ARN {arn}: {sorted(r.arn for r in self.roles.values())}"
        return matches[0]

    def task_definition_by_arn(self, arn: str) -> TaskDefinition:
        matches = [t for t in self.task_definitions.values() if arn in (t.arn, t.values.get("arn_without_revision"))]
        assert len(matches) == 1, f"no single task definition with ARN {arn}"
        return matches[0]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _first(blocks) -> dict | None:
    return blocks[0] if blocks else None


_adhoc = iter(range(1_000_000))


@functools.cache
def _render(env: str, variables_json: str) -> Rendering:
    variables = json.loads(variables_json)
    directory = f"envs/{env}"
    names = [name for name, overrides in VARIANTS.items() if {**REHEARSAL_VARIABLES, **overrides} == variables]
    if names:
        run, (name,) = rehearsal_run(env), names
    else:  # a rendering no test declared: planned alone, from a test directory of its own
        workspace()
        name, tests = "adhoc", f"tests-adhoc-{next(_adhoc)}"
        (workspace() / "infra" / directory / tests).mkdir()
        (workspace() / "infra" / directory / tests / Path(REHEARSAL).name).write_text(
            _rehearsal_template[env].replace(REHEARSAL_RUN, rehearsal_runs({name: variables}))
        )
        run = terraform_test(directory, "-verbose", test_directory=tests)
        run = TestRun(
            run.directory,
            run.returncode,
            run.runs,
            run.summary,
            {(REHEARSAL, r): plan for (_, r), plan in run.plans.items()},
            run.problems,
            run.messages,
        )
    plan = run.plans.get((REHEARSAL, name))
    if plan is None:
        raise RenderError(
            f"terraform could not render infra/{directory} with {variables}:\n"
            + "\n".join(p for p in run.problems if f"run {name}" in p or "run " not in p)
        )
    return _build(env, variables, plan)


def render(env: str = "prod", **variables) -> Rendering:
    """Terraform's rendering of infra/envs/<env>; keyword arguments override root variables."""
    assert env in ENVS, f"unknown environment {env!r}"
    return _render(env, json.dumps({**REHEARSAL_VARIABLES, **variables}, sort_keys=True))


def _build(env: str, variables: dict, plan: dict) -> Rendering:
    resources = [
        Resource(change["address"], change["type"], change["change"]["after"] or {})
        for change in plan["resource_changes"]
        if change["mode"] == "managed" and change["change"]["actions"] != ["delete"]
    ]

    def of(type_: str) -> list[dict]:
        return [r.values for r in resources if r.type == type_]

    role_policies: dict[str, dict[str, dict]] = {}
    for policy in of("aws_iam_role_policy"):
        role_policies.setdefault(policy["role"], {})[policy["name"]] = json.loads(policy["policy"])
    roles = {}
    for values in of("aws_iam_role"):
        policies = role_policies.get(values["id"], {}) | role_policies.get(values["name"], {})
        roles[values["name"]] = Role(
            values["name"], values["arn"], json.loads(values["assume_role_policy"]), policies, values
        )
    by_arn = {role.arn: role for role in roles.values()}

    task_definitions = {}
    for values in of("aws_ecs_task_definition"):
        containers = []
        for c in json.loads(values["container_definitions"]):
            containers.append(
                Container(
                    name=c["name"],
                    image=c["image"],
                    command=c.get("command"),
                    environment={e["name"]: e["value"] for e in c.get("environment") or []},
                    secrets={s["name"]: s["valueFrom"] for s in c.get("secrets") or []},
                    user=c.get("user"),
                    readonly_root_filesystem=bool(c.get("readonlyRootFilesystem")),
                    mount_points={m["containerPath"]: m["sourceVolume"] for m in c.get("mountPoints") or []},
                    essential=c.get("essential", True),
                    definition=c,
                )
            )
        platform = _first(values.get("runtime_platform")) or {}
        task_definitions[values["family"]] = TaskDefinition(
            family=values["family"],
            arn=values["arn"],
            cpu=int(values["cpu"]),
            memory=int(values["memory"]),
            cpu_architecture=platform.get("cpu_architecture"),
            operating_system=platform.get("operating_system_family"),
            task_role=by_arn.get(values.get("task_role_arn")),
            execution_role=by_arn.get(values.get("execution_role_arn")),
            volumes=[v["name"] for v in values.get("volume") or []],
            containers=containers,
            values=values,
        )
    tasks_by_arn = {t.arn: t for t in task_definitions.values()}
    tasks_by_arn |= {
        t.values["arn_without_revision"]: t for t in task_definitions.values() if t.values.get("arn_without_revision")
    }

    schedules = {}
    for values in of("aws_scheduler_schedule"):
        target = values["target"][0]
        ecs = _first(target.get("ecs_parameters"))
        schedules[values["name"]] = Schedule(
            name=values["name"],
            group=values.get("group_name"),
            state=values["state"],
            expression=values["schedule_expression"],
            timezone=values.get("schedule_expression_timezone"),
            target_arn=target["arn"],
            role=by_arn.get(target["role_arn"]),
            input=json.loads(target["input"]) if target.get("input") else None,
            ecs=ecs,
            task_definition=tasks_by_arn.get(ecs["task_definition_arn"]) if ecs else None,
            dead_letter_arn=(_first(target.get("dead_letter_config")) or {}).get("arn"),
            retry_policy=_first(target.get("retry_policy")),
            values=values,
        )

    targets: dict[str, list[dict]] = {}
    for values in of("aws_cloudwatch_event_target"):
        targets.setdefault(values["rule"], []).append(values)
    event_rules = {
        values["name"]: EventRule(
            values["name"],
            json.loads(values["event_pattern"]) if values.get("event_pattern") else None,
            values.get("schedule_expression"),
            values.get("state"),
            targets.get(values["name"], []),
            values,
        )
        for values in of("aws_cloudwatch_event_rule")
    }

    ingress = of("aws_vpc_security_group_ingress_rule")
    egress = of("aws_vpc_security_group_egress_rule")
    security_groups = {
        values["name"]: SecurityGroup(
            values["name"],
            values["id"],
            [r for r in ingress if r["security_group_id"] == values["id"]],
            [r for r in egress if r["security_group_id"] == values["id"]],
            values,
        )
        for values in of("aws_security_group")
    }
    vpc_endpoints = {values["service_name"].rsplit(f"{REGION}.", 1)[-1]: values for values in of("aws_vpc_endpoint")}
    return Rendering(
        env=env,
        variables=variables,
        roles=roles,
        task_definitions=task_definitions,
        schedules=schedules,
        event_rules=event_rules,
        security_groups=security_groups,
        vpc_endpoints=vpc_endpoints,
        bucket_policies={v["bucket"]: json.loads(v["policy"]) for v in of("aws_s3_bucket_policy")},
        key_policies={v["arn"]: json.loads(v["policy"]) for v in of("aws_kms_key")},
        secrets={v["name"]: v["arn"] for v in of("aws_secretsmanager_secret")},
        outputs={name: change["after"] for name, change in (plan.get("output_changes") or {}).items()},
        all_resources=resources,
    )
