"""Query results: progress reports, the result with its scan and cost, text/CSV/Parquet output."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from weward_pipeline.query.errors import QueryError
from weward_pipeline.query.settings import ATHENA_USD_PER_TB, athena_cost_usd, format_bytes, format_usd


@dataclass
class QueryProgress:
    engine: str
    state: str  # QUEUED, RUNNING (then the final state)
    elapsed_s: float
    bytes_scanned: int
    query_id: str | None = None


@dataclass
class QueryResult:
    sql: str
    engine: str
    table: pa.Table
    bytes_scanned: int
    elapsed_s: float
    query_id: str | None = None
    workgroup: str | None = None
    output_location: str | None = None
    statement_type: str = "DML"
    partitions_listed: dict[str, int] = field(default_factory=dict)  # per table, the days published
    days_read: dict[str, int] = field(default_factory=dict)  # per table, the days whose objects were opened
    usd_per_tb: float = ATHENA_USD_PER_TB
    executed_sql: str | None = None  # what the engine ran: the DuckDB translation locally, `sql` in Athena
    rewrites: list[str] = field(default_factory=list)  # the Athena semantics the translation applied

    @property
    def columns(self) -> list[str]:
        return self.table.column_names

    @property
    def rows(self) -> list[dict]:
        return self.table.to_pylist()

    @property
    def cost_usd(self) -> float:
        """Athena's bill for this query; for the local engine, what Athena would bill for the same bytes."""
        if self.statement_type != "DML":
            return 0.0
        return athena_cost_usd(self.bytes_scanned, self.usd_per_tb)

    def summary(self) -> str:
        rows = self.table.num_rows
        scanned = f"scanned {format_bytes(self.bytes_scanned)}"
        if self.engine == "athena":
            cost = f"cost {format_usd(self.cost_usd)} at ${self.usd_per_tb:g}/TB (10 MB minimum)"
            ident = f", query {self.query_id} in workgroup {self.workgroup}"
        else:
            cost = f"no charge locally (Athena: about {format_usd(self.cost_usd)})"
            ident = ""
            if self.partitions_listed:
                # Days read, not days published: a dt filter that read one day says so.
                ident = "; tables: " + ", ".join(
                    f"{t} ({self.days_read.get(t, n)} of {n} day{'s' if n != 1 else ''} read)"
                    for t, n in sorted(self.partitions_listed.items())
                )
        return f"{rows} row{'s' if rows != 1 else ''} in {self.elapsed_s:.2f} s, {scanned}, {cost}{ident}"

    def format(self, max_rows: int = 100, max_width: int = 40) -> str:
        return format_table(self.table, max_rows=max_rows, max_width=max_width)

    def write(self, path: str | os.PathLike) -> str:
        """--output: .csv or .parquet by the file's suffix. Returns the format written."""
        return write_table(self.table, path)


def _cell(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def format_table(table: pa.Table, max_rows: int = 100, max_width: int = 40) -> str:
    """A plain, aligned text table (numbers right-aligned, NULL spelled out)."""
    names = table.column_names
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) for t in table.schema.types]
    shown = table.slice(0, max_rows)
    columns = [[_cell(v) for v in shown.column(i).to_pylist()] for i in range(len(names))]
    columns = [[c if len(c) <= max_width else c[: max_width - 1] + "…" for c in column] for column in columns]
    widths = [max([len(n)] + [len(c) for c in column]) for n, column in zip(names, columns)]

    def line(values: list[str]) -> str:
        return " | ".join(
            v.rjust(w) if numeric[i] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))
        ).rstrip()

    out = [line(names), "-+-".join("-" * w for w in widths)]
    out.extend(line([column[r] for column in columns]) for r in range(shown.num_rows))
    if table.num_rows > max_rows:
        out.append(f"... {table.num_rows - max_rows} more row(s); write them all with --output file.csv|file.parquet")
    return "\n".join(out)


def _csv_ready(table: pa.Table) -> pa.Table:
    """CSV has no nested types: lists, maps and structs become their JSON-like text."""
    columns = []
    for column, typ in zip(table.columns, table.schema.types):
        if pa.types.is_nested(typ) or pa.types.is_binary(typ):
            columns.append(pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string()))
        else:
            columns.append(column)
    return pa.table(columns, names=table.column_names)


def write_table(table: pa.Table, path: str | os.PathLike) -> str:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise QueryError(f"--output {path}: the file name must end in .csv or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        pacsv.write_csv(_csv_ready(table), str(path))
        return "csv"
    pq.write_table(table, str(path), compression="zstd")
    return "parquet"
