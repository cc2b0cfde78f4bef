"""The memory of a whole process tree, sampled: what a container running it must hold.

`dagster asset materialize` is not one process: with a multiprocess executor it starts a
forkserver and one process per step. A Fargate task is sized by all of them together, so the
peak that matters is the largest sum over the tree at one instant, not any one process's peak.

Two sums are kept. RSS counts a page once per process that maps it (shared libraries and
copy-on-write pages of forked children count several times): the conservative figure, and the
one the issue's 450 MB target is about. PSS splits each shared page between the processes that
share it: close to what the kernel charges the container's cgroup.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def _children(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, todo = [root], [root]
    while todo:
        parent = todo.pop()
        for pid, ppid in parents.items():
            if ppid == parent:
                tree.append(pid)
                todo.append(pid)
    return tree


def _kb(path: Path, field_name: str) -> int:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field_name):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _name(pid: int) -> str:
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return " ".join(w.decode(errors="replace") for w in words if w)[:120]
    except OSError:
        return "?"


@dataclass
class TreePeak:
    rss_kb: int = 0
    pss_kb: int = 0
    processes: int = 0
    at_peak: list[dict] = field(default_factory=list)  # each process of the tree at the RSS peak
    samples: int = 0

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def sample(root: int, peak: TreePeak) -> None:
    pids = _children(root)
    rows = []
    for pid in pids:
        rss = _kb(Path(f"/proc/{pid}/status"), "VmRSS:")
        if rss:
            rows.append(
                {
                    "pid": pid,
                    "rss_kb": rss,
                    "pss_kb": _kb(Path(f"/proc/{pid}/smaps_rollup"), "Pss:"),
                    "command": _name(pid),
                }
            )
    rss, pss = sum(r["rss_kb"] for r in rows), sum(r["pss_kb"] for r in rows)
    peak.samples += 1
    peak.processes = max(peak.processes, len(rows))
    peak.pss_kb = max(peak.pss_kb, pss)
    if rss > peak.rss_kb:
        peak.rss_kb = rss
        peak.at_peak = rows


def run_sampled(command: list[str], interval: float = 0.05, **popen) -> tuple[int, TreePeak, float]:
    """Run `command`; return (exit status, the tree's peak, seconds)."""
    peak = TreePeak()
    started = time.monotonic()
    process = subprocess.Popen(command, **popen)
    while process.poll() is None:
        sample(process.pid, peak)
        time.sleep(interval)
    return process.returncode, peak, time.monotonic() - started
