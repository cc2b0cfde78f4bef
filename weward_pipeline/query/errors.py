"""Query errors: each says what went wrong in the analyst's terms, and what to do about it.

`str(error)` is the message to show; no documented mistake ends in a traceback.
"""

from __future__ import annotations

import difflib

from weward_pipeline.query.settings import format_bytes


class QueryError(RuntimeError):
    """A query could not run or did not finish. str() is the message to show."""

    executed_sql: str | None = None  # the statement the engine ran, when it got that far (--show-sql)


class UnknownTableError(QueryError):
    def __init__(self, missing: list[str], known: list[str], database: str) -> None:
        self.missing = missing
        self.known = known
        hints = []
        for name in missing:
            close = difflib.get_close_matches(name.split(".")[-1], known, n=2, cutoff=0.6)
            if close:
                hints.append(f"{name}: did you mean {' or '.join(close)}?")
        message = (
            f"unknown table{'s' if len(missing) > 1 else ''} {', '.join(missing)} in Glue database {database}. "
            + (" ".join(hints) + " " if hints else "")
            + f"Known tables: {', '.join(known) if known else '(none yet: export a day first)'}"
        )
        super().__init__(message)


def _render_position(sql: str, line: int, column: int) -> str:
    lines = sql.splitlines() or [""]
    if not 1 <= line <= len(lines):
        return ""
    text = lines[line - 1]
    return f"\n  {text}\n  {' ' * max(column - 1, 0)}^"


class QuerySyntaxError(QueryError):
    def __init__(self, detail: str, sql: str, line: int | None, column: int | None) -> None:
        self.line, self.column, self.detail = line, column, detail
        where = f" at line {line}, column {column}" if line else ""
        super().__init__(f"syntax error{where}: {detail}" + (_render_position(sql, line, column or 1) if line else ""))


class QueryFailedError(QueryError):
    """The engine ran the query and refused it (unknown column, type mismatch, ...)."""

    def __init__(self, detail: str, sql: str = "", line: int | None = None, column: int | None = None) -> None:
        self.line, self.column, self.detail = line, column, detail
        where = f" (line {line}, column {column})" if line else ""
        super().__init__(f"query failed{where}: {detail}" + (_render_position(sql, line, column or 1) if line else ""))


class QueryCancelledError(QueryError):
    def __init__(self, message: str, bytes_scanned: int = 0) -> None:
        self.bytes_scanned = bytes_scanned
        super().__init__(message)


class BytesScannedLimitError(QueryError):
    def __init__(self, limit: int | None, scanned: int, where: str, engine: str) -> None:
        self.limit, self.scanned, self.where = limit, scanned, where
        limit_text = format_bytes(limit) if limit else "its limit"
        super().__init__(
            f"bytes-scanned limit reached: the query was stopped after scanning {format_bytes(scanned)} "
            f"({engine}), over the {limit_text} per query allowed by {where}. Read fewer days "
            "(WHERE dt BETWEEN '2024-03-01' AND '2024-03-07' prunes partitions), select only the "
            "columns you need, or, if the scan is intended, raise the limit"
            + (
                " (--max-bytes-scanned)"
                if where.startswith("--") or "WEWARD_" in where
                else " in the workgroup (infra: bytes_scanned_cutoff_per_query) or use another workgroup"
            )
            + "."
        )
