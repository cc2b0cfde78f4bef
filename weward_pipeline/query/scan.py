"""The local engine's "data scanned": a read-only filesystem that counts every byte read from S3.

Wrapped around the lake's S3 filesystem for one query; past the limit the query is interrupted
through DuckDB (see `ScanBudget`).
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable

import pyarrow as pa
import pyarrow.fs as pafs


class ScanBudget:
    """Bytes read from S3 by one query, and the limit it may not pass.

    Reads run on pyarrow's I/O threads, which take the GIL to run this Python code, so they
    never raise: a Python error aborting a scan that is still starting (pyarrow holds the GIL
    there) deadlocks. Past the limit the query is interrupted through DuckDB instead, and reads
    of an ended query return nothing. `drain` waits, GIL released, until no read is in flight,
    so the next query (or the interpreter's exit) never meets a straggler.
    """

    QUIET_S = 0.05

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.bytes = 0
        self.exceeded = False
        self.closed = False
        self.inflight = 0
        self.last_activity = time.monotonic()
        self.on_exceeded: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def begin_read(self) -> bool:
        with self._lock:
            if self.closed or self.exceeded:
                return False
            self.inflight += 1
            self.last_activity = time.monotonic()
            return True

    def end_read(self, n: int) -> None:
        fire = False
        with self._lock:
            self.inflight -= 1
            self.bytes += n
            self.last_activity = time.monotonic()
            if self.limit is not None and self.bytes > self.limit and not self.exceeded:
                self.exceeded = fire = True
        if fire and self.on_exceeded is not None:
            self.on_exceeded()

    def drain(self, timeout_s: float = 30.0) -> None:
        with self._lock:
            self.closed = True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                idle = self.inflight == 0 and time.monotonic() - self.last_activity > self.QUIET_S
            if idle:
                return
            time.sleep(0.01)


class _CountingFile(io.RawIOBase):
    def __init__(self, inner, budget: ScanBudget) -> None:
        self._inner = inner
        self._budget = budget

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def size(self) -> int:
        return self._inner.size()

    def read(self, n: int = -1) -> bytes:
        if not self._budget.begin_read():
            return b""  # the query has ended or is being stopped: nothing more is read
        data = b""
        try:
            data = self._inner.read() if n is None or n < 0 else self._inner.read(n)
        finally:
            self._budget.end_read(len(data))
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            super().close()


def days_read(opened: set[str], tables: list[str]) -> dict[str, int]:
    """Per table, the days (`<table>/dt=<day>/` path segments) among the objects opened."""
    days: dict[str, set[str]] = {t: set() for t in tables}
    for path in opened:
        parts = path.split("/")
        for i, part in enumerate(parts[1:], start=1):
            if part.startswith("dt=") and parts[i - 1] in days:
                days[parts[i - 1]].add(part)
    return {t: len(d) for t, d in days.items()}


class CountingHandler(pafs.FileSystemHandler):
    """Read-only pass-through filesystem that counts the bytes the query engine reads."""

    def __init__(self, inner: pafs.FileSystem, budget: ScanBudget) -> None:
        self.inner = inner
        self.budget = budget
        self.opened: set[str] = set()  # paths the engine opened: the days it really read (days_read)

    def __eq__(self, other) -> bool:
        return isinstance(other, CountingHandler) and other.inner is self.inner and other.budget is self.budget

    def __ne__(self, other) -> bool:
        return not self == other

    def get_type_name(self) -> str:
        return f"counting+{self.inner.type_name}"

    def normalize_path(self, path: str) -> str:
        return self.inner.normalize_path(path)

    def get_file_info(self, paths):
        return self.inner.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.inner.get_file_info(selector)

    def open_input_file(self, path: str):
        self.opened.add(path)
        return pa.PythonFile(_CountingFile(self.inner.open_input_file(path), self.budget), mode="r")

    def open_input_stream(self, path: str):
        return self.open_input_file(path)

    def _read_only(self, *args, **kwargs):
        raise PermissionError("the query engine reads the lake; it never writes to it")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = _read_only
    delete_file = move = copy_file = open_output_stream = open_append_stream = _read_only
