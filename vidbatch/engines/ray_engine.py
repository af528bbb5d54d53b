"""The Ray engine: the same stages as the local engine, scheduled by Ray Data.

    manifest rows --map_batches(RayDecoder, CPU actors)--> chunks of uint8 frames
                  --map_batches(RayPredictor, GPU/CPU actor pool)--> class probabilities
                  --> driver: per-video assembly and ledger commit (shared with the local engine)

Decoding and inference stream and overlap; Ray Data's backpressure bounds the
object store by its budget, not by the archive. Only sampled, resized uint8
frames travel. Each decode actor keeps one decoder *process* (the local
engine's pool), so a segfaulting or hanging decoder fails only its video; a
lost actor or node is restarted by Ray and its work retried, and the driver
drops any duplicate rows a retry produces.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import numpy as np
import ray

from vidbatch.engines.base import COLUMNS, Engine, VideoCollector
from vidbatch.engines.decode_pool import DecodePool
from vidbatch.engines.progress import Progress
from vidbatch.io.manifest import VideoTask
from vidbatch.stages.decode import DecodeSpec
from vidbatch.stages.decode_job import (
    Chunk,
    DecodeJob,
    Failed,
    Started,
)

VIDEOS_PER_BLOCK = 64
MIN_BLOCKS = 16
VIDEOS_PER_DECODE_CALL = 8
"""Videos one decode call takes at most: its decoder process decodes them back to back (a lost actor retries
them all); small jobs take fewer, so that every decoder gets several calls."""


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


class RayDecoder:
    """Ray Data callable class: video rows in; for each video its chunks' rows, then one terminal row.

    Every output row has the same columns (`frames` always holds one item, a
    blank one on the terminal row), so batches of any mix of videos stack.
    """

    def __init__(self, spec: DecodeSpec, item_shape: Sequence[int], timeout_s: float | None,
                 storage_options: Mapping[str, Any]) -> None:
        self.spec = spec
        self.item_shape = tuple(item_shape)
        self.storage_options = dict(storage_options)
        self.pool = DecodePool(workers=1, timeout_s=timeout_s, persistent=True, slot_bytes=spec.chunk_nbytes)
        self.flush_items = 4 * spec.chunk_frames

    def __call__(self, batch: dict[str, np.ndarray]):
        """Decode the batch's videos through one run of the pool (its decoder stays busy between videos), and
        yield their rows in few, larger batches: Ray Data pays per batch, not per row."""
        jobs = [
            DecodeJob(key=str(batch["key"][row]), video_id=str(batch["video_id"][row]), uri=str(batch["uri"][row]),
                      location=str(batch["location"][row]), spec=self.spec, storage_options=self.storage_options)
            for row in range(len(batch["key"]))
        ]
        by_key = {job.key: job for job in jobs}
        items = {job.key: 0 for job in jobs}
        infos: dict[str, dict] = {}
        pending: list[dict[str, np.ndarray]] = []
        pending_items = 0
        for event in self.pool.run(jobs):
            job = by_key[event.key]
            if isinstance(event, Started):
                infos[job.key] = event.info
                continue
            if isinstance(event, Chunk):
                chunk = event.arrays
                count = len(event)
                items[job.key] += count
                pending.append(self._rows(job, chunk["frames"], chunk["frame_index"], chunk["timestamp_s"], count,
                                          chunk["shot_cut"]))
                pending_items += count
            else:
                failed = isinstance(event, Failed)
                blank = np.zeros((1, *self.item_shape), np.uint8)
                pending.append(self._rows(job, blank, np.array([-1]), np.array([0.0]), 1, np.array([False]), last=True,
                                          status="failed" if failed else "done", error=event.message if failed else "",
                                          info=event.info or infos.get(job.key), items=items[job.key]))
                pending_items += 1
            if pending_items >= self.flush_items:
                yield _concat(pending)
                pending, pending_items = [], 0
        if pending:
            yield _concat(pending)

    @staticmethod
    def _rows(job, frames, index, stamps, count, cuts, last=False, status="", error="", info=None, items=0):
        return {
            "shot_cut": np.asarray(cuts, bool),
            "key": np.array([job.key] * count),
            "video_id": np.array([job.video_id] * count),
            "frames": frames,
            "frame_index": np.asarray(index, np.int64),
            "timestamp_s": np.asarray(stamps, np.float64),
            "last": np.array([last] * count),
            "status": np.array([status] * count),
            "error": np.array([error] * count),
            "info": np.array([json.dumps(info or {})] * count),
            "items": np.array([items] * count, np.int64),
        }

    def __del__(self) -> None:
        try:
            self.pool.close()
        except Exception:
            pass


class RayPredictor:
    """Ray Data callable class: loads the bundle once per actor; frames in, probabilities out."""

    def __init__(self, model: str, batch_size: int, storage_options: Mapping[str, Any], trust_model_code: bool,
                 classes: str | None = None, precision: str = "float32", preprocessing: str | None = None,
                 channel_order: str | None = None, embeddings: bool = False) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from vidbatch.stages.classify import Predictor

        self.predictor = Predictor(model, batch_size=batch_size, storage_options=storage_options,
                                   trust_model_code=trust_model_code, classes=classes, precision=precision,
                                   preprocessing=preprocessing, channel_order=channel_order, embeddings=embeddings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.predictor(batch)


def _cluster_resources() -> tuple[float, float]:
    resources = ray.cluster_resources()
    return float(resources.get("CPU", 1)), float(resources.get("GPU", 0))


class RayEngine(Engine):

    def _connect(self) -> bool:
        """Connect to (or start) Ray; True if this engine started a local instance it must stop."""
        if ray.is_initialized():
            return False
        address = self.config.ray.address
        started_here = address is None and "RAY_ADDRESS" not in os.environ
        if started_here:  # a private local instance: no dashboard, whose processes would compete for the CPUs
            ray.init(include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3"}})
        else:
            ray.init(address=address, log_to_driver=False)
        return started_here

    def plan(self, tasks: Sequence[VideoTask]):
        """The Ray Data pipeline for `tasks` (lazy; nothing runs until it is iterated)."""
        cpus, gpus = _cluster_resources()
        ray_options = self.config.ray
        actor_gpus = ray_options.inference_gpus if ray_options.inference_gpus is not None else (1.0 if gpus >= 1 else 0.0)
        actors = ray_options.inference_actors or (max(1, int(gpus // actor_gpus)) if actor_gpus else 1)
        inference_cpus = ray_options.inference_cpus if actor_gpus else max(ray_options.inference_cpus, 1.0)
        decoders = ray_options.max_decode_in_flight or max(
            1, int((cpus - (0 if actor_gpus else inference_cpus * actors)) // ray_options.decode_cpus)
        )
        decoders = min(decoders, max(1, len(tasks)))
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the driver shows its own per-video progress
        context.print_on_execution_start = False
        if ray_options.object_store_memory:
            limits = context.execution_options.resource_limits
            context.execution_options.resource_limits = limits.copy(object_store_memory=ray_options.object_store_memory)
        # Actor pools restart lost actors and retry their tasks without limit (Ray Data's default for
        # map_batches with a callable class); the driver drops rows a retry sends twice.
        rows = [{"key": t.key, "video_id": t.video_id, "uri": t.uri, "location": t.location} for t in tasks]
        # blocks of many videos (Ray Data's costs are per block and per batch, not per row), yet at least two per
        # decode actor so that every actor has work, and at least MIN_BLOCKS: results reach the driver (and its
        # commits) block by block, so a small job still streams in steps of a few videos, not in one lump
        blocks = max(-(-len(rows) // VIDEOS_PER_BLOCK), 2 * decoders, MIN_BLOCKS)
        # a small job still spreads over every decoder in several calls (results then arrive steadily)
        per_call = max(1, min(VIDEOS_PER_DECODE_CALL, len(rows) // (4 * decoders)))
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), blocks)))
        decoded = dataset.map_batches(
            RayDecoder,
            fn_constructor_kwargs={"spec": self.spec, "item_shape": self.bundle.spec.item_shape,
                                   "timeout_s": self.config.video_timeout,
                                   "storage_options": dict(self.config.storage_options)},
            batch_size=per_call, compute=ray.data.ActorPoolStrategy(size=decoders),
            num_cpus=ray_options.decode_cpus,
        )
        predicted = decoded.map_batches(
            RayPredictor,
            fn_constructor_kwargs={"model": self.config.model, "batch_size": self.config.batch_size,
                                   "storage_options": dict(self.config.storage_options),
                                   "trust_model_code": self.config.trust_model_code, "classes": self.config.classes,
                                   "precision": self.config.precision, "preprocessing": self.config.preprocessing,
                                   "channel_order": self.config.channel_order, "embeddings": self.config.embeddings},
            batch_size=self.config.batch_size, compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=actor_gpus, num_cpus=inference_cpus,
        )
        self.layout = {"decode_actors": decoders, "inference_actors": actors, "gpus_per_inference_actor": actor_gpus,
                       "cluster_cpus": cpus, "cluster_gpus": gpus}
        return predicted

    def run(self, tasks: Sequence[VideoTask]) -> dict[str, Any]:
        if not tasks:
            return {**self.counters.as_dict(), "engine": "ray"}
        started_here = self._connect()
        progress = Progress(len(tasks), self.config.progress, self.counters)
        self.collector = VideoCollector(tasks, self.bundle, self.config, self.output, self.counters, progress)
        self._terminal: dict[str, dict[str, Any]] = {}
        try:
            for batch in self.plan(tasks).iter_batches(batch_size=None, batch_format="numpy"):
                self._absorb(batch)
            self.collector.finish_missing("lost: no result came back from the cluster for this video")
        finally:
            try:
                self.collector.close()  # every finished video is committed, even after an error or Ctrl-C
            finally:
                progress.close()
            if started_here:
                ray.shutdown()
        return {**self.counters.as_dict(), "engine": "ray", "layout": self.layout}

    def _absorb(self, batch: dict[str, np.ndarray]) -> None:
        keys = batch["key"]
        last = batch["last"].astype(bool)
        self.counters.classified(int((~last).sum()))
        for key in np.unique(keys):
            state = self.collector.videos.get(str(key))
            if state is None or state.closed:
                continue
            mine = keys == key
            rows = mine & ~last
            if rows.any():  # a retried task may send rows again: deduplicate by frame index
                names = COLUMNS + (("embedding",) if "embedding" in batch else ())
                state.add(batch["probs"][rows], {name: batch[name][rows] for name in names}, deduplicate=True)
            terminal = np.flatnonzero(mine & last)
            if terminal.size:
                row = terminal[0]
                self._terminal[state.task.key] = {"status": str(batch["status"][row]), "error": str(batch["error"][row]),
                                                  "items": int(batch["items"][row])}
                state.info = json.loads(str(batch["info"][row]))
            self._maybe_finish(state)

    def _maybe_finish(self, state) -> None:
        terminal = self._terminal.get(state.task.key)
        if terminal is None:
            return
        if terminal["status"] == "failed":
            self.collector.finish_failed(state, terminal["error"], state.info)
        elif len(state.seen) >= terminal["items"]:
            self.collector.finish_ok(state)
