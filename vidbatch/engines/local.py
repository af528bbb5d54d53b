"""The local engine: decoder processes feed batched inference in this process.

Decoding (worker processes, streaming chunks) overlaps inference (main
thread); frames of different videos share inference batches; each video is
smoothed, assembled and committed as soon as its last frame is classified.
A streaming video model's lanes classify one flush on a background thread
while the main thread takes the decoders' next chunks and finishes videos
(flushes stay in order, so each video's frames reach its state in order).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from vidbatch.core.config import LabelConfig, decoder_threads
from vidbatch.engines.base import (
    COLUMNS,
    OPTIONAL_COLUMNS,
    Engine,
    VideoCollector,
    VideoState,
)
from vidbatch.engines.decode_pool import DecodePool
from vidbatch.engines.progress import Progress
from vidbatch.io.manifest import VideoTask
from vidbatch.io.output import RunOutput
from vidbatch.model.spec import ModelBundle
from vidbatch.stages.classify import Predictor, accelerator_available
from vidbatch.stages import split
from vidbatch.stages.decode import DecodeSpec
from vidbatch.stages.decode_job import (
    Chunk,
    DecodeEvent,
    DecodeJob,
    Failed,
    Finished,
    Started,
)


STREAM_BATCHES_PER_LANE = 4


def decode_jobs(tasks: Iterable[VideoTask], spec: DecodeSpec, config: LabelConfig,
                on_job: Callable[[DecodeJob], Any] | None = None,
                parts_for: Callable[[DecodeJob], int] | None = None) -> Iterator[DecodeJob]:
    """Decode jobs, made when the decoder pool asks for them (`on_job` sees each video's first as it is made): one
    per task, or with `parts_for`, that many per long video (`stages.split`), its parts one after the other."""
    storage_options = dict(config.storage_options)
    for t in tasks:
        job = DecodeJob(key=t.key, video_id=t.video_id, uri=t.uri, location=t.location, spec=spec,
                        storage_options=storage_options)
        parts = parts_for(job) if parts_for is not None else 1
        if on_job is not None:
            on_job(job)
        if parts == 1:
            yield job
            continue
        for part in range(parts):
            yield dataclasses.replace(job, part=part, parts=parts)


class LocalEngine(Engine):
    def __init__(self, config: LabelConfig, bundle: ModelBundle, output: RunOutput, on_worker_event=None) -> None:
        super().__init__(config, bundle, output)
        self.pool = DecodePool(config.workers(), config.video_timeout, on_worker_event=on_worker_event,
                               slot_bytes=self.spec.chunk_nbytes)
        # chunks waiting for inference: (video key, frames, {frame_index, timestamp_s, shot_cut})
        self._pending: list[tuple[str, np.ndarray, dict[str, np.ndarray]]] = []
        self._pending_items = 0
        self._in_flight: dict[str, int] = {}
        self._decoded: set[str] = set()
        self._parts: dict[str, list[int]] = {}
        """Videos split between decoders: key -> [parts, parts finished]."""
        self._split_off: str | None = None
        self._split = {"videos": 0, "parts": 0, "one_pass": 0}
        """Videos split, their parts, and those of them decoded in one pass after all (not seekable exactly)."""
        self._running = None  # the flush being classified: (result or future, pieces, items)
        self._inference = ThreadPoolExecutor(1, thread_name_prefix="vidbatch-inference")

    def run(self, tasks: Sequence[VideoTask]) -> dict:
        """Label `tasks`; returns the stage counters and the layout chosen, for run.json."""
        on_accelerator = accelerator_available()
        self.streaming = bool(getattr(self.bundle.encoder, "stateful", False))
        self.pool.workers = self._workers(on_accelerator)
        self._split_off = split.unsplittable(self.spec, self.streaming)
        # decoders start up while the inference model is built (every decoder when one long video may need them all)
        self.pool.start(None if self._split_off is None else len(tasks))
        try:
            self._predictor = Predictor(self.bundle, self.config.batch_size, precision=self.config.precision,
                                        embeddings=self.config.embeddings, reset_every=self.config.reset_every(),
                                        model_probs=bool(self.config.model_top_k))
            model_items_per_s = self._predictor.warm_up()
        except BaseException:
            self.pool.close()
            raise
        # a model cheap enough on the CPU leaves every CPU to decoding (the pool tops itself up when it runs)
        self.pool.workers = self._workers(on_accelerator, model_items_per_s)
        # the CPUs shared out among the decoders (FFmpeg would give each a thread per CPU)
        self.spec = dataclasses.replace(self.spec, threads=decoder_threads(self.pool.workers))
        progress = Progress(len(tasks), self.config.progress, self.counters)
        self.collector = VideoCollector((), self.bundle, self.config, self.output, self.counters, progress)
        try:
            # a video is held from when its job is made (on the pool's receiver thread) until it is committed
            jobs = decode_jobs(tasks, self.spec, self.config, on_job=self.collector.open,
                               parts_for=self._parts_for if self._split_off is None else None)
            events = self.pool.run(jobs, idle_s=0.02, videos=len(tasks) if self._split_off else None)
            with contextlib.closing(events):
                for event in events:
                    if event is None:
                        self._flush(full_batches_only=False)
                        continue
                    self._handle(event)
            self._flush(full_batches_only=False)
            self._collect()
            self.collector.finish_missing("internal: the decoder finished without a result for this video")
        finally:
            try:
                self._inference.shutdown(wait=True, cancel_futures=True)
                self.collector.close()  # every finished video is committed, even after an error or Ctrl-C
            finally:
                progress.close()
        layout = {"decode_workers": self.pool.workers, "decoder_threads": self.spec.threads, "inference_device": "accelerator" if on_accelerator else "cpu",
                  "precision": self.config.precision, "batch_size": self.config.batch_size,
                  "model_items_per_s_at_start": round(model_items_per_s, 1)}
        layout["split_long_videos"] = {**self._split, "off": self._split_off}
        if self.streaming:
            layout["streaming"] = {"lanes": self._predictor.encoder.lanes,
                                   "reset_every_frames": self._predictor.encoder.reset.period or None}
        if self._predictor.encoder is not None:  # a clip's frames shared with the one before are encoded once
            layout["encoder"] = {"runtime": self._predictor.encoder.runtime,
                                 "frames_encoded": self._predictor.frames_encoded,
                                 "encode_s": round(self._predictor.encode_s, 3)}
        return {**self.counters.as_dict(), "engine": "local", "layout": layout}

    def _workers(self, on_accelerator: bool, model_items_per_s: float | None = None) -> int:
        """Decoder processes. A streaming model runs one lane per CPU, each on another video's frames in order:
        it needs at least as many videos decoding at once as it has lanes (decoders wait when ahead)."""
        if self.streaming and self.config.decode_workers is None:
            return max(self.config.workers(inference_on_cpu=False), getattr(self.bundle.encoder, "lanes", 1))
        return self.config.workers(inference_on_cpu=not on_accelerator, model_items_per_s=model_items_per_s)

    def _parts_for(self, job: DecodeJob) -> int:
        """Decoders for one video (on the pool's receiver thread, as it asks for work): see `stages.split`."""
        parts = split.parts_for(job.location, self.pool.workers, job.storage_options)
        if parts > 1:
            self._parts[job.key] = [parts, 0]
            self._split["videos"] += 1
            self._split["parts"] += parts
        return parts

    def _flush_size(self) -> int:
        """Items that make a flush: a batch, or for a streaming model `STREAM_BATCHES_PER_LANE` batches per lane,
        so that each flush holds many more videos than lanes and they finish together (videos are run whole, one
        lane each, longest first)."""
        lanes = getattr(self.bundle.encoder, "lanes", 1) if self.streaming else 1
        return self.config.batch_size * (lanes * STREAM_BATCHES_PER_LANE if self.streaming else 1)

    def _handle(self, event: DecodeEvent) -> None:
        state = self.collector.videos.get(event.key)
        if state is None or state.closed:  # finished already (no event follows a terminal one, but be safe)
            return
        parts = self._parts.get(event.key)
        if isinstance(event, Started):
            state.info = split.merge_part_info(state.info, event.info) if parts else event.info
        elif isinstance(event, Chunk):
            count = len(event)
            self._pending.append((event.key, event.arrays["frames"],
                                  {name: event.arrays[name] for name in COLUMNS + OPTIONAL_COLUMNS if name in event.arrays}))
            self._pending_items += count
            self._in_flight[event.key] = self._in_flight.get(event.key, 0) + count
            if self._pending_items >= self._flush_size():
                self._flush(full_batches_only=not self.streaming)
        elif isinstance(event, Finished):
            if parts:  # a part of a long video: the video is decoded when its last part is
                state.info = split.merge_part_info(state.info, event.info)
                parts[1] += 1
                if parts[1] < parts[0]:
                    return
                del self._parts[event.key]
                if split.ONE_PASS_NOTE in (state.info.get("note") or ""):
                    self._split["one_pass"] += 1
            else:
                state.info = event.info
            self._decoded.add(event.key)
            self._maybe_finish(state)
        elif isinstance(event, Failed):
            self._parts.pop(event.key, None)  # one part failing fails the video; the others' events are dropped
            self._drop_pending(event.key)
            self.collector.finish_failed(state, event.message, event.info)

    def _flush(self, full_batches_only: bool) -> None:
        batch = self.config.batch_size
        take = (self._pending_items // batch) * batch if full_batches_only else self._pending_items
        if take == 0:
            return
        pieces, taken = [], 0
        while taken < take:
            key, frames, columns = self._pending[0]
            need = take - taken
            if len(frames) <= need:
                self._pending.pop(0)
                pieces.append((key, frames, columns))
                taken += len(frames)
            else:
                pieces.append((key, frames[:need], {n: v[:need] for n, v in columns.items()}))
                self._pending[0] = (key, frames[need:], {n: v[need:] for n, v in columns.items()})
                taken += need
        self._pending_items -= taken
        keys = cuts = None
        if self.streaming:  # each video's state is carried across its pieces, in order
            keys = [key for key, frames, _ in pieces for _ in range(len(frames))]
            cuts = np.concatenate([columns["shot_cut"] for _, _, columns in pieces])
        items = np.concatenate([p[1] for p in pieces])
        self._collect()  # the flush before this one (a streaming model's videos continue in order)
        if self.streaming:
            # the lanes classify while this thread takes the decoders' next chunks and finishes videos
            self._running = (self._inference.submit(self._predict, items, keys, cuts), pieces, taken)
        else:
            self._running = (self._predict(items, keys, cuts), pieces, taken)
            self._collect()

    def _predict(self, items: np.ndarray, keys, cuts) -> dict:
        started = time.monotonic()
        result = self._predictor.predict_all(items, keys, cuts)
        self.counters.inference_s += time.monotonic() - started
        return result

    def _collect(self) -> None:
        """Hand the last flush's probabilities to their videos, and finish the videos they complete."""
        if self._running is None:
            return
        result, pieces, taken = self._running
        self._running = None
        if not isinstance(result, dict):
            result = result.result()
        probs = result["probs"]
        extra = {name: result[name] for name in ("embedding", "model_probs") if result.get(name) is not None}
        self.counters.inference_batches += -(-taken // self.config.batch_size)
        self.counters.classified(taken)
        offset, touched = 0, []
        for key, frames, columns in pieces:
            state = self.collector.videos.get(key)
            if state is None or state.closed:  # it failed while its frames were being classified
                offset += len(frames)
                continue
            if extra:
                columns = {**columns, **{name: values[offset : offset + len(frames)] for name, values in extra.items()}}
            state.add(probs[offset : offset + len(frames)], columns)
            self._in_flight[key] -= len(frames)
            offset += len(frames)
            touched.append(state)
        for state in touched:
            self._maybe_finish(state)

    def _maybe_finish(self, state: VideoState) -> None:
        key = state.task.key
        if key in self._decoded and not self._in_flight.get(key):
            self._predictor.forget([key])
            self.collector.finish_ok(state)
            self._decoded.discard(key)
            self._in_flight.pop(key, None)

    def _drop_pending(self, key: str) -> None:
        self._collect()  # its frames may be in the flush being classified: let it finish, then forget the state
        self._predictor.forget([key])
        self._pending_items -= sum(len(p[1]) for p in self._pending if p[0] == key)
        self._pending = [p for p in self._pending if p[0] != key]
        self._in_flight.pop(key, None)
        self._decoded.discard(key)

