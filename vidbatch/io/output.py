"""Write a run's outputs under `out`: frames in shared shards, one commit record per batch of videos.

Layout (for 10^7 videos the object count grows with batches, not videos):

    frames/part-<batch>.parquet      the frames of one batch of videos, sorted by (video_id, frame_index), in row
                                     groups whose statistics let a one-video filter skip every other group
    thumbnails/part-<batch>.parquet  with --thumbnails: a small JPEG per segment
    embeddings/part-<batch>.parquet  with --embeddings: each video's mean feature vector (the per-item vectors are
                                     the frames shards' `embedding` column)
    _vidbatch/commits/<batch>.json   the commit record of that batch: each video's summary row, segments and shots
    _vidbatch/identity.json          the model fingerprint and options that shape the labels (resume must match)
    summary.parquet, segments.parquet, shots.parquet, run.json   rebuilt from the commit records at the end

The commit protocol:

1. A batch's shards (frames, and thumbnails or embeddings when asked for) are written atomically (a hidden temporary renamed
   into place locally; one PUT on object stores).
2. Its commit record is then written atomically. That write is the commit: a
   video counts as done exactly when a commit record lists it. When several do
   (a failed video redone by a later run, a retried task), the latest wins.
3. At the end, `summary.parquet`, `segments.parquet`, `shots.parquet` and
   `run.json` are rebuilt from the commit records, each atomically.

A long video that the Ray engine cut into time ranges is committed range by
range: each range's frames rows go into its batch's shard, and its entry in
the commit record (status `range`, see `io.ranges`) holds sums. The video
counts as done when every range of one decode is committed; the ledger
(`io.ledger`) then merges them into the video's entry, and `finalize` writes that merge
once as a commit record of its own. When a video or range is committed more
than once (a retried task, a redone decode), the latest commit wins and
`finalize` removes the older rows from their shards.

A crash at any point leaves no half-written file a reader would take for
complete: temporaries are hidden, and a shard whose commit record was never
written is deleted by `finalize` and by the next run's `prepare`, as are hidden
temporaries.
A rerun into the same `out` reads the commit records (O(batches), not
O(videos)), skips committed videos and redoes the rest; since step 3 reads
only the commit records, the final tables equal those of an uninterrupted
run. `BatchCommitter` gathers finished videos into batches (by count and by
age) and writes them on a background thread, off the engine's hot path.
"""

from __future__ import annotations

import io
import json
import os
import queue
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vidbatch.core.errors import OutputError
from vidbatch.io import ledger as ledger_module
from vidbatch.io import storage, tables
from vidbatch.io.manifest import KeyIndex, Manifest
from vidbatch.io.schema import (
    FRAMES_SCHEMA,
    THUMBNAILS_SCHEMA,
    embeddings_schema,
)

FRAMES_DIR = "frames"
THUMBNAILS_DIR = "thumbnails"
EMBEDDINGS_DIR = "embeddings"
COMMITS_DIR = "_vidbatch/commits"
IDENTITY_FILE = "_vidbatch/identity.json"
FRAMES_INDEX = "_vidbatch/frames_index.parquet"
"""Which frames shard holds each video's rows (`read_frames`): in hash buckets of the video id, each sorted by
id, so a lookup reads the row groups of its ids' buckets, then their shards, however many shards the run has."""
INDEX_ROW_GROUP_ROWS = 65536
TABLE_SLICE_ROWS = 32768
"""Rows of the summary (segments, shots) that finalize builds and writes at a time, one row group each."""
COMMIT_FORMAT = "vidbatch.commit/1"
SHARD_PREFIX = "part-"
ROW_GROUP_ROWS = 65536
"""Frames rows per Parquet row group: small enough that a one-video filter reads little, large enough to compress."""
MIN_FREE_BYTES = 64 * 1024 * 1024
PROBE_PREFIX = ".probe-"
RECORDS_PER_FETCH = 64
"""Commit records fetched (and parsed) at a time."""
SHARDS = ((FRAMES_DIR, "frames_file"), (THUMBNAILS_DIR, "thumbnails_file"), (EMBEDDINGS_DIR, "embeddings_file"))
"""Each shard folder and the commit record's key that names its files."""


@dataclass
class VideoOutcome:
    """One video's result, as the assembly stage makes it and `RunOutput.commit_batch` writes it: its summary
    record, and if it is ok its frames table, segments and shots."""

    video_id: str
    key: str
    record: dict[str, Any]
    frames: pa.Table | None = None
    segments: list[dict[str, Any]] = field(default_factory=list)
    shots: list[dict[str, Any]] = field(default_factory=list)
    thumbnails: list[dict[str, Any]] = field(default_factory=list)
    embedding: np.ndarray | None = None
    """With --embeddings: the mean feature vector of the video's items."""

    @property
    def ok(self) -> bool:
        return self.record["status"] == "ok"


def table_to_parquet_bytes(table: pa.Table, row_group_size: int | None = None) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", row_group_size=row_group_size)
    return sink.getvalue()


def _settled(identity: Mapping[str, Any]) -> str:
    """An identity without its unset (None) options: a run made before an option existed matches one leaving it unset."""
    return json.dumps({k: v for k, v in identity.items() if v is not None}, sort_keys=True)


def identity_differences(theirs: Mapping[str, Any], ours: Mapping[str, Any]) -> str:
    """Only what differs between two run identities, in words: 'window 8 there, 16 here; model ...'."""
    parts = []
    for name in sorted(set(theirs) | set(ours)):
        a, b = theirs.get(name), ours.get(name)
        if a != b:
            if name == "model_fingerprint":
                parts.append("another model (its fingerprint differs)")
            else:
                parts.append(f"{name} {a!r} there, {b!r} here")
    return "; ".join(parts)


def new_batch_id() -> str:
    """Sortable by time (the latest commit wins), unique across processes and machines."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"


class RunOutput:
    """The output location of one run: prepares it, commits videos, writes the final tables."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        try:
            self.fs, self.path = storage.url_to_fs(url, storage_options)
        except ValueError as exc:
            raise OutputError(f"Cannot use --out {url!r}: {exc}") from None

    def _p(self, *parts: str) -> str:
        return storage.join(self.path, *parts)

    # -- before any work -------------------------------------------------
    def prepare(self, identity: Mapping[str, Any], overwrite: bool = False,
                defaults: Mapping[str, Any] | None = None) -> None:
        """Fail fast if `out` cannot be written or holds a run with other settings."""
        self._check_writable()
        # a run killed mid-write (even by SIGKILL) leaves hidden temporaries that nothing will ever rename, and
        # maybe a frames shard whose commit record was never written: neither may be taken for output
        storage.remove_stale_temporaries(self.fs, self.path, prefixes=(storage.TEMPORARY_PREFIX, PROBE_PREFIX))
        if self.existing_run(identity, overwrite, defaults) == "other":
            self.clear()
        self._remove_uncommitted_shards()
        storage.atomic_write_bytes(self.fs, self._p(IDENTITY_FILE), json.dumps(identity, sort_keys=True).encode())

    def existing_run(self, identity: Mapping[str, Any], overwrite: bool = False,
                     defaults: Mapping[str, Any] | None = None) -> str:
        """What `out` holds, read only: "none", "same" (a rerun resumes it) or "other" (only with `overwrite`;
        without it, an OutputError naming the settings that differ). `defaults`: each option's default, taken
        for an option the existing run predates (it ran as that default does now)."""
        identity_path = self._p(IDENTITY_FILE)
        if not self.fs.exists(identity_path):
            return "none"
        existing = json.loads(self.fs.cat_file(identity_path).decode("utf-8", "replace"))
        defaults = defaults or {}
        existing = {**{k: defaults[k] for k in identity if k in defaults and k not in existing}, **existing}
        if _settled(existing) == _settled(identity):
            return "same"
        if not overwrite:
            raise OutputError(
                f"--out {self.url!r} holds a run with other settings or another model: "
                f"{identity_differences(existing, identity)}. "
                "Choose a new --out, or pass --overwrite to discard the old run."
            )
        return "other"

    def _check_writable(self) -> None:
        probe = self._p("_vidbatch", f"{PROBE_PREFIX}{uuid.uuid4().hex}")
        try:
            if storage.is_local(self.fs):
                if os.path.exists(self.path) and not os.path.isdir(self.path):
                    raise OutputError(f"Cannot write to --out {self.url!r}: it is a file, not a folder")
                os.makedirs(os.path.dirname(probe), exist_ok=True)
                free = shutil.disk_usage(os.path.dirname(probe)).free
                if free < MIN_FREE_BYTES:
                    raise OutputError(
                        f"Cannot write to --out {self.url!r}: only {free // (1024 * 1024)} MiB free on its disk; free some space first"
                    )
            self.fs.pipe_file(probe, b"ok")
            self.fs.rm_file(probe)
        except OutputError:
            raise
        except Exception as exc:  # object-store clients raise their own types (botocore: NoCredentialsError, ...)
            if storage.is_missing_credentials(exc):
                raise OutputError(f"Cannot write to --out: {storage.credentials_hint('--out', self.url)}") from None
            if isinstance(exc, PermissionError):
                raise OutputError(f"Cannot write to --out {self.url!r}: permission denied ({exc})") from None
            raise OutputError(f"Cannot write to --out {self.url!r}: {storage.describe_failure(exc)}") from None

    def check_writable(self, leave_no_trace: bool = False) -> None:
        """Fail fast, before the model is loaded: a bad --out (no folder, no space, no credentials) costs seconds.
        With `leave_no_trace` (a dry run), local folders the check had to create are removed again."""
        fresh = storage.is_local(self.fs) and not os.path.exists(self.path)
        self._check_writable()
        if leave_no_trace and fresh:
            shutil.rmtree(self.path, ignore_errors=True)

    def clear(self) -> None:
        for sub in ("_vidbatch", FRAMES_DIR, THUMBNAILS_DIR):
            target = self._p(sub)
            if self.fs.exists(target):
                self.fs.rm(target, recursive=True)
        for name in ("summary.parquet", "segments.parquet", "shots.parquet", "run.json"):
            if self.fs.exists(self._p(name)):
                self.fs.rm_file(self._p(name))

    # -- commits -----------------------------------------------------------
    def _record_chunks(self) -> Iterator[list[bytes]]:
        """Every commit record's raw JSON, oldest first, `RECORDS_PER_FETCH` at a time: one request each, which
        object stores (s3fs) serve concurrently, and never the whole run's records in memory at once."""
        folder = self._p(COMMITS_DIR)
        try:
            paths = sorted(p for p in self.fs.find(folder) if not p.rsplit("/", 1)[-1].startswith(".") and p.endswith(".json"))
        except FileNotFoundError:
            return
        for start in range(0, len(paths), RECORDS_PER_FETCH):
            chunk = paths[start:start + RECORDS_PER_FETCH]
            contents = self.fs.cat(chunk, on_error="omit")
            yield [contents[path] for path in chunk if isinstance(contents.get(path), bytes)]

    def _iter_records(self) -> Iterator[dict[str, Any]]:
        """Every readable commit record as a dict, oldest first."""
        for chunk in self._record_chunks():
            for raw in chunk:
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue  # unreadable record: its videos are simply redone
                if isinstance(record, dict) and record.get("format") == COMMIT_FORMAT:
                    yield record

    def _records(self) -> list[dict[str, Any]]:
        """Every readable commit record, oldest first (whole, for tests and small runs)."""
        return list(self._iter_records())

    def ledger(self) -> ledger_module.Ledger:
        """Every video's committed entry, as columns (see `io.ledger`); the latest commit wins. A video split into
        time ranges counts once every range of one decode is committed (its entry is their merge)."""
        return ledger_module.read(self._record_chunks, COMMIT_FORMAT)

    def done_keys(self) -> pa.Array:
        """The keys of the videos whose latest commit is ok (`ledger.latest_status`; resume uses `done_hashes`)."""
        latest = ledger_module.latest_status(self._record_chunks(), COMMIT_FORMAT)
        return latest.column("key").filter(latest.column("ok")).combine_chunks()

    def done_hashes(self) -> np.ndarray:
        """`ledger.done_hashes`: the sorted 64-bit hashes of the keys whose latest commit is ok (what resume skips,
        8 bytes a video)."""
        return ledger_module.done_hashes(self._record_chunks(), COMMIT_FORMAT)

    def committed(self) -> dict[str, dict[str, Any]]:
        """The committed entry of every video as a dict, by output key: `ledger()` for small runs and tests."""
        return self.ledger().entries()

    def commit_batch(self, outcomes: Iterable[VideoOutcome]) -> str | None:
        """Commit finished videos together: their frames in one shard, then one commit record. Returns the batch id."""
        outcomes = list(outcomes)
        if not outcomes:
            return None
        batch = new_batch_id()
        tables = [o.frames for o in outcomes if o.frames is not None and o.frames.num_rows]
        shard = None
        if tables:
            frames = pa.concat_tables(tables).sort_by([("video_id", "ascending"), ("frame_index", "ascending")])
            shard = storage.join(FRAMES_DIR, f"{SHARD_PREFIX}{batch}.parquet")
            storage.atomic_write_bytes(self.fs, self._p(shard), table_to_parquet_bytes(frames, ROW_GROUP_ROWS))
        pictures = [row for o in outcomes for row in o.thumbnails]
        thumbs = None
        if pictures:
            thumbs = storage.join(THUMBNAILS_DIR, f"{SHARD_PREFIX}{batch}.parquet")
            table = pa.Table.from_pylist(pictures, schema=THUMBNAILS_SCHEMA)
            storage.atomic_write_bytes(self.fs, self._p(thumbs), table_to_parquet_bytes(table))
        means = [o for o in outcomes if o.embedding is not None]
        vectors = None
        if means:
            vectors = storage.join(EMBEDDINGS_DIR, f"{SHARD_PREFIX}{batch}.parquet")
            features = len(means[0].embedding)
            table = pa.table({
                "video_id": pa.array([o.video_id for o in means], pa.string()),
                "items": pa.array([o.record["frames_classified"] for o in means], pa.int32()),
                "embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(np.concatenate([o.embedding for o in means]).astype(np.float32)), features),
            }, schema=embeddings_schema(features)).sort_by("video_id")
            storage.atomic_write_bytes(self.fs, self._p(vectors), table_to_parquet_bytes(table))
        videos = [{**o.record, "key": o.key, "segments": o.segments, "shots_table": o.shots} for o in outcomes]
        record = {"format": COMMIT_FORMAT, "batch": batch, "frames_file": shard, "videos": videos}
        if thumbs:
            record["thumbnails_file"] = thumbs
        if vectors:
            record["embeddings_file"] = vectors
        storage.atomic_write_bytes(self.fs, self._p(COMMITS_DIR, batch + ".json"), json.dumps(record, allow_nan=True).encode())
        return batch

    def _remove_uncommitted_shards(self) -> None:
        """Delete shards that no commit record names: a run killed between writing a shard and its record."""
        named: dict[str, set[str]] = {key: set() for _, key in SHARDS}
        listed = {}
        for folder, key in SHARDS:
            try:
                listed[key] = [p for p in self.fs.ls(self._p(folder), detail=False)
                               if p.rsplit("/", 1)[-1].startswith(SHARD_PREFIX)]
            except FileNotFoundError:
                continue
        if not any(listed.values()):
            return
        for record in self._iter_records():
            for key in named:
                if record.get(key):
                    named[key].add(record[key].rsplit("/", 1)[-1])
        for key, paths in listed.items():
            for path in paths:
                if path.rsplit("/", 1)[-1] not in named[key]:
                    self.fs.rm_file(path)

    def _drop_superseded_frames(self, owners: pa.Table, records: list[dict[str, Any]]) -> None:
        """A video committed twice (a retried task, a redone decode) keeps only its latest rows in frames/ (and
        embeddings/): rows of entries that lost to a later one are removed from their shards. `owners`: the
        ledger's (`Ledger.owners`); `records`: the files each record names, by record number."""
        stale_records = np.unique(owners.filter(pc.invert(owners.column("live"))).column("record").to_numpy())
        if not len(stale_records):
            return
        # the rows of those records alone, grouped by record once (not a scan of every video per record)
        rows = owners.filter(pc.is_in(owners.column("record"), pa.array(stale_records))).sort_by("record")
        record = rows.column("record").to_numpy()
        starts = np.searchsorted(record, stale_records)
        stops = np.searchsorted(record, stale_records, side="right")
        for number, start, stop in zip(stale_records.tolist(), starts.tolist(), stops.tolist()):
            mine = rows.slice(start, stop - start).to_pylist()
            stale = [o for o in mine if not o["live"]]
            kept = [o for o in mine if o["live"]]
            files = records[number]
            for key in ("frames_file", "embeddings_file"):
                if not files.get(key):
                    continue
                path = self._p(files[key])
                if not self.fs.exists(path):
                    continue
                table = pq.read_table(io.BytesIO(self.fs.cat_file(path)))
                table = _without(table, stale, kept, by_frame=key == "frames_file")
                if not table.num_rows:  # every entry of the shard lost to a later commit
                    self.fs.rm_file(path)
                    continue
                storage.atomic_write_bytes(self.fs, path, table_to_parquet_bytes(table, ROW_GROUP_ROWS))

    def _commit_merges(self, fresh: list[dict[str, Any]]) -> None:
        """Write the merged entries of split videos that no commit record holds yet (`Ledger.fresh`; with
        --embeddings, their mean vectors too), so that readers of commit records and of embeddings/ see each
        video once."""
        outcomes = []
        for entry in fresh:
            vector = entry.get("embedding")
            record = {k: v for k, v in entry.items() if k not in ("key", "segments", "shots_table", "embedding")}
            outcomes.append(VideoOutcome(video_id=entry["video_id"], key=entry["key"], record=record,
                                         segments=entry["segments"], shots=entry["shots_table"],
                                         embedding=np.asarray(vector, np.float32) if vector is not None else None))
        self.commit_batch(outcomes)

    def _write_frames_index(self, buckets: Iterable[pa.Table], records: list[dict[str, Any]], count: int) -> None:
        """`FRAMES_INDEX`: (video_id, file, bucket) for every live entry's frames shard (a split video has
        several), from `count` hash buckets of `ledger.SHARD_ROWS` rows (`tables.index_buckets`), in bucket order,
        each sorted by video_id, then file. A file's rank stands for its name until each slice is written."""
        names = [record.get("frames_file") for record in records]
        ranked = sorted((name, number) for number, name in enumerate(names) if name)
        rank = np.full(len(names) + 1, -1, np.int64)  # a record with no shard: -1, dropped
        rank[[number for _, number in ranked]] = np.arange(len(ranked))
        files = pa.array([name for name, _ in ranked], pa.string())

        def slices():
            for bucket, rows in enumerate(buckets):
                file_rank = rank[rows.column("record").to_numpy()]
                rows = pa.table({"video_id": rows.column("video_id"), "rank": file_rank}).filter(pa.array(file_rank >= 0))
                rows = rows.take(pc.sort_indices(rows, [("video_id", "ascending"), ("rank", "ascending")]))
                repeat = np.zeros(rows.num_rows, bool)  # a split video's ranges committed in one shard: listed once
                if rows.num_rows > 1:
                    ids, ranks = rows.column("video_id").combine_chunks(), rows.column("rank").to_numpy()
                    repeat[1:] = pc.equal(ids.slice(1), ids.slice(0, len(ids) - 1)).to_numpy(zero_copy_only=False) & (
                        ranks[1:] == ranks[:-1])
                rows = rows.filter(pa.array(~repeat))
                for start in range(0, max(rows.num_rows, 1), INDEX_ROW_GROUP_ROWS):
                    part = rows.slice(start, INDEX_ROW_GROUP_ROWS)
                    yield pa.table({"video_id": part.column("video_id"), "file": files.take(part.column("rank")),
                                    "bucket": pa.array(np.full(part.num_rows, bucket, np.int32))})

        self._write_slices(FRAMES_INDEX, slices(), metadata={tables.INDEX_BUCKETS_KEY: str(count).encode()})

    # -- at the end ----------------------------------------------------------
    def finalize(self, manifest: Manifest, run_record: Mapping[str, Any] | Callable[[tables.Tally], Mapping[str, Any]],
                 winners: ledger_module.Winners | None = None, index: KeyIndex | None = None,
                 tally: tables.Tally | None = None) -> tables.Tally:
        """Rebuild summary.parquet, segments.parquet, shots.parquet, the frames index and run.json from the
        commit records, with no table of every video in memory (`io.tables`). `run_record`: run.json, or a
        function that makes it from what the summary counted (`tally`). `winners` and `index`: the first pass
        over the records and the manifest's key index, when the caller has them."""
        # every writer has stopped: what a killed worker left half-written goes now, not at the next run
        storage.remove_stale_temporaries(self.fs, self.path, prefixes=(storage.TEMPORARY_PREFIX,))
        self._remove_uncommitted_shards()
        index = index if index is not None else KeyIndex.of(manifest)
        winners = winners if winners is not None else self.winners(index)
        missing = winners.missing()
        if missing.any():
            names = manifest.first_ids(missing)
            raise OutputError(f"Cannot finish {self.url!r}: {int(missing.sum())} video(s) have no commit record, "
                              f"e.g. {names}")
        tally = tally if tally is not None else tables.Tally()
        tables.write(self, COMMIT_FORMAT, manifest, index, winners, tally, TABLE_SLICE_ROWS, INDEX_ROW_GROUP_ROWS)
        if not tally.ok:
            # readers of frames/ should find a valid, empty dataset
            storage.atomic_write_bytes(
                self.fs, self._p(FRAMES_DIR, "_empty.parquet"), table_to_parquet_bytes(FRAMES_SCHEMA.empty_table())
            )
        record = run_record(tally) if callable(run_record) else run_record
        storage.atomic_write_bytes(
            self.fs, self._p("run.json"), json.dumps(record, indent=2, sort_keys=True, default=str).encode()
        )
        return tally

    def winners(self, index: KeyIndex) -> ledger_module.Winners:
        """Each manifest position's winning commit entry (`ledger.winners_by_position`)."""
        return ledger_module.winners_by_position(self._record_chunks(), COMMIT_FORMAT, index)

    def _write_slices(self, name: str, tables: Iterable[pa.Table], metadata: Mapping[bytes, bytes] | None = None
                      ) -> None:
        """One Parquet file from tables of one schema, a row group each (empty ones skipped, though a file of
        none still has the schema), committed whole at the end."""
        with storage.atomic_writer(self.fs, self._p(name)) as handle:
            writer = empty = None
            for table in tables:
                if writer is None and not table.num_rows:
                    empty = table
                    continue
                if writer is None:
                    schema = table.schema.with_metadata(metadata) if metadata else table.schema
                    writer = pq.ParquetWriter(handle, schema, compression="zstd")
                if table.num_rows:
                    writer.write_table(table.cast(writer.schema) if table.schema != writer.schema else table)
            if writer is None and empty is not None:
                writer = pq.ParquetWriter(handle, empty.schema.with_metadata(metadata) if metadata else empty.schema,
                                          compression="zstd")
                writer.write_table(empty.cast(writer.schema))
            if writer is not None:
                writer.close()

    def summary(self, columns: list[str] | None = None, filters=None) -> pa.Table:
        """The summary table as finalize wrote it (`columns` and row `filters` as `pyarrow.parquet.read_table`
        takes them, so a few columns of the failed rows are read without the rest)."""
        return pq.read_table(self._p("summary.parquet"), filesystem=self.fs, columns=columns, filters=filters)


def _without(table: pa.Table, stale: list[dict[str, Any]], kept: list[dict[str, Any]], by_frame: bool) -> pa.Table:
    """`table` without the rows of the `stale` entries, keeping those of the `kept` ones; rows left twice (a
    stale and a live copy of one range in one shard) keep one copy."""
    if not by_frame:  # the embeddings shard: one row per whole video
        gone = {e["video_id"] for e in stale} - {e["video_id"] for e in kept}
        return table.filter(pc.invert(pc.is_in(table.column("video_id"), pa.array(sorted(gone), pa.string()))))
    video = table.column("video_id").to_numpy(zero_copy_only=False)
    index = table.column("frame_index").to_numpy()
    keep = ~ledger_module.owned_rows(stale, video, index) | ledger_module.owned_rows(kept, video, index)
    table = table.filter(pa.array(keep)).sort_by([("video_id", "ascending"), ("frame_index", "ascending")])
    video = table.column("video_id").to_numpy(zero_copy_only=False)
    index = table.column("frame_index").to_numpy()
    repeat = np.zeros(table.num_rows, bool)
    repeat[1:] = (video[1:] == video[:-1]) & (index[1:] == index[:-1])
    return table.filter(pa.array(~repeat))


def read_frames(out: str, video_ids: str | Iterable[str], storage_options: Mapping[str, Any] | None = None,
                columns: list[str] | None = None) -> pa.Table:
    """The frames rows of a few videos, sorted by (video_id, frame_index), read through the run's frames index:
    the row groups of the ids' hash buckets, then only the shards that hold them. A run without an index (one that did not
    finish, or one made before the index existed) is read as a dataset with a filter instead."""
    ids = [video_ids] if isinstance(video_ids, str) else list(video_ids)
    fs, path = storage.url_to_fs(out, storage_options)
    wanted = ("video_id", "in", ids)
    index_path = storage.join(path, FRAMES_INDEX)
    if fs.exists(index_path):
        with fs.open(index_path, "rb") as handle:
            count = (pq.read_schema(handle).metadata or {}).get(tables.INDEX_BUCKETS_KEY)
            filters = [wanted]
            if count is not None:  # only the row groups of the ids' hash buckets are read
                buckets = tables.index_buckets(pa.array(ids, pa.string()), int(count))
                filters.append(("bucket", "in", sorted(set(buckets.tolist()))))
            handle.seek(0)
            files = sorted(set(pq.read_table(handle, filters=filters, columns=["file"]).column("file").to_pylist()))
        parts = []
        for name in files:
            with fs.open(storage.join(path, name), "rb") as handle:
                parts.append(pq.read_table(handle, filters=[wanted], columns=columns))
        table = pa.concat_tables(parts, promote_options="default") if parts else None
    else:
        table = pq.read_table(storage.join(path, FRAMES_DIR), filesystem=fs, filters=[wanted], columns=columns)
    if table is None:
        table = FRAMES_SCHEMA.empty_table() if columns is None else FRAMES_SCHEMA.empty_table().select(columns)
    keys = [(name, "ascending") for name in ("video_id", "frame_index") if name in table.column_names]
    return table.sort_by(keys) if keys else table


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class BatchCommitter:
    """Gathers finished videos and commits them in batches on a background thread.

    A batch is committed when it holds `max_videos` videos or `max_rows` frames
    rows, or when its oldest video has waited `max_seconds` (so a slow run still
    makes durable progress), and at `close()`. Writing happens on one writer
    thread, so Parquet encoding and storage round trips (an S3 PUT is tens of
    milliseconds) leave the engine's inference loop alone; a write error is
    raised in the caller at its next `add` or at `close`.
    """

    def __init__(self, output: RunOutput, max_videos: int = 256, max_seconds: float = 30.0,
                 max_rows: int = 1_000_000, on_commit=None) -> None:
        self.output = output
        self.max_videos = max_videos
        self.max_seconds = max_seconds
        self.max_rows = max_rows
        self.on_commit = on_commit
        """Called on the writer thread with each committed batch's outcomes (counters, progress)."""
        self.batches = 0
        self.write_s = 0.0
        self._pending: list[VideoOutcome] = []
        self._rows = 0
        self._oldest = 0.0
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue(maxsize=4)  # backpressure: at most a few batches wait for storage
        self._error: BaseException | None = None
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._write_loop, name="vidbatch-committer", daemon=True)
        self._thread.start()

    def add(self, outcome: VideoOutcome) -> None:
        self._raise_if_failed()
        with self._lock:
            if not self._pending:
                self._oldest = time.monotonic()
            self._pending.append(outcome)
            self._rows += outcome.frames.num_rows if outcome.frames is not None else 0
            full = len(self._pending) >= self.max_videos or self._rows >= self.max_rows
            batch = self._take() if full else None
        if batch:
            self._queue.put(batch)

    def waiting(self) -> int:
        """Videos added and not yet handed to the writer (finished work an interruption must not lose)."""
        with self._lock:
            return len(self._pending)

    def _take(self) -> list[VideoOutcome]:
        batch, self._pending, self._rows = self._pending, [], 0
        return batch

    def _write_loop(self) -> None:
        while True:
            try:
                batch = self._queue.get(timeout=0.25)
            except queue.Empty:
                if self._closed.is_set():
                    return
                with self._lock:  # an old batch is committed even when no new video arrives
                    stale = bool(self._pending) and time.monotonic() - self._oldest >= self.max_seconds
                    batch = self._take() if stale else None
                if not batch:
                    continue
            if batch is None:
                return
            if self._error is not None:
                continue  # keep draining so producers never block; nothing more is written
            started = time.monotonic()
            try:
                self.output.commit_batch(batch)
                self.write_s += time.monotonic() - started
                self.batches += 1
                if self.on_commit is not None:
                    self.on_commit(batch)
            except BaseException as exc:  # surfaced in the engine's thread
                self._error = exc

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            if isinstance(error, OSError):
                raise OutputError(f"Cannot write to --out {self.output.url!r}: {error.strerror or error}") from None
            raise error

    def close(self) -> None:
        """Commit what is left and wait for every write; raises the first write error."""
        with self._lock:
            batch = self._take()
        if batch:
            self._queue.put(batch)
        self._queue.put(None)
        self._closed.set()
        self._thread.join()
        self._raise_if_failed()
