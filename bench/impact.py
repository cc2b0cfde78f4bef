"""What an export (or a redaction) costs the application on the same server.

The application is pgbench: its TPC-B-like read/write mix on its own tables, plus the app's own
step syncs inserted into the exported table (today's rows, which no export reads) and users
correcting old step syncs (updates of random rows of the very day being exported or redacted),
at a fixed arrival rate, as an app's users arrive. Its per-transaction log gives TPS and latency (p99
includes the schedule lag, i.e. what a user waits) for exactly the seconds the pipeline ran.

A watcher polls pg_locks and pg_stat_activity every 50 ms for the longest wait of any other
session on a lock the pipeline holds, and the longest transaction the pipeline keeps open.
The pipeline's sessions are the ones whose application_name starts with "weward".
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

PIPELINE_APP = "weward%"

STEP_SYNC_SQL = """\\set uid random(1, 20000000)
\\set steps random(0, 4000)
INSERT INTO bench.step_events (user_id, created_at, steps, distance_m, wards, source, app_version, device_id, payload, is_manual)
VALUES (:uid, now(), :steps, :steps * 0.7, :steps / 400.0, 'ios_healthkit', '4.12.3', gen_random_uuid(), '{"battery": 50, "sync": "foreground"}', false);
"""


# An app user correcting an old step sync: touches rows of the day being exported or redacted.
OLD_ROW_FIX_SQL = """\\set id random(:lo, :hi)
UPDATE bench.step_events SET steps = steps + 1 WHERE id = :id;
"""


def find_pgbench() -> str | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True):
        return str(candidate)
    return shutil.which("pgbench")


@dataclass
class AppStats:
    tps: float
    p50_ms: float
    p99_ms: float
    transactions: int
    seconds: float

    @classmethod
    def between(cls, samples, t0: float, t1: float) -> AppStats:
        """The transactions of `samples` ((done at, latency ms) pairs) that ended within [t0, t1]."""
        inside = [latency for done, latency in samples if t0 <= done <= t1]
        seconds = max(t1 - t0, 1e-9)
        return cls(
            tps=len(inside) / seconds,
            p50_ms=percentile(inside, 0.50),
            p99_ms=percentile(inside, 0.99),
            transactions=len(inside),
            seconds=seconds,
        )

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class PgbenchRun:
    """One pgbench process; `stats(t0, t1)` reads its per-transaction log for that window."""

    pgbench: str
    url: str
    seconds: float
    rate: float | None = None
    clients: int = 4
    threads: int = 2
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pgbench-")))
    cpus: set[int] | None = None
    touch_ids: tuple[int, int] | None = None  # ids of the pipeline's day, for OLD_ROW_FIX_SQL
    process: subprocess.Popen | None = None
    output: str = ""

    def start(self) -> PgbenchRun:
        script = self.log_dir / "step_sync.sql"
        script.write_text(STEP_SYNC_SQL)
        args = [
            self.pgbench,
            "-n",
            "-b",
            "tpcb-like@3",
            "-f",
            f"{script}@1",
            "-c",
            str(self.clients),
            "-j",
            str(self.threads),
            "-T",
            str(max(1, round(self.seconds))),
            "-l",
            f"--log-prefix={self.log_dir / 'tx'}",
        ]
        if self.touch_ids:
            fix = self.log_dir / "old_row_fix.sql"
            fix.write_text(OLD_ROW_FIX_SQL)
            args += ["-f", f"{fix}@1", "-D", f"lo={self.touch_ids[0]}", "-D", f"hi={self.touch_ids[1]}"]
        if self.rate:
            args += ["-R", str(round(self.rate))]
        self.process = subprocess.Popen(
            [*args, self.url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=pinned(self.cpus)
        )
        return self

    def wait(self) -> PgbenchRun:
        self.output, _ = self.process.communicate(timeout=self.seconds + 120)
        if self.process.returncode != 0:
            raise RuntimeError(f"pgbench failed ({self.process.returncode}):\n{self.output[-2000:]}")
        return self

    def samples(self) -> list[tuple[float, float]]:
        """(completion time as epoch seconds, latency in ms including schedule lag)."""
        result = []
        for path in self.log_dir.glob("tx.*"):
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) < 6 or not parts[2].isdigit():
                    continue  # skipped or failed transactions carry a word instead of a time
                latency_us = int(parts[2]) + (int(parts[6]) if self.rate and len(parts) > 6 else 0)
                result.append((int(parts[4]) + int(parts[5]) / 1e6, latency_us / 1000))
        return result

    def stats(self, t0: float, t1: float) -> AppStats:
        return AppStats.between(self.samples(), t0, t1)

    def cleanup(self) -> None:
        shutil.rmtree(self.log_dir, ignore_errors=True)


def split_cpus() -> tuple[set[int], set[int]] | None:
    """(server CPUs, client CPUs): production runs the database and the pipeline on different machines."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


def pinned(cpus: set[int] | None):
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def _tree(root_pid: int) -> list[int]:
    """A process and its children."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid = int(stat.parent.name)
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if pid == root_pid or ppid == root_pid:
            pids.append(pid)
    return pids


def pin_tree(root_pid: int, cpus: set[int]) -> int:
    """Pin a process and its children (PostgreSQL's postmaster: new backends inherit it)."""
    pinned_count = 0
    for pid in _tree(root_pid):
        try:
            os.sched_setaffinity(pid, cpus)
            pinned_count += 1
        except OSError:
            pass
    return pinned_count


def nice_tree(root_pid: int, niceness: int) -> None:
    """Lower the priority of every thread of a process and its children (Linux nices threads one by
    one; threads started later inherit their creator's)."""
    for pid in _tree(root_pid):
        for task in Path(f"/proc/{pid}/task").glob("[0-9]*"):
            try:
                os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)
            except OSError:
                pass


def pgbench_init(pgbench: str, url: str, scale: int) -> None:
    subprocess.run(
        [pgbench, "-i", "-q", "-s", str(scale), "--foreign-keys", url],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def max_tps(
    pgbench: str, url: str, seconds: float, cpus: set[int] | None = None, touch_ids: tuple[int, int] | None = None
) -> float:
    run = PgbenchRun(pgbench, url, seconds, cpus=cpus, touch_ids=touch_ids).start().wait()
    match = re.search(r"tps = ([\d.]+)", run.output)
    run.cleanup()
    return float(match.group(1)) if match else 0.0


WATCH_SQL = """
SELECT
  (SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0)
     FROM pg_stat_activity WHERE application_name LIKE %(app)s AND xact_start IS NOT NULL),
  (SELECT coalesce(max(extract(epoch FROM now() - l.waitstart)), 0)
     FROM pg_locks l JOIN pg_stat_activity w ON w.pid = l.pid
    WHERE NOT l.granted AND l.waitstart IS NOT NULL AND w.application_name NOT LIKE %(app)s
      AND EXISTS (SELECT 1 FROM pg_stat_activity b
                   WHERE b.pid = ANY (pg_blocking_pids(l.pid)) AND b.application_name LIKE %(app)s)),
  (SELECT coalesce(max(extract(epoch FROM now() - l.waitstart)), 0)
     FROM pg_locks l JOIN pg_stat_activity w ON w.pid = l.pid
    WHERE NOT l.granted AND l.waitstart IS NOT NULL AND w.application_name LIKE %(app)s)
"""


class LockWatch:
    """Polls the server while the pipeline runs; `with LockWatch(url) as watch: ...; watch.result`."""

    def __init__(self, url: str, interval: float = 0.05) -> None:
        self.url = url
        self.interval = interval
        self.longest_pipeline_xact_s = 0.0
        self.longest_app_wait_on_pipeline_s = 0.0
        self.longest_pipeline_wait_s = 0.0
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> LockWatch:
        self._conn = psycopg.connect(self.url, autocommit=True, application_name="bench-lockwatch")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._conn.close()
        if self._error is not None and exc[0] is None:
            raise self._error

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                xact, app_wait, pipeline_wait = self._conn.execute(WATCH_SQL, {"app": PIPELINE_APP}).fetchone()
                self.longest_pipeline_xact_s = max(self.longest_pipeline_xact_s, float(xact))
                self.longest_app_wait_on_pipeline_s = max(self.longest_app_wait_on_pipeline_s, float(app_wait))
                self.longest_pipeline_wait_s = max(self.longest_pipeline_wait_s, float(pipeline_wait))
                self.polls += 1
                self._stop.wait(self.interval)
        except BaseException as exc:  # noqa: BLE001 - reported by __exit__
            self._error = exc

    @property
    def result(self) -> dict:
        return {
            "longest_pipeline_xact_s": self.longest_pipeline_xact_s,
            "longest_app_wait_on_pipeline_s": self.longest_app_wait_on_pipeline_s,
            "longest_pipeline_wait_s": self.longest_pipeline_wait_s,
            "polls": self.polls,
        }


class ContinuousLoad:
    """pgbench runs of `chunk_s` back to back until `stop()`: the app load covers an action however long
    it takes (under a loaded machine an export can outlast any duration guessed in advance, and a
    window outside the load would measure no transaction at all)."""

    def __init__(self, chunk_s: float, **run_kwargs):
        self.chunk_s, self.run_kwargs = chunk_s, run_kwargs
        self.runs: list[PgbenchRun] = []
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="pgbench-load", daemon=True)

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                run = PgbenchRun(seconds=self.chunk_s, **self.run_kwargs).start()
                self.runs.append(run)
                run.wait()
        except BaseException as exc:  # noqa: BLE001 - re-raised by stop() in the caller's thread
            self._error = exc

    def start(self) -> ContinuousLoad:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ends after the current chunk (at most chunk_s away)."""
        self._stop.set()
        self._thread.join()
        if self._error is not None:
            raise self._error

    def stats(self, t0: float, t1: float) -> AppStats:
        return AppStats.between((sample for run in self.runs for sample in run.samples()), t0, t1)

    def kill(self) -> None:
        self._stop.set()
        for run in self.runs:
            if run.process and run.process.poll() is None:
                run.process.kill()
                run.process.wait()
        self._thread.join()
        for run in self.runs:
            run.cleanup()


def run_under_load(
    pgbench: str,
    url: str,
    rate: float,
    expected_s: float,
    action,
    settle_s: float = 2.0,
    cpus: set[int] | None = None,
    touch_ids: tuple[int, int] | None = None,
) -> dict:
    """Start the app load, let it settle, run `action()` and measure the app while it ran.

    `action()` returns a dict; when it has `ended_epoch` and `seconds` (a method's own clock), the
    window is exactly those seconds, without the process start-up around them. The load runs in
    chunks of settle + expected + settle seconds until the action has ended and settled, so it
    covers the action even when the action takes longer than expected.
    """
    load = ContinuousLoad(
        settle_s + expected_s + settle_s, pgbench=pgbench, url=url, rate=rate, cpus=cpus, touch_ids=touch_ids
    ).start()
    try:
        time.sleep(settle_s)
        with LockWatch(url) as watch:
            t0 = time.time()
            outcome = action()
            t1 = time.time()
        if isinstance(outcome, dict) and "ended_epoch" in outcome:
            t0, t1 = outcome["ended_epoch"] - outcome["seconds"], outcome["ended_epoch"]
        time.sleep(settle_s)
        load.stop()
        stats = load.stats(t0, t1)
        return {
            "action": outcome,
            "app": stats.as_dict(),
            "locks": watch.result,
            "window_s": t1 - t0,
            "load_chunks": len(load.runs),
        }
    finally:
        load.kill()
