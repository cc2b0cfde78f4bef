"""Pacing: how fast the pipeline works on the application's database, set by what the database shows.

Fixed knobs (rows/s, 1000-row batches, a 50 ms pause) cannot suit every database and hour. Like
pt-archiver (`--sleep-coef`: sleep in proportion to the last batch) and gh-ost
(`--max-load`/`--critical-load`: back off, or stop, when the server is busy), the pipeline:

  1. works in batches whose size follows a target duration (`target_batch_s`): a batch that took
     twice the target makes the next one half as big (redaction; the export's batches are ADBC's);
  2. sleeps after each batch in proportion to the work it did, so that it works at most
     `duty_cycle` of the wall-clock time (0.25: 1 s of work, then 3 s of rest), and never less
     than `min_pause_s`;
  3. measures, at most every `check_every_s`, on a connection of its own:
       - the canary: the round trip of `SELECT 1`. A trivial statement waits only for a CPU and
         the network, so its latency is what every application query pays on top of its own work
         when the server is saturated;
       - sessions of the application waiting for a lock the pipeline holds (pg_blocking_pids):
         the pipeline is the cause, not a witness;
       - active client backends (gh-ost's Threads_running): more than the server has cores means
         queries queue for CPU;
       - the replay lag of standbys (pg_stat_replication, on a primary; needs pg_monitor): the
         pipeline's writes (redaction) must not leave the readers behind;
     and above a signal's `max_*` it backs off: the pause doubles (up to `max_pause_s`) and the
     batch halves, until the signal is back under its limit; above its `critical_*` for
     `critical_for_s` it stops with `PacingStopped`, saying which signal and the knob to change;
  4. records what it did (batches, rows, work and sleep seconds, back-offs and why) for the
     metadata, so the UI shows how gentle a run was and what slowed it down.

The knobs are `PacingLimits`; the catalog's `pacing:` of a table and a run's configuration (Dagster
config, CLI flags) override the defaults, in that order (`PacingLimits.merged`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from weward_pipeline.config import ConfigError

# Sessions of the pipeline say who they are (pg.py, application_name); the signals leave them out.
PIPELINE_SESSIONS = "weward%"

SIGNALS_SQL = """
SELECT
  (SELECT count(*) FROM pg_stat_activity
    WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()
      AND application_name NOT LIKE %(pipeline)s),
  (SELECT count(*) FROM pg_stat_activity AS w
    WHERE w.wait_event_type = 'Lock' AND w.application_name NOT LIKE %(pipeline)s
      AND EXISTS (SELECT 1 FROM pg_stat_activity AS b
                   WHERE b.pid = ANY (pg_blocking_pids(w.pid)) AND b.application_name LIKE %(pipeline)s)),
  (SELECT max(extract(epoch FROM replay_lag)) FROM pg_stat_replication)
"""


def export_pacing() -> PacingLimits:
    """The export's defaults: one long transaction holds ACCESS SHARE until it ends, so a session
    waiting for it (a migration's ALTER TABLE, and the application queued behind that) waits as long
    as the export goes on: the export stops at once (it is retried later) instead of backing off."""
    return PacingLimits(critical_lock_waiters=0)


class PacingStopped(RuntimeError):
    """A pressure signal stayed above its critical level: the pipeline stopped. Transient: the
    database was busy, a later run may find it quiet (nothing was left half done)."""

    transient = True

    def __init__(self, message: str, signal: str) -> None:
        super().__init__(message)
        self.signal = signal


@dataclass(frozen=True)
class PacingLimits:
    """The budget a run may spend on the database. `None` turns a signal off."""

    duty_cycle: float = 0.5  # share of wall-clock time spent working (1.0: no pause)
    # Redaction batches grow or shrink towards this duration: on a saturated core an application query
    # may wait behind a whole batch, so short bursts (bench/results.md: 10,000-row batches of up to
    # 1.6 s under load put the app's p99 at 6x quiet).
    target_batch_s: float = 0.02
    min_batch_rows: int = 100
    max_batch_rows: int = 5_000
    min_pause_s: float = 0.0
    max_pause_s: float = 5.0
    check_every_s: float = 1.0
    max_canary_ms: float | None = 25.0
    critical_canary_ms: float | None = 1000.0
    max_active_backends: int | None = 16
    critical_active_backends: int | None = 64
    max_lock_waiters: int | None = 0  # any application session waiting for the pipeline's locks
    critical_lock_waiters: int | None = None  # the export sets 0: its snapshot holds its lock to the end
    max_replica_lag_s: float | None = 30.0
    critical_replica_lag_s: float | None = 300.0
    critical_for_s: float = 30.0  # a critical level must last this long to stop the run

    def merged(self, *overrides: Mapping[str, object] | None) -> PacingLimits:
        """These limits with the given fields replaced (catalog, then run); unknown names are errors."""
        names = {f.name for f in dataclasses.fields(self)}
        changes: dict[str, object] = {}
        for override in overrides:
            for key, value in (override or {}).items():
                if key not in names:
                    raise ConfigError(f"unknown pacing setting {key!r}; known: {', '.join(sorted(names))}")
                changes[key] = value
        limits = dataclasses.replace(self, **changes)
        limits.validate()
        return limits

    def validate(self) -> None:
        problems = []
        if not 0 < self.duty_cycle <= 1:
            problems.append(f"duty_cycle must be in (0, 1], got {self.duty_cycle}")
        if self.target_batch_s <= 0 or self.check_every_s < 0 or self.critical_for_s < 0:
            problems.append("target_batch_s must be > 0, check_every_s and critical_for_s >= 0 (0: every batch)")
        if not 1 <= self.min_batch_rows <= self.max_batch_rows:
            problems.append("min_batch_rows must be >= 1 and <= max_batch_rows")
        if not 0 <= self.min_pause_s <= self.max_pause_s:
            problems.append("min_pause_s must be >= 0 and <= max_pause_s")
        for signal in ("canary_ms", "active_backends", "lock_waiters", "replica_lag_s"):
            high, critical = getattr(self, f"max_{signal}"), getattr(self, f"critical_{signal}")
            if high is not None and high < 0 or critical is not None and critical < 0:
                problems.append(f"max_{signal} and critical_{signal} must be >= 0 (or null: off)")
            elif high is not None and critical is not None and critical < high:
                problems.append(f"critical_{signal} ({critical}) must not be below max_{signal} ({high})")
        if problems:
            raise ConfigError("invalid pacing: " + "; ".join(problems))

    def as_metadata(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Signals:
    canary_ms: float
    active_backends: int
    lock_waiters: int
    replica_lag_s: float | None

    def as_dict(self) -> dict:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}


def probe_for(conn, reconnect: Callable[[], object] | None = None) -> Callable[[], Signals]:
    """Signals from a psycopg connection (autocommit) to the database the pipeline loads.

    With `reconnect`, a connection the server closed (a standby's recovery conflict, a restart) is
    opened again at the next check."""
    state = {"conn": conn}

    def probe() -> Signals:
        if state["conn"] is None or state["conn"].closed:
            if reconnect is None:
                raise ConnectionError("the pacing connection is closed")
            state["conn"] = reconnect()
        current = state["conn"]
        started = time.perf_counter()
        current.execute("SELECT 1").fetchone()
        canary_ms = (time.perf_counter() - started) * 1000
        active, waiters, lag = current.execute(SIGNALS_SQL, {"pipeline": PIPELINE_SESSIONS}).fetchone()
        return Signals(
            canary_ms=canary_ms,
            active_backends=int(active),
            lock_waiters=int(waiters),
            replica_lag_s=float(lag) if lag is not None else None,
        )

    probe.connection = lambda: state["conn"]  # for the owner to close
    return probe


# What each signal means, for the messages.
_SIGNAL_WORDS = {
    "canary_ms": "a `SELECT 1` took {value:.0f} ms (the server is short of CPU)",
    "active_backends": "{value} application queries were running at once",
    "lock_waiters": "{value} application session(s) waited for a lock the pipeline holds",
    "replica_lag_s": "a standby replayed {value:.0f} s behind",
}


@dataclass
class PacingReport:
    """What the pacing did; the run's metadata."""

    batches: int = 0
    rows: int = 0
    work_s: float = 0.0
    sleep_s: float = 0.0
    checks: int = 0
    failed_checks: int = 0
    back_offs: dict[str, int] = field(default_factory=dict)  # signal -> batches slowed down for it
    back_off_events: list[dict] = field(default_factory=list)  # the first ones, with the values seen
    batch_rows_min: int | None = None
    batch_rows_max: int | None = None
    last_batch_rows: int | None = None
    last_pause_s: float = 0.0
    worst: dict[str, float] = field(default_factory=dict)  # the highest value of each signal seen
    stopped: str | None = None

    def as_dict(self, limits: PacingLimits) -> dict:
        total = self.work_s + self.sleep_s
        data = dataclasses.asdict(self)
        data.update(
            work_s=round(self.work_s, 3),
            sleep_s=round(self.sleep_s, 3),
            last_pause_s=round(self.last_pause_s, 3),
            duty_cycle_measured=round(self.work_s / total, 3) if total else None,
            limits={k: v for k, v in limits.as_metadata().items()},
        )
        return data


class Pacer:
    """One run's pacing. `rows()` says how big the next batch is; `done(rows, seconds)` after each batch
    sleeps as long as the budget and the signals say (and raises PacingStopped at a critical level).

    `fixed_rows` / `fixed_pause_s` pin the batch size or the pause (a user's explicit setting).
    """

    def __init__(
        self,
        limits: PacingLimits,
        probe: Callable[[], Signals] | None = None,
        *,
        start_rows: int = 1000,
        fixed_rows: int | None = None,
        fixed_pause_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        say: Callable[[str], None] | None = None,
        what: str = "",
    ) -> None:
        limits.validate()
        self.limits = limits
        self.probe = probe
        self.fixed_rows = fixed_rows
        self.fixed_pause_s = fixed_pause_s
        self.sleep, self.clock, self.say, self.what = sleep, clock, say or (lambda message: None), what
        self._rows = fixed_rows or min(max(start_rows, limits.min_batch_rows), limits.max_batch_rows)
        self._back_off = 0  # doublings of the pause currently applied
        self._last_check = float("-inf")
        self._pressed: set[str] = set()
        self._critical_since: dict[str, float] = {}
        self.report = PacingReport()

    def rows(self) -> int:
        return self._rows

    def done(self, rows: int, seconds: float) -> float:
        """Account for a batch of `rows` that took `seconds` of work; sleep; return the pause slept."""
        report, limits = self.report, self.limits
        report.batches += 1
        report.rows += rows
        report.work_s += seconds
        report.batch_rows_min = rows if report.batch_rows_min is None else min(report.batch_rows_min, rows)
        report.batch_rows_max = rows if report.batch_rows_max is None else max(report.batch_rows_max, rows)
        report.last_batch_rows = rows
        self._check()
        if self.fixed_rows is None and rows and seconds > 0:
            # Towards the target duration, at most x2 or /2 a step (one slow batch is not a trend).
            wanted = rows * min(2.0, max(0.5, limits.target_batch_s / seconds))
            if self._pressed:
                wanted = min(wanted, rows / 2)
            self._rows = int(min(max(wanted, limits.min_batch_rows), limits.max_batch_rows))
        if self.fixed_pause_s is not None:
            pause = self.fixed_pause_s
        else:
            pause = max(seconds * (1 - limits.duty_cycle) / limits.duty_cycle, limits.min_pause_s)
        if self._pressed:
            pause = max(pause, 0.05) * 2**self._back_off
        pause = min(pause, limits.max_pause_s) if (self._pressed or self.fixed_pause_s is None) else pause
        report.last_pause_s = pause
        if pause > 0:
            self.sleep(pause)
            report.sleep_s += pause
        return pause

    def _check(self) -> None:
        if self.probe is None or self.clock() - self._last_check < self.limits.check_every_s:
            return
        self._last_check = self.clock()
        try:
            signals = self.probe()
        except Exception as exc:  # noqa: BLE001 - a failed check must not fail the work it watches
            self.report.failed_checks += 1
            if self.report.failed_checks == 1:
                self.say(
                    f"{self.what}: a pacing check failed ({exc.__class__.__name__}); pacing goes on with "
                    "the duty cycle alone until a check succeeds"
                )
            return
        self.report.checks += 1
        pressed: set[str] = set()
        values = signals.as_dict()
        for name, value in values.items():
            if value is None:
                continue
            self.report.worst[name] = max(self.report.worst.get(name, value), value)
            high, critical = getattr(self.limits, f"max_{name}"), getattr(self.limits, f"critical_{name}")
            if critical is not None and value > critical:
                since = self._critical_since.setdefault(name, self.clock())
                # A session waiting for the pipeline's lock waits as long as the pipeline goes on: stop now.
                if name == "lock_waiters" or self.clock() - since >= self.limits.critical_for_s:
                    self._stop(name, value, critical)
            else:
                self._critical_since.pop(name, None)
            if high is not None and value > high:
                pressed.add(name)
        for name in pressed:
            self.report.back_offs[name] = self.report.back_offs.get(name, 0) + 1
        if pressed:
            self._back_off = min(self._back_off + 1, 10)
            if len(self.report.back_off_events) < 20:
                self.report.back_off_events.append(
                    {"batch": self.report.batches, "signals": values, "because": sorted(pressed)}
                )
            if not self._pressed:
                self.say(
                    f"{self.what}: backing off: "
                    + "; ".join(_SIGNAL_WORDS[name].format(value=values[name]) for name in sorted(pressed))
                )
        else:
            self._back_off = max(self._back_off - 1, 0)
        self._pressed = pressed

    def _stop(self, name: str, value: float, critical: float) -> None:
        words = _SIGNAL_WORDS[name].format(value=value)
        lasting = "" if name == "lock_waiters" else f" for {self.limits.critical_for_s:g} s"
        message = (
            f"{self.what}: stopped by pacing: {words}, above critical_{name} = {critical:g}{lasting}. "
            "The database is too busy for this run now; it is retried later. Raise "
            f"critical_{name} in the table's `pacing:` (catalog) or the run's config if this load is "
            "normal for the server."
        )
        self.report.stopped = message
        raise PacingStopped(message, name)
