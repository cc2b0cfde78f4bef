"""One way of exporting one day to Parquet, run alone in its own process.

    python -m bench.methods SPEC.json RESULT.json

Each method imports only what it needs, inside its function, so the process's peak RSS is that
method's own. Timing starts just before connecting and stops when the last Parquet byte is
written: interpreter start-up and imports are not counted, for any method.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import data

COMPRESSION = "zstd"


def _table_config(retention_days: int | None = None):
    from weward_pipeline.config import TableConfig

    return TableConfig(
        name=data.TABLE,
        mode="append",
        primary_key=("id",),
        schema=data.SCHEMA,
        source_table=data.TABLE,
        partition_column="created_at",
        retention_days=retention_days,
    )


def _settings_and_catalog(spec: dict, table):
    from weward_pipeline.config import Catalog, LakeLocation, Settings

    settings = Settings(
        pg_url=spec["pg_url"],
        lake=LakeLocation(spec["bucket"], "lake"),
        glue_database="weward_bench",
        aws_region=os.environ["AWS_REGION"],
        aws_endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        tables_file=None,
        pg_redact_url=spec["pg_url"],
    )
    return settings, Catalog(start_date=dt.date(2000, 1, 1), timezone=data.TIMEZONE, tables=(table,))


def _limits(spec: dict):
    from weward_pipeline.extract import ExtractLimits

    kwargs = {}
    if spec.get("max_rows_per_second"):
        kwargs["max_rows_per_second"] = float(spec["max_rows_per_second"])
    if spec.get("batch_bytes"):
        kwargs["batch_bytes"] = int(spec["batch_bytes"])
    return ExtractLimits(**kwargs)


# The signals off, for the runs that measure a fixed pace (what the pipeline did before pacing).
SIGNALS_OFF = {
    "max_canary_ms": None,
    "critical_canary_ms": None,
    "max_active_backends": None,
    "critical_active_backends": None,
    "max_lock_waiters": None,
    "critical_lock_waiters": None,
    "max_replica_lag_s": None,
    "critical_replica_lag_s": None,
}


def _pacing(spec: dict):
    """spec["pacing"]: absent or false: none (the raw read); "default": the export's defaults."""
    if spec.get("pacing") != "default":
        return None
    from weward_pipeline.pacing import export_pacing

    return export_pacing()


def copy_floor(spec: dict, out: Path) -> dict:
    """`COPY (one day) TO STDOUT (FORMAT binary)` into /dev/null: what PostgreSQL alone costs.

    psql when the machine has it (C, no decoding at all); psycopg's COPY otherwise.
    """
    query = f"COPY ({data.day_query(_day(spec))}) TO STDOUT (FORMAT binary)"
    psql = spec.get("psql")
    started = time.monotonic()
    if psql:
        with open(os.devnull, "wb") as devnull:
            subprocess.run(
                [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", spec["pg_url"], "-c", query],
                stdout=devnull,
                check=True,
            )
        transport = "psql"
    else:
        import psycopg

        with psycopg.connect(spec["pg_url"]) as conn, conn.cursor() as cur, open(os.devnull, "wb") as devnull:
            with cur.copy(query) as copy:
                for block in copy:
                    devnull.write(block)
        transport = "psycopg"
    return {"seconds": time.monotonic() - started, "rows": spec["rows"], "transport": transport}


def product_local(spec: dict, out: Path) -> dict:
    """This product's read and write path (Extraction -> ParquetDayWriter), to local disk."""
    import adbc_driver_postgresql  # noqa: F401 - imported by Extraction.open(); not timed
    import pyarrow.fs as pafs

    from weward_pipeline import lake
    from weward_pipeline.extract import DayWindow, Extraction

    day = _day(spec)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with Extraction(
        spec["pg_url"], _table_config(), DayWindow(day, data.TIMEZONE), _limits(spec), pacing=_pacing(spec)
    ) as extraction:
        opened = time.monotonic()
        writer = lake.ParquetDayWriter(
            pafs.LocalFileSystem(),
            str(out),
            extraction.source.arrow_schema,
            metadata={"weward.table": data.TABLE, "weward.day": day.isoformat()},
        )
        for batch in extraction.batches():
            writer.write(batch)
        objects = writer.close()
        rows = sum(o.rows for o in objects)
        if rows != extraction.source_rows:
            raise RuntimeError(f"wrote {rows} rows, the snapshot holds {extraction.source_rows}")
        batches = extraction.batches_read
        pacing = extraction.pacer.report.as_dict(extraction.pacing) if extraction.pacer else None
    return {"seconds": time.monotonic() - started, "open_s": opened - started, "batches": batches, "pacing": pacing}


def product_s3(spec: dict, out: Path) -> dict:
    """The public code path, `export_day`: S3 (the moto endpoint) and Glue, manifest and publish."""
    import adbc_driver_postgresql  # noqa: F401 - imported by Extraction.open(); not timed

    from weward_pipeline.export import export_day

    # With retention_days the export also records redaction keys (a fingerprint per row).
    table = _table_config(spec.get("retention_days"))
    settings, catalog = _settings_and_catalog(spec, table)
    limits = _limits(spec)
    if spec.get("pacing") != "default":  # the raw speed of the public path, like the other methods
        limits = dataclasses.replace(limits, pacing={"duty_cycle": 1.0, **SIGNALS_OFF})
    started = time.monotonic()
    result = export_day(settings, catalog, table, _day(spec), limits=limits, on_progress=lambda m: None)
    seconds = time.monotonic() - started
    import pyarrow.parquet as pq

    from weward_pipeline.aws import s3_filesystem

    filesystem = s3_filesystem(settings.aws_region, settings.aws_endpoint_url)
    with filesystem.open_input_file(f"{spec['bucket']}/{result.objects[0].key}") as f:
        parquet = pq.ParquetFile(f)
        schema, codec = parquet.schema_arrow, parquet.metadata.row_group(0).column(0).compression
    return {
        "seconds": seconds,
        "read_s": result.read_s,
        "rows": result.rows,
        "bytes": result.bytes,
        "files": len(result.objects),
        "wards_type": str(schema.field("wards").type),
        "created_at_type": str(schema.field("created_at").type),
        "codec": codec,
    }


def redact(spec: dict, out: Path) -> dict:
    """The public redaction path, `redact_day`, on a day exported with redaction keys.

    Stops cleanly after `redact_seconds` (RedactionLimits.max_runtime_s): its pace is steady, and
    a re-run would go on where it stopped.
    """
    from weward_pipeline.redact import RedactionLimits, redact_day

    table = _table_config(spec["retention_days"])
    settings, catalog = _settings_and_catalog(spec, table)
    if spec.get("pace") == "fixed":  # the fixed pace before pacing: 1000-row batches, 50 ms pauses
        limits = RedactionLimits(
            max_runtime_s=spec.get("redact_seconds"), batch_rows=1000, pause_s=0.05, pacing=SIGNALS_OFF
        )
    else:  # the defaults
        limits = RedactionLimits(max_runtime_s=spec.get("redact_seconds"))
    started = time.monotonic()
    report = redact_day(settings, catalog, table, _day(spec), limits=limits, on_progress=lambda m: None)
    return {
        "seconds": time.monotonic() - started,
        "rows_deleted": report.rows_deleted,
        "batches": report.batches,
        "status": report.status,
        "why_quit": report.why_quit,
        "lock_timeouts": report.lock_timeouts,
        "kept_back": report.kept_back,
        "batch_rows": limits.batch_rows,
        "pause_s": limits.pause_s,
        "lock_timeout_s": limits.lock_timeout_s,
        "pacing": report.pacing,
    }


def dagster_run(spec: dict, out: Path) -> dict:
    """The production entry point: `dagster asset materialize` of one table and day, as the scheduled
    ECS task runs it (deploy/, infra/), with the whole process tree's memory sampled (bench/tree.py).

    The timed span includes interpreter start-up and imports: a task pays for them too.
    """
    import shutil

    import yaml

    from bench import tree
    from bench.environment import REPO

    out.mkdir(parents=True, exist_ok=True)
    home = out / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")  # the local instance settings
    catalog = out / "tables.yaml"
    catalog.write_text(
        yaml.safe_dump(
            {
                "start_date": "2000-01-01",
                "timezone": data.TIMEZONE,
                "tables": [
                    {
                        "name": data.TABLE,
                        "schema": data.SCHEMA,
                        "source_table": data.TABLE,
                        "mode": "append",
                        "partition_column": "created_at",
                        "primary_key": ["id"],
                    }
                ],
            }
        )
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "WEWARD_TABLES_FILE": str(catalog),
        "WEWARD_PG_URL": spec["pg_url"],
        "WEWARD_LAKE_URL": f"s3://{spec['bucket']}/dagster",
        "WEWARD_GLUE_DATABASE": "weward_bench_dagster",
        "WEWARD_SCHEDULE_DEFAULT_STATUS": "stopped",
    }
    dagster = str(Path(sys.executable).parent / "dagster")
    command = [
        dagster,
        "asset",
        "materialize",
        "-m",
        "weward_pipeline.definitions",
        "--select",
        f"lake/{data.TABLE}",
        "--partition",
        spec["day"],
    ]
    log = out / "dagster.log"
    with open(log, "w") as sink:
        status, peak, seconds = tree.run_sampled(command, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=out)
    if status != 0:
        raise RuntimeError(f"dagster asset materialize failed ({status}):\n{log.read_text()[-3000:]}")
    return {"seconds": seconds, "tree": peak.as_dict(), "rows": spec["rows"]}


def adbc_raw(spec: dict, out: Path) -> dict:
    """ADBC's record batches straight into a ParquetWriter, no type fixes: the obvious Arrow route."""
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    with adbc.connect(spec["pg_url"]) as conn, conn.cursor() as cur:
        cur.execute(data.day_query(_day(spec)))
        reader = cur.fetch_record_batch()
        schema = pa.schema([f.with_type(_storage(f.type)) for f in reader.schema])
        with pq.ParquetWriter(out / "part-0.parquet", schema, compression=COMPRESSION) as writer:
            for batch in reader:
                columns = [c.storage if isinstance(c.type, pa.BaseExtensionType) else c for c in batch.columns]
                writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
    return {"seconds": time.monotonic() - started}


def _storage(type_):
    import pyarrow as pa

    return type_.storage_type if isinstance(type_, pa.BaseExtensionType) else type_


def connectorx(spec: dict, out: Path) -> dict:
    """connectorx's read_sql to an Arrow table (the whole day in memory), then write_table."""
    import connectorx as cx
    import pyarrow.parquet as pq

    started = time.monotonic()
    table = cx.read_sql(spec["pg_url"], data.day_query(_day(spec)), return_type="arrow")
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / "part-0.parquet", compression=COMPRESSION)
    return {"seconds": time.monotonic() - started}


def pandas(spec: dict, out: Path) -> dict:
    """The naive baseline: pandas.read_sql over SQLAlchemy (psycopg2), then DataFrame.to_parquet."""
    import pandas as pd
    import psycopg2  # noqa: F401 - SQLAlchemy's driver; imported here so it is not timed
    import sqlalchemy as sa

    started = time.monotonic()
    engine = sa.create_engine(spec["pg_url"].replace("postgresql://", "postgresql+psycopg2://", 1))
    frame = pd.read_sql(data.day_query(_day(spec)), engine)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out / "part-0.parquet", compression=COMPRESSION, index=False)
    engine.dispose()
    return {"seconds": time.monotonic() - started}


def _dlt(spec: dict, out: Path, backend: str) -> dict:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ["NORMALIZE__DATA_WRITER__COMPRESSION"] = COMPRESSION
    os.environ["DATA_WRITER__COMPRESSION"] = COMPRESSION
    import dlt
    from dlt.sources.sql_database import sql_table

    start, end = data.window(_day(spec))

    def one_day(query, table):
        return query.where(table.c.created_at >= start).where(table.c.created_at < end)

    started = time.monotonic()
    resource = sql_table(
        credentials=spec["pg_url"].replace("postgresql://", "postgresql+psycopg2://", 1),
        schema=data.SCHEMA,
        table=data.TABLE,
        backend=backend,
        reflection_level="full_with_precision",
        query_adapter_callback=one_day,
    )
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{backend}_{os.getpid()}",
        pipelines_dir=str(out / ".dlt"),
        destination=dlt.destinations.filesystem(bucket_url=(out / "lake").as_uri()),
        dataset_name="bench",
    )
    pipeline.run(resource, loader_file_format="parquet")
    return {"seconds": time.monotonic() - started}


def dlt_pyarrow(spec: dict, out: Path) -> dict:
    """dlt's sql_database source, pyarrow backend, to a filesystem destination as Parquet."""
    return _dlt(spec, out, "pyarrow")


def dlt_connectorx(spec: dict, out: Path) -> dict:
    """The same dlt pipeline with the connectorx backend."""
    return _dlt(spec, out, "connectorx")


METHODS: dict[str, Callable[[dict, Path], dict]] = {
    "copy_floor": copy_floor,
    "product": product_local,
    "product_s3": product_s3,
    "redact": redact,
    "dagster_run": dagster_run,
    "adbc_raw": adbc_raw,
    "connectorx": connectorx,
    "dlt_pyarrow": dlt_pyarrow,
    "dlt_connectorx": dlt_connectorx,
    "pandas": pandas,
}


def _day(spec: dict) -> dt.date:
    return dt.date.fromisoformat(spec["day"])


def describe_output(out: Path) -> dict:
    """Rows, bytes and the Parquet types of the numeric and timestamptz columns, read back."""
    import pyarrow.parquet as pq

    files = sorted(
        p
        for p in out.rglob("*.parquet")
        if ".dlt" not in p.relative_to(out).parts and (data.TABLE in p.parts or p.name.startswith("part-"))
    )
    if not files:
        return {}
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    schema = pq.read_schema(files[0])
    codec = pq.ParquetFile(files[0]).metadata.row_group(0).column(0).compression if rows else "?"
    return {
        "rows": rows,
        "bytes": sum(f.stat().st_size for f in files),
        "files": len(files),
        "wards_type": str(schema.field("wards").type),
        "created_at_type": str(schema.field("created_at").type),
        "codec": codec,
    }


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    out = Path(spec["out"])
    result = METHODS[spec["method"]](spec, out)
    result["ended_epoch"] = time.time()
    described = (
        describe_output(out) if spec["method"] not in ("copy_floor", "product_s3", "redact", "dagster_run") else {}
    )
    result = {**described, **result}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["self_rss_kb"] = usage.ru_maxrss
    result["children_rss_kb"] = children.ru_maxrss
    result["cpu_s"] = usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime
    Path(argv[1]).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
