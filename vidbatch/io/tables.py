"""The end of a run's tables, written from the commit records with no table of every video in memory.

`RunOutput.finalize` reads the records twice (`io.ledger`): first each video's winning entry is placed at its
manifest position (`ledger.winners_by_position`: 8 bytes a video, with the manifest's 24-byte key index), then
the winning entries, their segments and shots are copied out chunk by chunk and spilled to local temporary
files by manifest slice (`io.spill`). Each slice is then read back, sorted and written as a row group of
`summary.parquet`, `segments.parquet` and `shots.parquet`; the frames index is spilled by a hash of the video
id and written a hash bucket at a time (each bucket sorted by video id, its number in the `bucket` column, so
that `read_frames` reads only the row groups of the ids it wants).
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidbatch.core.errors import OutputError
from vidbatch.io import ledger as ledger_module
from vidbatch.io.manifest import KeyIndex, Manifest, key_hashes
from vidbatch.io.schema import SUMMARY_SCHEMA
from vidbatch.io.spill import BucketSpill, bucket_count, sorted_by

POSITION = pa.field("position", pa.int64())
INDEX_BUCKETS_KEY = b"vidbatch.index_buckets"
"""The frames index's metadata: how many hash buckets its rows are in (see `index_buckets`)."""


def index_buckets(video_ids: pa.Array | pa.ChunkedArray, buckets: int) -> np.ndarray:
    """The frames index's bucket of each video id: its 64-bit key hash modulo the bucket count."""
    return (key_hashes(video_ids) % np.uint64(buckets)).astype(np.int32)


@dataclass
class Tally:
    """What the summary says, counted slice by slice as it is written (run.json's counts come from it)."""

    few_below: int | None = None
    """Count the ok videos labeled from fewer items than this (`--sampling keyframes`), naming a few."""
    videos: int = 0
    ok: int = 0
    failed: int = 0
    frames_decoded: int = 0
    frames_classified: int = 0
    decode_notes: int = 0
    decode_note_example: str | None = None
    few: int = 0
    few_examples: list[str] = field(default_factory=list)

    def add(self, summary: pa.Table) -> None:
        status = summary.column("status")
        is_ok = pc.fill_null(pc.equal(status, "ok"), False)
        self.videos += summary.num_rows
        self.ok += int(pc.sum(is_ok).as_py() or 0)
        self.failed += int(pc.sum(pc.equal(status, "failed")).as_py() or 0)
        self.frames_decoded += int(pc.sum(summary.column("frames_decoded")).as_py() or 0)
        classified = summary.column("frames_classified")
        self.frames_classified += int(pc.sum(classified).as_py() or 0)
        notes = summary.column("decode_note").filter(
            pc.and_(is_ok, pc.fill_null(pc.greater(pc.utf8_length(summary.column("decode_note")), 0), False)))
        if len(notes) and self.decode_note_example is None:
            self.decode_note_example = notes[0].as_py()
        self.decode_notes += len(notes)
        if self.few_below is not None:
            few = summary.column("video_id").filter(
                pc.and_(is_ok, pc.less(pc.fill_null(classified, 0), self.few_below)))
            self.few += len(few)
            self.few_examples += few.slice(0, max(0, 3 - len(self.few_examples))).to_pylist()


def with_nullable_integers(table: pa.Table) -> pa.Table:
    """`table` with pandas metadata that reads vidbatch's integer summary columns as nullable integers (`Int32`,
    `Int64`): a failed video's width is missing, and without it pandas would turn every width into a float."""
    import pandas as pd

    nullable = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}
    ours = [f.name for f in SUMMARY_SCHEMA if f.type in nullable and f.name in table.column_names]
    empty = pa.table({name: pa.array([], table.schema.field(name).type) for name in ours}).to_pandas(
        types_mapper=nullable.get)
    ours_meta = json.loads(pa.Table.from_pandas(empty, preserve_index=False).schema.metadata[b"pandas"])
    base = table.schema.metadata or {}
    if b"pandas" in base:
        meta = json.loads(base[b"pandas"])
    else:
        meta = json.loads(pa.Table.from_pandas(table.schema.empty_table().to_pandas(), preserve_index=False)
                          .schema.metadata[b"pandas"])
    typed = {c["name"]: c for c in ours_meta["columns"]}
    meta["columns"] = [typed.get(c["name"], c) for c in meta["columns"]]
    return table.replace_schema_metadata({**base, b"pandas": json.dumps(meta).encode()})


def build_summary(entries: pa.Table, passthrough: pa.Table) -> pa.Table:
    """The summary table: the entries' fields (in manifest order) with the manifest's uri and its other columns."""
    extra = passthrough.drop_columns(["video_id"])
    arrays = [entries.column("video_id").cast(pa.string()), extra.column("uri").combine_chunks().cast(pa.string())]
    names = ["video_id", "uri"]
    for schema_field in SUMMARY_SCHEMA:
        if schema_field.name in ("video_id", "uri"):
            continue
        arrays.append(entries.column(schema_field.name).cast(schema_field.type))
        names.append(schema_field.name)
    for name in extra.column_names:
        if name == "uri":
            continue
        arrays.append(extra.column(name).combine_chunks())
        names.append(name)
    return pa.Table.from_arrays([a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays],
                                names=names)


def write(output: Any, commit_format: str, manifest: Manifest, index: KeyIndex, winners: ledger_module.Winners,
          tally: Tally, slice_rows: int, index_rows: int) -> None:
    """Every table of the end of a run but run.json, from the commit records (see the module's docstring).
    `output`: the `RunOutput` whose records these are and whose files are written."""
    count = len(index)
    buckets = bucket_count(count, slice_rows)
    per_bucket = max(slice_rows, -(-count // buckets))  # whole slices (the last one shorter) below the cap
    shard_buckets = bucket_count(count, index_rows)
    with ExitStack() as stack:
        entries = stack.enter_context(BucketSpill(ledger_module.ENTRIES_SCHEMA.append(POSITION), buckets))
        segments = stack.enter_context(BucketSpill(ledger_module.SEGMENT_ROWS.append(POSITION), buckets))
        shots = stack.enter_context(BucketSpill(ledger_module.SHOT_ROWS.append(POSITION), buckets))
        shards = stack.enter_context(BucketSpill(ledger_module.SHARD_ROWS, shard_buckets))
        owners, records, fresh = [], [], []
        for piece in ledger_module.pieces(output._record_chunks(), commit_format, winners.test(index)):
            position = index.positions(piece.entries.column("key"))
            placed = position >= 0  # a video of an earlier manifest is in no table (its rows stay in frames/)
            entries.add(piece.entries.append_column(POSITION, pa.array(position)).filter(pa.array(placed)),
                        position[placed] // per_bucket)
            for rows, spill in ((piece.segments, segments), (piece.shots, shots)):
                where = pc.index_in(rows.column("order"), piece.entries.column("order")).to_numpy()
                at = position[where]
                spill.add(rows.append_column(POSITION, pa.array(at)).filter(pa.array(at >= 0)),
                          at[at >= 0] // per_bucket)
            shards.add(piece.shards, index_buckets(piece.shards.column("video_id"), shard_buckets))
            owners.append(piece.owners)
            records.extend(piece.records)
            fresh.extend(piece.fresh)
        del piece
        output._commit_merges(fresh)
        output._drop_superseded_frames(pa.concat_tables(owners), records)
        del owners
        output._write_frames_index(shards.tables(), records, shard_buckets)

        def summaries() -> Iterator[pa.Table]:
            slices = manifest.passthrough_slices(per_bucket)
            for bucket, table in enumerate(entries.tables()):
                start = bucket * per_bucket
                size = max(0, min(per_bucket, count - start))
                if not size:  # past the end (buckets of equal size may overshoot it)
                    continue
                table = sorted_by(table, "position")
                if not np.array_equal(table.column("position").to_numpy(), np.arange(start, start + size)):
                    raise OutputError(f"Cannot finish {output.url!r}: the commit records changed while the "
                                      "tables were written; run again to finish")
                summary = with_nullable_integers(build_summary(table, next(slices)))
                tally.add(summary)
                yield summary

        output._write_slices("summary.parquet", summaries())
        for name, spill, within in (("segments", segments, "segment_index"), ("shots", shots, "shot_index")):
            output._write_slices(f"{name}.parquet", (
                sorted_by(table, "position", within).drop_columns(["position", "order"]) for table in spill.tables()))
