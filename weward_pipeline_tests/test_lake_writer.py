"""ParquetDayWriter: files, row groups, empty days, and errors from its background encoder."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from weward_pipeline import lake

SCHEMA = pa.schema([pa.field("id", pa.int64()), pa.field("note", pa.string())])


def batch(start: int, rows: int) -> pa.RecordBatch:
    return pa.record_batch(
        [pa.array(range(start, start + rows), pa.int64()), pa.array([f"n{i}" for i in range(rows)])], schema=SCHEMA
    )


def test_batches_become_row_groups_and_files_roll_over(tmp_path):
    writer = lake.ParquetDayWriter(pafs.LocalFileSystem(), str(tmp_path), SCHEMA, max_rows_per_file=250)
    for start in range(0, 1000, 100):
        writer.write(batch(start, 100))
    objects = writer.close()
    assert [o.rows for o in objects] == [300, 300, 300, 100]
    ids = []
    for obj in objects:
        metadata = pq.read_metadata(obj.key)
        assert metadata.num_rows == obj.rows and metadata.row_group(0).num_rows == 100
        ids += pq.read_table(obj.key).column("id").to_pylist()
    assert ids == list(range(1000))


def test_an_empty_day_still_gets_one_file_with_the_schema(tmp_path):
    writer = lake.ParquetDayWriter(pafs.LocalFileSystem(), str(tmp_path), SCHEMA)
    (only,) = writer.close()
    assert only.rows == 0 and pq.read_schema(only.key).names == ["id", "note"]


def test_an_upload_error_in_the_background_encoder_reaches_the_caller(aws_server):
    filesystem = lake.s3_filesystem("eu-west-3", aws_server.endpoint_url)
    writer = lake.ParquetDayWriter(filesystem, "no-such-bucket-for-writer/x", SCHEMA)
    with pytest.raises(OSError):
        for start in range(0, 500, 100):
            writer.write(batch(start, 100))
        writer.close()
    writer.abort()  # after a failure, abort() neither hangs nor raises
