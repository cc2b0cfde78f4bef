"""Where the product's time goes: one export under py-spy, its samples grouped by stage.

py-spy samples each thread continuously (`--idle`: waiting counts), native frames included, so a
thread's samples are its timeline. The export's wall time is the main thread's timeline inside
the method (imports and exit left out); the Parquet writer thread runs beside it, one batch
behind, and its own timeline says how busy it was.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

MAIN_STAGES = [
    ("waiting for PostgreSQL's rows (socket)", lambda f: _has(f, "adbcpq::") and _leaf_waits(f)),
    ("ADBC: decoding COPY BINARY into Arrow", lambda f: _has(f, "adbcpq::")),
    ("waiting for the Parquet writer thread (queue full)", lambda f: _has(f, "Queue.put")),
    ("convert_batch: numeric text -> decimal128, unwrap", lambda f: _has(f, "convert_batch")),
    ("throttle sleep", lambda f: _has(f, "Extraction._throttle")),
    ("connect, count(*) and describe (same snapshot)", lambda f: _has(f, "Extraction.open")),
    ("closing the file (footer)", lambda f: _has(f, "ParquetDayWriter.close")),
]
WRITER_STAGES = [
    ("idle: waiting for the next batch", lambda f: _has(f, "Queue.get")),
    ("zstd compression", lambda f: any(x.startswith("ZSTD") for x in f)),
    ("Parquet encoding (dictionary, plain, statistics)", lambda f: _has(f, "parquet::")),
]


def _has(frames: list[str], name: str) -> bool:
    return any(name in f for f in frames)


def _leaf_waits(frames: list[str]) -> bool:
    leaf = frames[-1].lstrip("_")
    return leaf.startswith(("poll", "recv", "read", "pqWait", "pqSocket", "select", "epoll", "0x"))


def find_py_spy(*pythons: str) -> str | None:
    for python in pythons:
        candidate = Path(python).parent / "py-spy"
        if candidate.exists():
            return str(candidate)
    return shutil.which("py-spy")


def _shares(counter: Counter) -> list[tuple[str, float]]:
    total = sum(counter.values()) or 1
    return [(stage, n / total) for stage, n in counter.most_common()]


def summarize(raw: Path, method_frame: str = "product_local") -> dict[str, list[tuple[str, float]]]:
    """{"main": [(stage, share of the export's wall time)], "writer": [(stage, share)]}."""
    main: Counter[str] = Counter()
    writer: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [f.split(" (")[0] for f in stack.split(";")]
        if _has(frames, "_find_and_load"):
            continue  # imports: before the method's clock starts
        if _has(frames, "_encode_loop"):
            stage = next((name for name, test in WRITER_STAGES if test(frames)), "other")
            writer[stage] += int(count)
        elif _has(frames, method_frame):
            stage = next((name for name, test in MAIN_STAGES if test(frames)), "other (Python)")
            main[stage] += int(count)
    return {"main": _shares(main), "writer": _shares(writer)}
