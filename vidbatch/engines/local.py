"""The local engine: decoder processes feed batched inference in this process.

Decoding (worker processes, streaming chunks) overlaps inference (main
thread); frames of different videos share inference batches; each video is
smoothed, assembled and committed as soon as its last frame is classified.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from vidbatch.config import LabelConfig
from vidbatch.engines.decode_pool import DecodePool
from vidbatch.engines.decode_worker import DecodeJob
from vidbatch.model.bundle import ModelBundle
from vidbatch.progress import Progress, StageCounters
from vidbatch.stages.assemble import LabelingOptions, assemble_failed, assemble_ok
from vidbatch.stages.classify import Predictor
from vidbatch.stages.decode import DecodeSpec
from vidbatch.stages.manifest import VideoTask
from vidbatch.stages.write import RunOutput


@dataclass
class _VideoState:
    task: VideoTask
    started: float = field(default_factory=time.monotonic)
    info: dict[str, Any] = field(default_factory=dict)
    probs: list[np.ndarray] = field(default_factory=list)
    frame_index: list[np.ndarray] = field(default_factory=list)
    timestamp_s: list[np.ndarray] = field(default_factory=list)
    shot_cut: list[np.ndarray] = field(default_factory=list)
    in_flight: int = 0
    decoded: bool = False
    closed: bool = False


def decode_jobs(tasks: Sequence[VideoTask], spec: DecodeSpec, config: LabelConfig) -> list[DecodeJob]:
    return [
        DecodeJob(
            key=t.key, video_id=t.video_id, uri=t.uri, location=t.location, spec=spec,
            storage_options=dict(config.storage_options),
        )
        for t in tasks
    ]


class LocalEngine:
    def __init__(self, config: LabelConfig, bundle: ModelBundle, output: RunOutput, spec: DecodeSpec,
                 options: LabelingOptions, on_worker_event=None) -> None:
        self.config = config
        self.bundle = bundle
        self.output = output
        self.spec = spec
        self.options = options
        self.counters = StageCounters()
        self.pool = DecodePool(config.workers, config.video_timeout, on_worker_event=on_worker_event)
        self._pending: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_items = 0

    def run(self, tasks: Sequence[VideoTask]) -> StageCounters:
        predictor = Predictor(self.bundle, self.config.batch_size)
        self._predictor = predictor
        self._states = {t.key: _VideoState(t) for t in tasks}
        self._progress = Progress(len(tasks), self.config.progress, self.counters)
        batch = self.config.batch_size
        try:
            events = self.pool.run(decode_jobs(tasks, self.spec, self.config), idle_s=0.02)
            with contextlib.closing(events):
                for event in events:
                    if event is None:
                        self._flush(full_batches_only=False)
                        continue
                    key, kind, *rest = event
                    state = self._states[key]
                    if state.closed:
                        continue
                    if kind == "info":
                        state.info = rest[0]
                    elif kind == "chunk":
                        chunk = rest[0]
                        count = len(chunk["frames"])
                        self._pending.append(
                            (key, chunk["frames"], chunk["frame_index"], chunk["timestamp_s"], chunk["shot_cut"]))
                        self._pending_items += count
                        state.in_flight += count
                        if self._pending_items >= batch:
                            self._flush(full_batches_only=True)
                    elif kind == "done":
                        state.info = rest[0]
                        state.decoded = True
                        self._maybe_finish(state)
                    elif kind == "failed":
                        self._fail(state, rest[0], rest[1] if len(rest) > 1 else {})
            self._flush(full_batches_only=False)
            for state in self._states.values():  # nothing may go missing, whatever happened
                if not state.closed:
                    self._fail(state, "internal: the decoder finished without a result for this video", state.info)
        finally:
            self._progress.close()
        return self.counters

    def _flush(self, full_batches_only: bool) -> None:
        batch = self.config.batch_size
        take = (self._pending_items // batch) * batch if full_batches_only else self._pending_items
        if take == 0:
            return
        pieces, taken = [], 0
        while taken < take:
            piece = self._pending[0]
            need = take - taken
            if len(piece[1]) <= need:
                self._pending.pop(0)
                pieces.append(piece)
                taken += len(piece[1])
            else:
                pieces.append((piece[0], *(column[:need] for column in piece[1:])))
                self._pending[0] = (piece[0], *(column[need:] for column in piece[1:]))
                taken += need
        self._pending_items -= taken
        started = time.monotonic()
        probs = self._predictor.predict(np.concatenate([p[1] for p in pieces]))
        self.counters.inference_s += time.monotonic() - started
        self.counters.inference_batches += -(-taken // batch)
        self.counters.items_classified += taken
        offset = 0
        touched = []
        for key, frames, index, stamps, cuts in pieces:
            state = self._states[key]
            count = len(frames)
            state.probs.append(probs[offset : offset + count])
            state.frame_index.append(index)
            state.timestamp_s.append(stamps)
            state.shot_cut.append(cuts)
            state.in_flight -= count
            offset += count
            touched.append(state)
        for state in touched:
            self._maybe_finish(state)

    def _maybe_finish(self, state: _VideoState) -> None:
        if state.closed or not state.decoded or state.in_flight:
            return
        if not state.probs:
            self._fail(state, "no frames: nothing was sampled from this video", state.info)
            return
        task = state.task
        outcome = assemble_ok(
            task.video_id, task.key, self.bundle.classes,
            np.concatenate(state.frame_index), np.concatenate(state.timestamp_s), np.concatenate(state.probs),
            state.info, self.options, time.monotonic() - state.started, shot_cut=np.concatenate(state.shot_cut),
        )
        self._commit(state, outcome)
        self.counters.videos_ok += 1

    def _fail(self, state: _VideoState, message: str, info: dict[str, Any]) -> None:
        if state.closed:
            return
        if state.in_flight:
            kept = [p for p in self._pending if p[0] != state.task.key]
            self._pending_items -= sum(len(p[1]) for p in self._pending if p[0] == state.task.key)
            self._pending = kept
            state.in_flight = 0
        task = state.task
        outcome = assemble_failed(task.video_id, task.key, message, info or state.info, self.options,
                                  time.monotonic() - state.started)
        self._commit(state, outcome)
        self.counters.videos_failed += 1

    def _commit(self, state: _VideoState, outcome) -> None:
        started = time.monotonic()
        self.output.commit(outcome)
        self.counters.write_s += time.monotonic() - started
        self.counters.frames_decoded += int(outcome.record.get("frames_decoded") or 0)
        state.closed = True
        state.probs, state.frame_index, state.timestamp_s, state.shot_cut = [], [], [], []
        self._progress.video_done()
