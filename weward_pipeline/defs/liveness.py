"""Runs whose worker is gone: mark them failed and free their pool slots (issue 11, defect 6).

Production's default deployment runs no Dagster daemon: ECS tasks run `dagster asset materialize`
(export), `weward-pipeline redact-due` and `dagster job execute -j gdpr_erasure` directly. A task
that is OOM-killed or stopped leaves its run STARTED for good, and the `postgres_source` slots its
steps claimed stay claimed: Dagster frees a step's slot when the step ends in the process that
claimed it, and nothing else looks at a run no run launcher started. Two such runs fill the 2-slot
pool and every later export waits forever.

The rule. A run's worker is alive while it beats: every run of this code location writes the run
tag `weward/heartbeat` (UTC time) every WEWARD_RUN_HEARTBEAT_SECONDS (30) from its orchestrating
process (the executor below; `redact-due` for its in-process runs), and `weward/heartbeat_seconds`
once. A run that holds or waits for pool slots is dead when

- its last beat is older than STALE_AFTER_BEATS (10) of its own beats (5 minutes): the process is
  gone, whatever the run's status says. Ten beats, not one: a slow Dagster database or a busy CPU
  must never fail a live export (it would be re-run, and a third reader would get a slot);
- it never beat (a run of an older version, or started by other code) and it ended, or it has
  been in progress for UNBEATING_MAX_AGE (a day: the next day's run then frees it).

A dead run still in progress is marked failed (so alerts and the UI say so), then its slots are
freed. A run marked ended by someone else while it still beats (the UI, or the daemon's run
monitoring, which cannot see the ECS task of a run it did not launch) keeps its slots until its beat
stops: its steps still read PostgreSQL.

Who applies it, so that a killed run's slots are free within STALE_AFTER_BEATS + 1 beats (5.5
minutes) of its death whenever something needs them:
- every run, before its steps claim slots (a dead run's slots go before anything waits for them),
  and at each beat (a run waiting behind a run that died since frees the slots itself);
- `weward-pipeline redact-due`, at its start;
- with the Dagster service, the sensor `free_slots_of_dead_runs` (every two beats). There the
  daemon also frees slots of runs that ended, after `run_monitoring.free_slots_after_run_end_seconds`
  (deploy/dagster.yaml), and its run monitoring fails runs whose ECS task stopped.
When nothing runs, nothing needs the slots: the next entry point frees them before claiming.
Clocks: the beat is the worker's clock, compared with the reaper's; ECS hosts keep NTP time, well
within the 5 minutes.

Dagster API: the instance methods `get_run_records` and `get_run_by_id` (public), `add_run_tags`,
`report_run_failed` and `report_run_canceled`, and the event-log storage's
`get_concurrency_run_ids` (runs with claimed or pending steps) and
`free_concurrency_slots_for_run` (deletes the run's claims and pending steps, then assigns the
freed slots to waiting steps): the calls Dagster's own run-monitoring daemon makes
(dagster/_daemon/monitoring/concurrency.py, run_monitoring.py). They are not marked public, so
weward_pipeline_tests/test_dead_runs.py pins what this module relies on.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import dagster as dg

from weward_pipeline.config import ConfigError

log = logging.getLogger(__name__)

HEARTBEAT_TAG = "weward/heartbeat"
HEARTBEAT_SECONDS_TAG = "weward/heartbeat_seconds"
HEARTBEAT_ENV = "WEWARD_RUN_HEARTBEAT_SECONDS"
DEFAULT_HEARTBEAT_SECONDS = 30
STALE_AFTER_BEATS = 10
UNBEATING_MAX_AGE = dt.timedelta(days=1)
DEAD_RUN_SENSOR = "free_slots_of_dead_runs"

_ENDED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def heartbeat_seconds(env: Mapping[str, str] = os.environ) -> int:
    raw = env.get(HEARTBEAT_ENV, "").strip()
    if not raw:
        return DEFAULT_HEARTBEAT_SECONDS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(
            f"{HEARTBEAT_ENV} must be a whole number of seconds, at least 1 (got {raw!r}); "
            f"unset it for the default {DEFAULT_HEARTBEAT_SECONDS}"
        )
    return value


def _utc(seconds: float, timespec: str = "seconds") -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec=timespec)


def _seconds(text: str) -> float | None:
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None


def why_dead(record: dg.RunRecord, now: float) -> str | None:
    """Why the worker of `record`'s run is gone, or None while it may be alive."""
    run = record.dagster_run
    beat = _seconds(run.tags.get(HEARTBEAT_TAG, ""))
    if beat is not None:
        try:
            interval = max(1, int(run.tags.get(HEARTBEAT_SECONDS_TAG, DEFAULT_HEARTBEAT_SECONDS)))
        except ValueError:
            interval = DEFAULT_HEARTBEAT_SECONDS
        silent = now - beat
        if silent > STALE_AFTER_BEATS * interval:
            return (
                f"its worker stopped beating {silent:.0f} s ago (last beat {_utc(beat)}, one every "
                f"{interval} s; dead after {STALE_AFTER_BEATS} missed): killed or stopped"
            )
        return None
    if run.status in _ENDED:
        return f"it ended ({run.status.value}) without freeing its slots"
    started = record.start_time or record.create_timestamp.timestamp()
    if now - started > UNBEATING_MAX_AGE.total_seconds():
        return (
            f"it has been {run.status.value} for {(now - started) / 3600:.0f} h without a heartbeat "
            f"(more than {UNBEATING_MAX_AGE.total_seconds() / 3600:.0f} h)"
        )
    return None


@dataclass(frozen=True)
class Reaped:
    run_id: str
    status: dg.DagsterRunStatus  # before: an in-progress status is now FAILURE (CANCELING: CANCELED)
    reason: str

    def __str__(self) -> str:
        return f"run {self.run_id[:8]} ({self.status.value}): {self.reason}; pool slots freed"


def free_run(instance: dg.DagsterInstance, run: dg.DagsterRun, reason: str) -> None:
    """Mark a run whose worker is gone failed (canceled if it was being canceled), then free its slots."""
    message = f"Marked failed by weward_pipeline: {reason}. Its pool slots were freed."
    if run.status == dg.DagsterRunStatus.CANCELING:
        instance.report_run_canceled(run, message=message)
    elif run.status not in _ENDED:
        instance.report_run_failed(run, message=message)
    instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)


def reap_dead_runs(
    instance: dg.DagsterInstance, *, now: float | None = None, keep: frozenset[str] = frozenset()
) -> list[Reaped]:
    """Free the pool slots (claimed or pending) of every run whose worker is gone; see the module doc."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    run_ids = sorted(storage.get_concurrency_run_ids() - set(keep))
    if not run_ids:
        return []
    now = time.time() if now is None else now
    reaped = []
    for record in instance.get_run_records(filters=dg.RunsFilter(run_ids=run_ids)):
        reason = why_dead(record, now)
        if reason is None:
            continue
        run = record.dagster_run
        free_run(instance, run, reason)
        reaped.append(Reaped(run.run_id, run.status, reason))
        log.warning("%s", reaped[-1])
    return reaped


class Heartbeat:
    """Beats for `run_id` every `interval` seconds until closed, and reaps other dead runs at each beat.

    The first beat and reap happen on entry, before the run's steps claim slots; with
    `first_beat=False` (a run not created yet, given `tags()` at its creation) the first is one
    interval later."""

    def __init__(
        self, instance: dg.DagsterInstance, run_id: str, interval: int | None = None, *, first_beat: bool = True
    ):
        self.instance, self.run_id, self.first_beat = instance, run_id, first_beat
        self.interval = interval or heartbeat_seconds()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"weward-heartbeat-{run_id[:8]}", daemon=True)

    def tags(self) -> dict[str, str]:
        """The heartbeat tags as of now (also the tags to create a run with)."""
        # Milliseconds: a beat truncated to the second looks up to a second older than it is.
        return {HEARTBEAT_TAG: _utc(time.time(), "milliseconds"), HEARTBEAT_SECONDS_TAG: str(self.interval)}

    def beat(self) -> None:
        self.instance.add_run_tags(self.run_id, self.tags())

    def _tick(self) -> None:
        try:
            self.beat()
            reap_dead_runs(self.instance, keep=frozenset({self.run_id}))
        except Exception:  # never fail a run for its heartbeat; a storage down fails the run anyway
            log.warning("heartbeat of run %s failed", self.run_id, exc_info=True)

    def _loop(self) -> None:
        # Fixed rate: the next beat is due one interval after the previous one was due, not after the
        # previous tick ended (a reap of a busy instance takes time: beats drifted to interval + tick,
        # so a dead run's last beat could be older than one interval when its worker died).
        due = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            self._tick()
            due = max(due + self.interval, time.monotonic())

    def __enter__(self) -> Heartbeat:
        if self.first_beat:
            self._tick()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class BeatingExecutor(dg.Executor):
    """An executor whose runs beat (Heartbeat) while `inner` executes them, in the run's own process."""

    def __init__(self, inner: dg.Executor):
        self._inner = inner

    @property
    def retries(self):
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config

    def execute(self, plan_context, execution_plan) -> Iterator[dg.DagsterEvent]:
        with Heartbeat(plan_context.instance, plan_context.dagster_run.run_id):
            yield from self._inner.execute(plan_context, execution_plan)


def beating(executor_def: dg.ExecutorDefinition) -> dg.ExecutorDefinition:
    """`executor_def`, same name, config and requirements, whose runs beat."""
    return dg.ExecutorDefinition(
        name=executor_def.name,
        config_schema=executor_def.config_schema,
        requirements=executor_def.get_requirements,
        executor_creation_fn=lambda init_context: BeatingExecutor(executor_def.executor_creation_fn(init_context)),
        description=executor_def.description,
    )


def dead_run_sensor() -> dg.SensorDefinition:
    @dg.sensor(
        name=DEAD_RUN_SENSOR,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=2 * heartbeat_seconds(),
        description="Marks failed the runs whose worker stopped beating (killed, OOM) and frees their "
        "postgres_source slots (weward_pipeline/defs/liveness.py).",
    )
    def free_slots_of_dead_runs(context: dg.SensorEvaluationContext):
        reaped = reap_dead_runs(context.instance)
        return dg.SkipReason(
            "; ".join(str(r) for r in reaped) if reaped else "no run holds a slot without a live worker"
        )

    return free_slots_of_dead_runs
