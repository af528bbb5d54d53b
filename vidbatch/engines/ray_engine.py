"""The Ray engine: the same stages as the local engine, scheduled by Ray Data, every per-video step on workers.

    manifest rows --map_batches(RayDecoder, CPU actor pool)--> units: one row per video, or per time range of a
                                                                long one, its frames a variable-shaped tensor
                  --map_batches(RayPredictor, GPU/CPU actor pool)--> the same rows, probabilities for frames
                  --write_datasink(CommitSink, write tasks)--> each unit assembled (smoothing, segments, shots)
                                                               and committed with its batch, on the worker
                  --> driver: one small result per committed batch

Decoding and inference stream and overlap; Ray Data's backpressure bounds the
object store by its budget, not by the archive. Only sampled, resized uint8
frames travel, and a row is never split, so whoever holds a row holds a whole
unit. The driver does no per-video work: it schedules, and receives the
counters of each committed batch (a video that never commits gets its failed
row from the pipeline, as with every engine). Each decode actor keeps one decoder
*process* (the local engine's pool), so a segfaulting or hanging decoder fails
only its video; a lost actor, task or node is restarted by Ray and its work
retried, and a video committed twice keeps its latest commit (`RunOutput`).

A video of more than `range_items` sampled items is cut, as it decodes, into
time ranges (`stages.ranges`) that are classified, assembled and committed
apart; `io.ranges.merge` combines their small records (tested: a split video's
tables equal its unsplit ones). A long video's decoding is split too
(`split_long_videos`): a row per part, each decoded by a free actor that seeks
to it (`stages.seek`); its ranges are settled by one committer (`stages.parts`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import uuid
import zlib
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.data import Datasink
from ray.data.block import BlockAccessor

from vidbatch.core.config import LabelConfig
from vidbatch.core.errors import OutputError
from vidbatch.engines.base import Engine
from vidbatch.engines.ray_connect import check_reachable, cluster_address, init_or_fail
from vidbatch.io import storage
from vidbatch.io.manifest import Pending, StreamedManifest, task_columns
from vidbatch.io.output import RunOutput
from vidbatch.io.ranges import NO_FRAMES
from vidbatch.stages.assemble import assemble_failed, assemble_ok, assemble_range, info_fields, merge_options
from vidbatch.stages.decode import DecodeSpec
from vidbatch.stages import split
from vidbatch.stages.decode_job import Chunk, DecodeJob, Failed, Started
from vidbatch.stages.parts import empty_part
from vidbatch.stages.ranges import ARRAYS, RangeSplitter, RangeUnit, default_range_items
from vidbatch.stages.split import ONE_PASS_NOTE

MIN_BLOCKS = 16
BLOCKS_PER_DECODER = 4
"""Manifest blocks per decode actor at least (a block goes to one actor: several each balance the end of a job)."""
MAX_BLOCK_ROWS = 4096
INLINE_ROWS = 1 << 18
"""Above this many videos, manifest blocks have at least `MIN_STORED_BLOCK_ROWS` rows. Why: Ray returns a task
result under 100 KB inline to its owner, so small manifest blocks live in the driver's own memory until they are
decoded (about 150 bytes a video); blocks of 1,024 rows and more live in the workers' object stores."""
MIN_STORED_BLOCK_ROWS = 1024
VIDEOS_PER_DECODE_CALL = 8
"""Videos one decode call takes at most: its decoder process decodes them back to back (a lost actor retries
them all); small jobs take fewer, so that every decoder gets several calls."""
COMMITTER_CPUS = 32
"""One write task (assembly) and one committer per this many cluster CPUs, at least `MIN_COMMITTERS`."""
MIN_COMMITTERS = 2
CLOSE_TIMEOUT_S = 60
"""How long an interrupted run waits for its committers to commit the finished work they hold."""
TFLITE_CPU_SHARE = 0.5
"""A .tflite model runs on CPUs (LiteRT): by default its inference actors take half the cluster's CPU slots and
the decoders the rest (MoViNet-A0 costs about twice a UCF101 frame's decode with shot detection, per sampled
frame)."""


def _runs_on_cpus(bundle) -> bool:
    """A bundle whose frames go to a .tflite file (LiteRT has no GPU path here): its actors take CPU slots."""
    return bundle.encoder is not None and getattr(bundle.encoder, "format", "") == "tflite"


def _objects(values: list) -> np.ndarray:
    """A column of per-row arrays of different lengths (Ray Data stores it as a variable-shaped tensor)."""
    column = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        column[i] = value
    return column


class RayDecoder:
    """Ray Data callable class: video rows in; one row per unit out (a whole video, or one range of a long one).

    A unit's arrays are cells of variable-shaped columns; a failed video's last row has empty arrays. Rows leave
    in few, larger batches (Ray Data pays per batch, not per row).
    """

    def __init__(self, spec: DecodeSpec, item_shape: Sequence[int], timeout_s: float | None,
                 storage_options: Mapping[str, Any], range_items: int, overlap: int, flush_items: int,
                 reset_every: int | None = None, run_seed: str = "") -> None:
        from vidbatch.engines.decode_pool import DecodePool

        self.run_seed = run_seed
        """The parts of a split video share one attempt id, made from this (one per run) and the video's key: a
        retried part's ranges replace its earlier copies (`stages.parts`)."""
        self.spec = spec
        self.item_shape = tuple(item_shape)
        self.storage_options = dict(storage_options)
        self.range_items = range_items
        self.overlap = overlap
        self.pool = DecodePool(workers=1, timeout_s=timeout_s, persistent=True, slot_bytes=spec.chunk_nbytes)
        self.flush_items = flush_items
        if reset_every is None:
            self.reset = None
        else:  # a streaming model: each range starts at the last reset point before it
            from vidbatch.model.streaming import ResetRule

            self.reset = ResetRule(reset_every)

    def __call__(self, batch: dict[str, np.ndarray]):
        jobs = [self._job(batch, row) for row in range(len(batch["key"]))]
        by_key = {job.key: job for job in jobs}
        videos = {job.key: str(batch["key"][row]) for row, job in enumerate(jobs)}  # a part's job key -> video's
        splitters: dict[str, RangeSplitter] = {}
        started: dict[str, float] = {}
        infos: dict[str, dict] = {}
        pending: list[dict[str, Any]] = []
        pending_items = 0
        for event in self.pool.run(jobs):
            job = by_key[event.key]
            started.setdefault(job.key, time.time())
            splitter = splitters.get(job.key)
            if splitter is None:  # a video's first event
                splitter = splitters[job.key] = RangeSplitter(self.range_items, self.overlap, self.reset)
                if job.parts > 1:
                    splitter.attempt = hashlib.sha1(f"{self.run_seed}/{videos[job.key]}".encode()).hexdigest()
            if isinstance(event, Started):
                infos[job.key] = event.info
                splitter.preroll(int(event.info.get("preroll") or 0))
                continue
            if isinstance(event, Chunk):
                units = splitter.push(event.arrays)
                status, error, info = "", "", infos.get(job.key)
            elif isinstance(event, Failed):
                units = [RangeUnit(self._empty(), splitter.attempt, splitter.next_range, last=True)]
                status, error, info = "failed", event.message, event.info or infos.get(job.key)
            else:
                units = [splitter.finish()]
                status, error, info = "done", "", event.info or infos.get(job.key)
            for unit in units:
                pending.append(self._row(job, videos[job.key], unit, status if unit.last else "", error, info,
                                         started[job.key]))
                pending_items += len(unit)
            if pending_items >= self.flush_items:
                yield self._batch(pending)
                pending, pending_items = [], 0
        if pending:
            yield self._batch(pending)

    def _job(self, batch: dict[str, np.ndarray], row: int) -> DecodeJob:
        """A row's decode job; a part of a split video is its own job (its own key in the pool: the video's key and
        its part), sending the rolling window's pre-roll before its own items."""
        key = str(batch["key"][row])
        part = int(batch["part"][row]) if "part" in batch else 0
        parts = int(batch["parts"][row]) if "parts" in batch else 1
        return DecodeJob(key=key if parts == 1 else f"{key}/{part}", video_id=str(batch["video_id"][row]),
                         uri=str(batch["uri"][row]), location=str(batch["location"][row]), spec=self.spec,
                         storage_options=self.storage_options, part=part, parts=parts,
                         preroll=self.overlap if parts > 1 else 0)

    def _empty(self) -> dict[str, np.ndarray]:
        return {"frames": np.zeros((0, *self.item_shape), np.uint8), "frame_index": np.zeros(0, np.int64),
                "timestamp_s": np.zeros(0, np.float64), "shot_cut": np.zeros(0, bool)}

    def _row(self, job: DecodeJob, key: str, unit: RangeUnit, status: str, error: str, info,
             started: float) -> dict[str, Any]:
        arrays = unit.arrays if len(unit) else self._empty()
        return {"key": key, "video_id": job.video_id, "part": job.part, "parts": job.parts,
                "attempt": unit.attempt, "range_index": unit.range_index,
                "last": unit.last, "overlap": unit.overlap, "shot_base": unit.shot_base, "closes": unit.closes,
                "status": status,
                "error": error, "info": json.dumps(info or {}), "started": started,
                "frames": arrays["frames"], "frame_index": np.asarray(arrays["frame_index"], np.int64),
                "timestamp_s": np.asarray(arrays["timestamp_s"], np.float64),
                "shot_cut": np.asarray(arrays["shot_cut"], bool)}

    @staticmethod
    def _batch(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        return {name: (_objects([r[name] for r in rows]) if name in ARRAYS else np.array([r[name] for r in rows]))
                for name in rows[0]}

    def __del__(self) -> None:
        try:
            self.pool.close()
        except Exception:
            pass


class RayPredictor:
    """Ray Data callable class: loads the bundle once per actor; each unit's frames in, its probabilities out."""

    def __init__(self, model: str, batch_size: int, storage_options: Mapping[str, Any], trust_model_code: bool,
                 classes: str | None = None, precision: str = "float32", preprocessing: str | None = None,
                 channel_order: str | None = None, embeddings: bool = False, reset_every: int = 0,
                 label_map: str | None = None, label_map_options: Mapping[str, Any] | None = None,
                 lanes: int | None = None, model_probs: bool = False) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from vidbatch.stages.classify import Predictor

        self.predictor = Predictor(model, batch_size=batch_size, storage_options=storage_options,
                                   trust_model_code=trust_model_code, classes=classes, precision=precision,
                                   preprocessing=preprocessing, channel_order=channel_order, embeddings=embeddings,
                                   reset_every=reset_every, label_map=label_map, label_map_options=label_map_options,
                                   model_probs=model_probs)
        if self.predictor.stateful and lanes:
            self.predictor.encoder.lanes = lanes
        self.calls = 0

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """All the batch's units in as few model batches as they fill; `frames` replaced by `probs` per unit."""
        units = list(batch["frames"])
        sizes = [len(u) for u in units]
        result = {name: value for name, value in batch.items() if name != "frames"}
        if sum(sizes):
            keys = cuts = None
            if self.predictor.stateful:  # a unit starts at a reset point (its pre-roll): a fresh state per row
                self.calls += 1
                keys = [(self.calls, row) for row, size in enumerate(sizes) for _ in range(size)]
                cuts = np.concatenate([np.asarray(c, bool) for c, size in zip(batch["shot_cut"], sizes) if size])
            predicted = self.predictor.predict_all(np.concatenate([u for u in units if len(u)]), keys, cuts)
            self.predictor.forget(set(keys or ()))
        else:  # only failed videos: empty columns of the right widths, so every block has the same columns
            blank = np.zeros((1, *self.predictor.spec.item_shape), np.uint8)
            keys = [("blank", self.calls)] if self.predictor.stateful else None  # a state of its own, then dropped
            predicted = {name: values[:0] for name, values in self.predictor.predict_all(blank, keys).items()
                         if values is not None}
            self.predictor.forget(set(keys or ()))
        bounds = np.cumsum(sizes)[:-1]
        for name, values in predicted.items():
            if values is not None:
                result[name] = _objects(np.split(values, bounds))
        return result


class Committer:
    """A Ray actor on the driver's node that commits what the write tasks assembled, as the local engine does:
    by `--commit-videos`, by age (`--commit-seconds`: a finished video never waits longer for its batch), and
    when the run ends or is interrupted (`close`), so finished work is kept (`io.output.BatchCommitter`).

    Why an actor rather than Ray Data's `min_rows_per_write`: rows Ray Data holds back to fill a write are lost
    when the job is interrupted, and a small or slow job commits nothing until its end. Why the driver's node: a
    buffer on a node that is lost would lose its videos' results (the driver's node is the one the job cannot
    lose anyway). Only assembled tables travel to it (labels and scores, not frames)."""

    def __init__(self, output: RunOutput, commit_videos: int, commit_seconds: float) -> None:
        from vidbatch.io.output import BatchCommitter
        from vidbatch.stages.parts import PartSets

        self.batches = BatchCommitter(output, max_videos=commit_videos, max_seconds=commit_seconds)
        self.parts = PartSets()
        """Ranges of split videos, until each video has all of its parts' (every part of a video comes here)."""
        self.stats: dict[str, Any] = {}

    def add(self, outcomes: list, stats: dict[str, Any], parts: list | None = None) -> None:
        """A write task's outcomes, and its counters (summed here, so the driver gets one dict per committer at
        the end, not one per block: 10^7 videos make some 150,000 blocks); `parts`: ranges of split videos, as
        (outcome, part, parts, last), committed once their video is settled (`stages.parts`)."""
        for outcome in outcomes:
            self.batches.add(outcome)
        settled = {"videos_ok": 0, "videos_failed": 0, "frames_decoded": 0, "split_one_pass": 0}
        for outcome, part, count, last in parts or ():
            ranges = self.parts.add(outcome, part, count, last)
            if ranges:
                video = ranges[-1].record
                settled["videos_ok" if video["status"] != "failed" else "videos_failed"] += 1
                settled["frames_decoded"] += int(video.get("frames_decoded") or 0)
                settled["split_one_pass"] += int(ONE_PASS_NOTE in (video.get("decode_note") or ""))
            for outcome in ranges:
                self.batches.add(outcome)
        self.stats = merge_stats(merge_stats(self.stats, stats), settled)

    def waiting(self) -> int:
        return self.batches.waiting()

    def close(self) -> dict[str, Any]:
        """Commit what is left; returns the summed counters of what it took, the commits made and their write time."""
        self.batches.close()
        return {**self.stats, "commits": self.batches.batches, "write_s": self.batches.write_s}


def merge_stats(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two write tasks' counters as one: sums, and the earliest start."""
    if not a:
        return dict(b)
    merged = {name: a.get(name, 0) + b.get(name, 0) for name in {**a, **b} if name != "first_started"}
    firsts = [s["first_started"] for s in (a, b) if s.get("first_started")]
    merged["first_started"] = min(firsts) if firsts else None
    return merged


class CommitSink(Datasink):
    """Ray Data datasink: each write task assembles its units (`stages.assemble`) on the worker and hands the
    outcomes, with its counters, to a `Committer`; the driver gets nothing per write task."""

    def __init__(self, classes: Sequence[str], config: LabelConfig, model: str, committers: Sequence[Any],
                 model_classes: Sequence[str] = ()) -> None:
        self.classes = list(classes)
        self.model_classes = list(model_classes) if config.model_top_k else []
        """The model's own classes, before a label map (`--model-top-k`)."""
        self.config = config
        self.model = model
        self.committers = list(committers)

    def write(self, blocks, ctx) -> None:
        stats = {"videos_ok": 0, "videos_failed": 0, "units": 0, "items": 0, "frames_decoded": 0, "flow_s": 0.0,
                 "flow_frames": 0, "assemble_s": 0.0, "first_started": None}
        outcomes, seen = [], set()
        parts: dict[int, list] = {}  # committer -> ranges of split videos (every range of a video to one committer)
        began = time.perf_counter()
        for block in blocks:
            columns = BlockAccessor.for_block(block).to_numpy()
            for row in range(len(columns["key"])):
                unit = {name: values[row] for name, values in columns.items()}
                part, count = int(unit.get("part", 0)), int(unit.get("parts", 1))
                identity = (str(unit["key"]), part, str(unit["attempt"]), int(unit["range_index"]), bool(unit["last"]))
                if identity in seen:  # a retried task sent it twice
                    continue
                seen.add(identity)
                outcome = self._outcome(unit, stats)
                if count > 1 and outcome.record.get("status") != "failed":
                    to = zlib.crc32(identity[0].encode()) % len(self.committers)
                    parts.setdefault(to, []).append((outcome, part, count, bool(unit["last"])))
                else:
                    outcomes.append(outcome)
        stats["assemble_s"] = time.perf_counter() - began
        home = ctx.task_idx % len(self.committers)  # the other outcomes: one committer per write task, by its index
        ray.get([self.committers[to].add.remote(outcomes if to == home else [], stats if to == home else {},
                                                parts.get(to, []))
                 for to in sorted(set(parts) | {home})])

    def _outcome(self, row: dict[str, Any], stats: dict[str, Any]):
        key, video_id = str(row["key"]), str(row["video_id"])
        info = json.loads(str(row["info"]))
        started = float(row["started"])
        stats["first_started"] = min(started, stats["first_started"] or started)
        elapsed = time.time() - started
        last, status = bool(row["last"]), str(row["status"])
        is_part = int(row.get("parts", 1)) > 1  # a part of a split video: its committer counts the video
        stats["units"] += 1
        if last and not is_part:
            stats["frames_decoded"] += int(info.get("frames_decoded") or 0)
            if info.get("flow_s"):
                stats["flow_s"] += float(info["flow_s"])
                stats["flow_frames"] += int(info.get("frames_sampled") or 0)
        arrays = {name: np.asarray(row[name]) for name in ("frame_index", "timestamp_s", "shot_cut")}
        unit = RangeUnit(arrays, str(row["attempt"]), int(row["range_index"]), last, int(row["overlap"]),
                         int(row["shot_base"]), bool(row["closes"]))
        probs = np.asarray(row["probs"], np.float32).reshape(len(unit), len(self.classes))
        embeddings = np.asarray(row["embedding"], np.float32) if "embedding" in row else None
        extra = {"embeddings": embeddings, "model_classes": self.model_classes,
                 "model_probs": np.asarray(row["model_probs"], np.float32) if "model_probs" in row else None}
        if last and (status == "failed" or (unit.whole and not len(unit) and not is_part)):
            stats["videos_failed"] += 1
            return assemble_failed(video_id, key, str(row["error"]) if status == "failed" else NO_FRAMES, info,
                                   self.model, elapsed)
        stats["items"] += len(unit) - unit.overlap
        if is_part:  # settled with the video's other parts by its committer (`stages.parts`)
            if not len(unit):  # a part with no sampled frame of its own
                return empty_part(video_id, key, unit.attempt, unit.range_index, info_fields(info),
                                  merge_options(self.classes, self.config, self.model_classes), self.model, elapsed)
            return assemble_range(video_id, key, self.classes, unit, probs, info, self.config, self.model, elapsed,
                                  **extra)
        if unit.whole:
            stats["videos_ok"] += 1
            return assemble_ok(video_id, key, self.classes, unit.frame_index, unit.timestamp_s, probs, info,
                               self.config, self.model, elapsed, shot_cut=unit.shot_cut, **extra)
        stats["videos_ok"] += int(last)
        return assemble_range(video_id, key, self.classes, unit, probs, info, self.config, self.model, elapsed,
                              **extra)



def manifest_blocks(videos: int, decoders: int) -> int:
    """How many blocks the manifest's `videos` rows are cut into: several per decode actor (a block goes to one
    actor, so that is what balances a job's end), at least `MIN_BLOCKS` (a small job streams in steps), blocks of
    at most `MAX_BLOCK_ROWS` rows (Ray Data's costs are per block, on the driver too), and, for a big manifest,
    of at least `MIN_STORED_BLOCK_ROWS` (see `INLINE_ROWS`)."""
    if videos <= 0:
        return 1
    rows = min(MAX_BLOCK_ROWS, -(-videos // max(MIN_BLOCKS, BLOCKS_PER_DECODER * decoders)))
    if videos > INLINE_ROWS:
        rows = max(rows, MIN_STORED_BLOCK_ROWS)
    return -(-videos // max(1, rows))


def manifest_dataset(tasks: Pending, blocks: int) -> ray.data.Dataset:
    """The videos to label as a Ray Data dataset of (key, video_id, uri, location) rows, in about `blocks` blocks.

    A manifest file is read by Ray Data on the workers, which derive the ids and keys and drop the finished videos
    there (`manifest.task_columns`, the `done` hashes shipped once): the driver never holds its rows, only a
    reference per block. A local file is read on the driver's node (the only one sure to have it). A manifest held in memory (built from records) is handed over
    from the driver."""
    manifest = tasks.manifest
    if not isinstance(manifest, StreamedManifest):
        table = tasks.columns()
        rows = max(1, -(-table.num_rows // blocks))
        return ray.data.from_arrow([table.slice(start, rows) for start in range(0, table.num_rows, rows)])
    import pyarrow.csv as pacsv
    import pyarrow.fs as pafs

    file = manifest.file
    filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(file["fs"]))
    wanted = [name for name in ("uri", "video_id") if name in file["columns"]]
    # a local file is read on the driver's node (Ray's node-id label)
    here = {"ray.io/node-id": ray.get_runtime_context().get_node_id()} if storage.is_local(file["fs"]) else None
    common = dict(filesystem=filesystem, label_selector=here, num_cpus=0, file_extensions=None)
    if file["parquet"]:
        rows = ray.data.read_parquet(file["path"], columns=wanted, **common)
    else:
        rows = ray.data.read_csv(
            file["path"], **common, read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=file["delimiter"]),
            convert_options=pacsv.ConvertOptions(include_columns=wanted, column_types={n: pa.string() for n in wanted},
                                                 strings_can_be_null=True))
    done = ray.put(tasks.done)
    rows = rows.map_batches(_task_columns, batch_format="pyarrow", batch_size=None, num_cpus=0,
                            fn_kwargs={"source": manifest.source, "base_dir": manifest.base_dir, "done": done})
    # cut into the pipeline's blocks, and made before the actor pools start: they hold every CPU slot, and a
    # split needs some
    return rows.repartition(blocks).materialize()


def split_long_videos(rows: ray.data.Dataset, decoders: int,
                      storage_options: Mapping[str, Any]) -> tuple[ray.data.Dataset, int, int]:
    """`rows` with each long video as `parts` rows (columns `part` and `parts`), and how many videos were split
    into how many parts (`stages.split.parts_for`, on the workers, before the actor pools start).

    Part `p` of every split video lies in a dataset of its own (`union`ed): a block goes to one decode actor, so
    parts of one video in separate blocks are decoded by separate actors, each seeking to its part
    (`stages.seek`); their ranges are settled by the committer (`stages.parts`)."""
    kwargs = {"decoders": decoders, "storage_options": dict(storage_options), "min_bytes": split.SPLIT_MIN_BYTES,
              "min_work": split.PART_MIN_WORK}
    probed = rows.map_batches(_with_parts, batch_format="pyarrow", batch_size=None, fn_kwargs=kwargs).materialize()
    long = probed.map_batches(_parts_from, batch_format="pyarrow", batch_size=None, fn_kwargs={"part": 1})
    long = long.materialize()
    videos = long.count()
    if not videos:
        return probed, 0, 0
    long = long.repartition(min(videos, decoders)).materialize()
    most = parts = 0
    for totals in long.map_batches(_part_totals, batch_format="pyarrow", batch_size=None,
                                   num_cpus=0).iter_batches(batch_size=None, batch_format="pyarrow"):
        most = max(most, pc.max(totals.column("most")).as_py() or 0)
        parts += pc.sum(totals.column("parts")).as_py() or 0
    rest = [long.map_batches(_parts_from, batch_format="pyarrow", batch_size=None, fn_kwargs={"part": p})
            for p in range(2, most)]
    return probed.union(long, *rest).materialize(), videos, parts


def _with_parts(table: pa.Table, decoders: int, storage_options: dict, min_bytes: int, min_work: float) -> pa.Table:
    """Each row's parts (1 for a video that is not split), and its part: 0."""
    parts = [split.parts_for(location, decoders, storage_options, min_bytes, min_work)
             for location in table.column("location").to_pylist()]
    return table.append_column("part", pa.array([0] * len(parts), pa.int64())).append_column(
        "parts", pa.array(parts, pa.int64()))


def _part_totals(table: pa.Table) -> pa.Table:
    """A block's most parts and its parts in all, as one row (the driver sums a row per block, not per video)."""
    parts = table.column("parts")
    return pa.table({"most": [pc.max(parts).as_py() or 0], "parts": [pc.sum(parts).as_py() or 0]})


def _parts_from(table: pa.Table, part: int) -> pa.Table:
    """The rows of videos that have part `part`, as that part's rows."""
    kept = table.filter(pc.greater(table.column("parts"), part))
    return kept.set_column(kept.schema.get_field_index("part"), "part", pa.array([part] * kept.num_rows, pa.int64()))


def _task_columns(table: pa.Table, source: str, base_dir: str, done) -> pa.Table:
    """`manifest.task_columns` on a worker (`done`: the finished videos' hashes, or their object ref)."""
    if isinstance(done, ray.ObjectRef):
        done = ray.get(done)
    return task_columns(table, source, base_dir, done)


def _output_error(exc: BaseException) -> OutputError | None:
    """The OutputError (a storage write failed) inside Ray's wrappers, if that is what stopped the job."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OutputError):
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__
    return None


def _cluster_resources() -> tuple[float, float]:
    resources = ray.cluster_resources()
    return float(resources.get("CPU", 1)), float(resources.get("GPU", 0))


class RayEngine(Engine):

    def _connect(self) -> bool:
        """Connect to the cluster named by `--ray-address` or `RAY_ADDRESS` (set by `ray job submit`), or start a
        private local instance: True if this engine started one it must stop. Never a cluster found on the machine
        by chance (Ray's address file), which may belong to someone else or be long gone."""
        if ray.is_initialized():
            self.connection = {"address": "(already connected)", "private_instance": False}
            return False
        address = cluster_address(self.config.ray.address)
        if address == "local":
            # a private instance with every local CPU; no dashboard, whose processes would compete for the CPUs
            init_or_fail("local", "start a local Ray instance", include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3"}})
        else:
            check_reachable(address)
            init_or_fail(address, f"connect to the Ray cluster at {address!r}", log_to_driver=False)
        self.connection = {"address": address, "private_instance": address == "local"}
        return address == "local"

    def plan(self, tasks: Pending):
        """The Ray Data pipeline for `tasks` up to the commit stage (lazy; nothing runs until it is written)."""
        cpus, gpus = _cluster_resources()
        ray_options = self.config.ray
        on_cpus = _runs_on_cpus(self.bundle)
        actor_gpus = ray_options.inference_gpus if ray_options.inference_gpus is not None else (
            1.0 if gpus >= 1 and not on_cpus else 0.0)
        actors = ray_options.inference_actors or (
            max(1, int(gpus // actor_gpus)) if actor_gpus else
            max(1, int(cpus * TFLITE_CPU_SHARE // max(ray_options.inference_cpus, 1.0))) if on_cpus else 1)
        inference_cpus = ray_options.inference_cpus if actor_gpus else max(ray_options.inference_cpus, 1.0)
        decoders = ray_options.max_decode_in_flight or max(
            1, int((cpus - (0 if actor_gpus else inference_cpus * actors)) // ray_options.decode_cpus)
        )
        overlap = self.config.window - 1
        streaming = bool(getattr(self.bundle.encoder, "stateful", False))
        item_nbytes = int(np.prod(self.bundle.spec.item_shape))
        range_items = ray_options.range_items or default_range_items(item_nbytes, overlap)
        committers = ray_options.committers or max(MIN_COMMITTERS, int(cpus // COMMITTER_CPUS))
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = bool(self.config.progress)  # Ray Data's own bars: rows through each stage
        context.print_on_execution_start = False
        if ray_options.object_store_memory:
            limits = context.execution_options.resource_limits
            context.execution_options.resource_limits = limits.copy(object_store_memory=ray_options.object_store_memory)
        # Actor pools restart lost actors and retry their tasks without limit (Ray Data's default for
        # map_batches with a callable class); a unit committed twice keeps its latest commit.
        dataset = manifest_dataset(tasks, manifest_blocks(len(tasks), min(decoders, len(tasks))))
        off = split.unsplittable(self.spec, streaming) if decoders > 1 else "one decode actor"
        split_layout = {"videos": 0, "parts": 0, "one_pass": 0, "off": off}
        if off is None:  # long videos as several rows, one per part, each decoded by whichever actor is free
            dataset, split_layout["videos"], split_layout["parts"] = split_long_videos(
                dataset, decoders, self.config.storage_options)
        jobs = len(tasks) + split_layout["parts"] - split_layout["videos"]
        decoders = min(decoders, max(1, jobs))
        # a small job still spreads over every decoder in several calls (results then arrive steadily)
        per_call = max(1, min(VIDEOS_PER_DECODE_CALL, jobs // (4 * decoders)))
        decoded = dataset.map_batches(
            RayDecoder,
            # a decode actor's FFmpeg threads are the CPUs it was given, not every CPU of its node
            fn_constructor_kwargs={"spec": dataclasses.replace(self.spec, threads=max(1, int(ray_options.decode_cpus))),
                                   "item_shape": self.bundle.spec.item_shape,
                                   "timeout_s": self.config.video_timeout,
                                   "storage_options": dict(self.config.storage_options),
                                   "range_items": range_items, "overlap": overlap,
                                   "flush_items": max(4 * self.spec.chunk_frames, self.config.batch_size),
                                   "reset_every": self.config.reset_every() if streaming else None,
                                   "run_seed": uuid.uuid4().hex},
            batch_size=per_call,
            # with split videos, a block waits for a free actor rather than queue at a busy one (the first actor
            # up would otherwise take every part of a video while the others start)
            compute=ray.data.ActorPoolStrategy(size=decoders, max_tasks_in_flight_per_actor=(
                1 if split_layout["videos"] else None)),
            num_cpus=ray_options.decode_cpus,
        )
        # batch_size=None: one decoder output block per call, whole units of about `flush_items` items
        predicted = decoded.map_batches(
            RayPredictor,
            fn_constructor_kwargs={"model": self.config.model, "batch_size": self.config.batch_size,
                                   "storage_options": dict(self.config.storage_options),
                                   "trust_model_code": self.config.trust_model_code, "classes": self.config.classes,
                                   "precision": self.config.precision, "preprocessing": self.config.preprocessing,
                                   "channel_order": self.config.channel_order, "embeddings": self.config.embeddings,
                                   "reset_every": self.config.reset_every(), "label_map": self.config.label_map,
                                   "label_map_options": self.config.label_map_options,
                                   "lanes": max(1, int(inference_cpus)), "model_probs": bool(self.config.model_top_k)},
            batch_size=None, compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=actor_gpus, num_cpus=inference_cpus,
        )
        self.layout = {"decode_actors": decoders, "inference_actors": actors, "gpus_per_inference_actor": actor_gpus,
                       "committers": committers, "range_items": range_items, "cluster_cpus": cpus,
                       "cluster_gpus": gpus, "split_long_videos": split_layout}
        return predicted

    def run(self, tasks: Pending) -> dict[str, Any]:
        if not tasks:
            return {**self.counters.as_dict(), "engine": "ray"}
        started_here = self._connect()
        try:
            dataset = self.plan(tasks)
            committers = self._committers(self.layout["committers"])
            sink = CommitSink(self.bundle.classes, self.config, self.bundle.display_name, committers,
                              model_classes=self.bundle.spec.classes)
            try:
                # write tasks take no CPU slot: decoders and inference actors hold every slot for the whole job, and
                # assembly is a few ms per block (`concurrency` bounds them)
                dataset.write_datasink(sink, ray_remote_args={"num_cpus": 0}, concurrency=len(committers))
            except BaseException as exc:
                # interrupted or failed: what the committers hold is finished work; commit it, then stop
                self._close(committers, quietly=True)
                error = _output_error(exc) if isinstance(exc, Exception) else None
                if error is not None:
                    raise error from None
                raise
            self._close(committers)
        finally:
            if started_here:
                ray.shutdown()
        return {**self.counters.as_dict(), "engine": "ray", "layout": self.layout, "ray": self.connection}

    def _committers(self, count: int) -> list:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        actor = ray.remote(num_cpus=0, scheduling_strategy=here, max_restarts=0)(Committer)
        return [actor.remote(self.output, self.config.commit_videos, self.config.commit_seconds) for _ in range(count)]

    def _close(self, committers: list, quietly: bool = False) -> None:
        """Commit what every committer holds; `quietly` (the run is stopping anyway): within a bound, errors aside."""
        try:
            results = ray.get([c.close.remote() for c in committers], timeout=CLOSE_TIMEOUT_S if quietly else None)
        except Exception as exc:
            if quietly:
                return
            error = _output_error(exc)
            if error is not None:
                raise error from None
            raise
        self._count(results)

    def _count(self, results: list[dict[str, Any]]) -> None:
        counters = self.counters
        for stats in results:
            counters.commits += int(stats["commits"])
            counters.write_s += float(stats["write_s"])
            counters.videos_ok += stats.get("videos_ok", 0)  # a committer handed nothing has no counters
            counters.videos_failed += stats.get("videos_failed", 0)
            counters.items_classified += stats.get("items", 0)
            counters.frames_decoded += stats.get("frames_decoded", 0)
            counters.flow_s += stats.get("flow_s", 0.0)
            counters.flow_frames += stats.get("flow_frames", 0)
            if "split_long_videos" in self.layout:
                self.layout["split_long_videos"]["one_pass"] += stats.get("split_one_pass", 0)
        firsts = [s["first_started"] for s in results if s.get("first_started")]
        if firsts:  # start-up ends when the first video started decoding
            counters.first_item_at = time.monotonic() - (time.time() - min(firsts))
