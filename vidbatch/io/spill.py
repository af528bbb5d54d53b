"""Rows spilled to local temporary files by bucket, read back a bucket at a time: an external partition.

Why: the end of a run writes its tables in manifest order (the summary, segments, shots) or sorted by video id
(the frames index), but reads the commit records in commit order. Holding every video's row to sort them costs
the driver hundreds of bytes a video (gigabytes at 10^7 videos). Instead each chunk of records is cut by bucket
(a range of manifest positions, or a hash of the video id) and appended to that bucket's file; then the buckets
are read back in turn, each small enough to sort in memory.

Files are Arrow IPC streams, LZ4-compressed: appending keeps no growing footer (a Parquet writer keeps every row
group's metadata until it closes) and reading one back is a copy-free load.
"""

from __future__ import annotations

import os
import tempfile
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MAX_BUCKETS = 128
"""At most this many open files per spill; beyond `MAX_BUCKETS * rows` rows, buckets grow instead."""
_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


def bucket_count(rows: int, rows_per_bucket: int) -> int:
    """How many buckets hold `rows` rows at about `rows_per_bucket` each (fewer when that is over `MAX_BUCKETS`)."""
    return max(1, min(MAX_BUCKETS, -(-rows // rows_per_bucket)))


class BucketSpill:
    """Append tables cut by bucket number; read back a bucket at a time. Files go under a private temporary
    folder on the local disk (whatever the run's output is), removed by `close`."""

    def __init__(self, schema: pa.Schema, buckets: int, folder: str | None = None) -> None:
        self.schema = schema
        self.buckets = buckets
        self._folder = tempfile.mkdtemp(prefix="vidbatch-spill-", dir=folder)
        self._writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        self._sinks: dict[int, pa.NativeFile] = {}

    def _path(self, bucket: int) -> str:
        return os.path.join(self._folder, f"{bucket}.arrows")

    def add(self, table: pa.Table, bucket: np.ndarray) -> None:
        """`table`'s rows, each to its `bucket` (0 <= bucket < buckets)."""
        if not table.num_rows:
            return
        rank = np.argsort(bucket, kind="stable")
        table, bucket = table.take(pa.array(rank)), bucket[rank]
        starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
        for start, stop in zip(starts.tolist(), np.r_[starts[1:], len(bucket)].tolist()):
            self._writer(int(bucket[start])).write_table(table.slice(start, stop - start).cast(self.schema))

    def _writer(self, bucket: int) -> pa.ipc.RecordBatchStreamWriter:
        if bucket not in self._writers:
            self._sinks[bucket] = pa.OSFile(self._path(bucket), "wb")
            self._writers[bucket] = pa.ipc.new_stream(self._sinks[bucket], self.schema, options=_OPTIONS)
        return self._writers[bucket]

    def read(self, bucket: int) -> pa.Table:
        """Every row added to `bucket`, in the order added (the bucket's file is closed and then removed)."""
        if bucket not in self._writers:
            return self.schema.empty_table()
        self._writers.pop(bucket).close()
        self._sinks.pop(bucket).close()
        with pa.OSFile(self._path(bucket), "rb") as source:
            table = pa.ipc.open_stream(source).read_all()
        os.remove(self._path(bucket))
        return table

    def tables(self) -> Iterator[pa.Table]:
        """Each bucket's rows in bucket order (empty buckets included)."""
        for bucket in range(self.buckets):
            yield self.read(bucket)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        for sink in self._sinks.values():
            sink.close()
        self._writers.clear()
        self._sinks.clear()
        for name in os.listdir(self._folder):
            os.remove(os.path.join(self._folder, name))
        os.rmdir(self._folder)

    def __enter__(self) -> "BucketSpill":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sorted_by(table: pa.Table, *names: str) -> pa.Table:
    """`table` sorted ascending by `names`."""
    return table.take(pc.sort_indices(table, [(name, "ascending") for name in names]))
