"""The lake's shared primitives: writer settings, "still as the manifest says", batched deletes,
and the keys contract's alignment check (keys.py), each written once and used by export,
verification, redaction and erasure."""

from __future__ import annotations

import secrets

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from weward_pipeline import keys, lake
from weward_pipeline.glue import GlueCatalog, GlueColumn


def dictionary_page_bytes(path: str) -> int:
    column = pq.read_metadata(path).row_group(0).column(0)
    return column.data_page_offset - column.dictionary_page_offset


def test_every_lake_file_gives_up_dictionaries_that_outgrow_the_page_limit(tmp_path):
    table = pa.table({"id": pa.array([secrets.token_hex(8) for _ in range(20_000)])})  # 320 KB of distinct values
    lake_file, default_file = str(tmp_path / "lake.parquet"), str(tmp_path / "default.parquet")
    with lake.parquet_writer(lake_file, table.schema, pafs.LocalFileSystem()) as writer:
        writer.write_table(table)
    pq.write_table(table, default_file, compression=lake.COMPRESSION)
    assert dictionary_page_bytes(lake_file) <= lake.DICTIONARY_PAGE_LIMIT < dictionary_page_bytes(default_file)
    column = pq.read_metadata(lake_file).row_group(0).column(0)
    assert column.compression == lake.COMPRESSION.upper() and column.statistics.has_min_max


def test_an_object_matches_its_manifest_until_it_is_overwritten(clients, lake_env):
    bucket = lake_env["WEWARD_LAKE_URL"].removeprefix("s3://").split("/")[0]
    clients.s3.put_object(Bucket=bucket, Key="t/dt=2024-03-31/part-00000.parquet", Body=b"as exported")
    (described,) = lake.describe_objects(
        clients.s3, bucket, [lake.WrittenObject("t/dt=2024-03-31/part-00000.parquet", 1)]
    )
    assert described.version_id and lake.changed_since_manifest(clients.s3, bucket, described) is None
    clients.s3.put_object(Bucket=bucket, Key=described.key, Body=b"tampered with")
    changed = lake.changed_since_manifest(clients.s3, bucket, described)
    assert changed.startswith("13 bytes, ETag ") and changed.endswith(f"(manifest: 11 bytes, ETag {described.etag})")
    # The exact version the manifest recorded is still readable by its id.
    body = clients.s3.get_object(Bucket=bucket, Key=described.key, **lake.version_args(described.version_id))["Body"]
    assert body.read() == b"as exported"


def test_a_purge_deletes_every_version_in_batches_of_the_request_limit(clients, lake_env, monkeypatch):
    bucket = lake_env["WEWARD_LAKE_URL"].removeprefix("s3://").split("/")[0]
    for n in range(4):
        clients.s3.put_object(Bucket=bucket, Key=f"gone/obj-{n % 2}", Body=f"v{n}".encode())
    clients.s3.put_object(Bucket=bucket, Key="kept/obj", Body=b"stays")
    lake.delete_keys(clients.s3, bucket, ["gone/obj-0"])  # a delete marker on top of two versions
    calls = []
    real = clients.s3.delete_objects
    monkeypatch.setattr(lake, "DELETE_BATCH", 2)
    monkeypatch.setattr(
        clients.s3, "delete_objects", lambda **kw: calls.append(len(kw["Delete"]["Objects"])) or real(**kw)
    )
    assert lake.purge_prefix(clients.s3, bucket, "gone/") == 5  # 4 versions + 1 delete marker
    assert calls == [2, 2, 1]
    assert lake.list_versions(clients.s3, bucket, "gone/") == ([], [])
    assert [v["Key"] for v in lake.list_versions(clients.s3, bucket, "")[0]] == ["kept/obj"]


def test_glue_tables_declare_the_compression_the_files_are_written_with(clients, lake_env):
    glue = GlueCatalog(clients.glue, lake_env["WEWARD_GLUE_DATABASE"])
    glue.ensure_database()
    glue.ensure_table("events", f"s3://bucket-{secrets.token_hex(2)}/events/", [GlueColumn("id", "bigint")])
    assert glue.get_table("events")["Parameters"]["parquet.compression"] == lake.COMPRESSION.upper() == "ZSTD"


KEY_SCHEMA = pa.schema([("id", pa.int64())])


def batches(*chunks: list[int]) -> list[pa.RecordBatch]:
    return [pa.record_batch([pa.array(chunk, pa.int64())], schema=KEY_SCHEMA) for chunk in chunks]


def test_keys_and_data_are_aligned_row_for_row_whatever_the_chunking():
    assert (
        keys.alignment_problem(batches([1, 2, 3], [4]), batches([1], [2, 3, 4, 90, 91]), ["id"], carried_rows=2) is None
    )


def test_a_misalignment_names_where_it_starts():
    assert keys.alignment_problem(batches([1, 2, 3]), batches([1, 3, 2]), ["id"], 0) == (
        "the keys and the data files differ at row 0 or after (column 'id')"
    )
    assert keys.alignment_problem(batches([1, 2, 3]), batches([1, 2]), ["id"], 0) == (
        "the data files hold fewer rows than the keys (2)"
    )
    assert keys.alignment_problem(batches([1, 2]), batches([1, 2, 3]), ["id"], 0) == (
        "after the 2 keyed rows the data files hold 1 rows, the manifest says 0 were carried over"
    )
