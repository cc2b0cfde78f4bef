"""Query the lake with SQL: Athena in production, DuckDB over the very same objects locally.

Both engines see one thing: the Glue database. A table is what its Glue entry says (columns,
`dt` partitions, each partition's S3 location), so a query tried on the local stack reads the
Parquet objects Athena would read, with the same names and types:

- `AthenaEngine` (`athena.py`): StartQueryExecution in the configured workgroup, polled with a
  progress callback; bytes scanned and their cost; stopped on Ctrl-C, timeout or a client-side
  scan limit; Athena's failure reasons turned into errors an analyst can act on.
- `LocalEngine` (`local.py`): DuckDB in-process over pyarrow datasets of the objects Glue points
  at, partitions pruned before any object is opened, every S3 byte counted (`scan.py`).

Snapshot tables also get `<name>_latest`, the latest exported day (`catalog.py`).

Time semantics follow Athena: Glue `timestamp` columns are UTC wall-clock timestamps without a
time zone, and the session time zone is UTC.

Queries are Athena SQL. Both engines parse them first (`dialect.parse`: what Athena would refuse
fails before anything runs, with line, column and a hint); the local engine runs their DuckDB
translation (`dialect.to_duckdb`), which keeps Athena's semantics where DuckDB's differ.

Modules: `errors` (what an analyst sees when a query fails), `settings` (environment contract,
sizes, Athena's price), `output` (results, text/CSV/Parquet), `catalog` (Glue listing, Glue type
-> Arrow type), `dialect` and `athena_functions` (Athena SQL checked and translated), `scan` (the
byte-counting filesystem), `local`, `athena`, `build` (engine from settings, clients from aws.py).
See docs/querying.md.
"""

from weward_pipeline.query.athena import AthenaEngine, athena_rows_to_arrow
from weward_pipeline.query.build import build_engine
from weward_pipeline.query.catalog import (
    ATHENA_CATALOG,
    LATEST_SUFFIX,
    LakeTable,
    glue_type_to_arrow,
    latest_view_name,
    latest_view_sql,
    list_lake_tables,
    queryable_names,
)
from weward_pipeline.query.errors import (
    BytesScannedLimitError,
    QueryCancelledError,
    QueryError,
    QueryFailedError,
    QuerySyntaxError,
    UnknownTableError,
)
from weward_pipeline.query.local import LocalEngine
from weward_pipeline.query.output import QueryProgress, QueryResult, format_table, write_table
from weward_pipeline.query.settings import (
    ATHENA_USD_PER_TB,
    ENGINES,
    QuerySettings,
    athena_cost_usd,
    format_bytes,
    format_usd,
    parse_size,
)

__all__ = [
    "ATHENA_CATALOG",
    "ATHENA_USD_PER_TB",
    "ENGINES",
    "LATEST_SUFFIX",
    "AthenaEngine",
    "BytesScannedLimitError",
    "LakeTable",
    "LocalEngine",
    "QueryCancelledError",
    "QueryError",
    "QueryFailedError",
    "QueryProgress",
    "QueryResult",
    "QuerySettings",
    "QuerySyntaxError",
    "UnknownTableError",
    "athena_cost_usd",
    "athena_rows_to_arrow",
    "build_engine",
    "format_bytes",
    "format_table",
    "format_usd",
    "glue_type_to_arrow",
    "latest_view_name",
    "latest_view_sql",
    "list_lake_tables",
    "parse_size",
    "queryable_names",
    "write_table",
]
