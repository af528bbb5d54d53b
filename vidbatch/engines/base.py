"""What every engine is given (`Engine`), and the local engine's per-video collection and commit.

The local engine feeds classified items of each video in any order;
`VideoCollector` keeps them, and once a video is complete turns it into its
output rows (`assemble`) and commits it in batches (`BatchCommitter`). The Ray
engine runs the same `assemble` and `RunOutput.commit_batch` on its workers
(`ray_engine.CommitSink`), so both engines finish videos through the same code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from vidbatch.core.config import LabelConfig
from vidbatch.engines.progress import Progress, StageCounters
from vidbatch.io.manifest import VideoTask
from vidbatch.io.output import BatchCommitter, RunOutput, VideoOutcome
from vidbatch.io.ranges import NO_FRAMES
from vidbatch.model.spec import ModelBundle
from vidbatch.stages.assemble import assemble_failed, assemble_ok
from vidbatch.stages.decode import DecodeSpec

COLUMNS = ("frame_index", "timestamp_s", "shot_cut")
"""What travels with each classified item besides its probabilities; with `--thumbnails`, also `thumb`, and with
`--embeddings`, `embedding`, and with `--model-top-k`, `model_probs` (from the classify stage)."""
OPTIONAL_COLUMNS = ("thumb", "embedding", "model_probs")


@dataclass
class VideoState:
    task: VideoTask
    started: float = field(default_factory=time.monotonic)
    info: dict[str, Any] = field(default_factory=dict)
    probs: list[np.ndarray] = field(default_factory=list)
    columns: dict[str, list[np.ndarray]] = field(default_factory=lambda: {name: [] for name in COLUMNS})
    closed: bool = False

    def add(self, probs: np.ndarray, columns: dict[str, np.ndarray]) -> None:
        """Keep classified items (in any order: assembly sorts them by frame_index)."""
        self.probs.append(probs)
        for name, values in columns.items():
            self.columns.setdefault(name, []).append(values)


class Engine:
    """What every engine is given: the run's config (the one options object), model and output.

    Subclasses implement `run(tasks) -> dict` (the stage counters and layout for run.json).
    """

    def __init__(self, config: LabelConfig, bundle: ModelBundle, output: RunOutput) -> None:
        self.config = config
        self.bundle = bundle
        self.output = output
        self.spec = DecodeSpec.for_model(bundle.spec, config)
        self.counters = StageCounters()


class VideoCollector:
    """Holds the in-flight videos of a run and finishes each exactly once.

    A video is `open`ed when its decoding is scheduled and forgotten when it is
    finished, so what is held grows with the videos in flight, not with the
    archive. A finished video is assembled here and handed to a
    `BatchCommitter`, which commits videos in batches on its own thread; call
    `close()` at the end (also after an error or an interrupt, so that every
    finished video is kept).
    """

    def __init__(self, tasks: Iterable[VideoTask], bundle: ModelBundle, config: LabelConfig, output: RunOutput,
                 counters: StageCounters, progress: Progress) -> None:
        self.videos: dict[str, VideoState] = {}
        for task in tasks:
            self.open(task)
        self.bundle = bundle
        self.config = config
        self.output = output
        self.counters = counters
        self.progress = progress
        self.committer = BatchCommitter(output, max_videos=config.commit_videos, max_seconds=config.commit_seconds)

    def open(self, task: VideoTask) -> VideoState:
        """Start holding a video (anything with its `key` and `video_id`, such as its decode job)."""
        state = self.videos[task.key] = VideoState(task)
        return state

    def finish_ok(self, state: VideoState) -> None:
        if state.closed:
            return
        if not state.probs:
            self.finish_failed(state, NO_FRAMES, state.info)
            return
        task = state.task
        columns = {name: np.concatenate(values) for name, values in state.columns.items()}
        outcome = assemble_ok(
            task.video_id, task.key, self.bundle.classes, columns["frame_index"], columns["timestamp_s"],
            np.concatenate(state.probs), state.info, self.config, self.bundle.display_name, time.monotonic() - state.started,
            shot_cut=columns["shot_cut"], thumbs=columns.get("thumb"), embeddings=columns.get("embedding"),
            model_probs=columns.get("model_probs"), model_classes=self.bundle.spec.classes,
        )
        self._commit(state, outcome)
        self.counters.videos_ok += 1

    def finish_failed(self, state: VideoState, message: str, info: dict[str, Any] | None = None) -> None:
        if state.closed:
            return
        task = state.task
        outcome = assemble_failed(task.video_id, task.key, message, info or state.info, self.bundle.display_name,
                                  time.monotonic() - state.started)
        self._commit(state, outcome)
        self.counters.videos_failed += 1

    def finish_missing(self, message: str) -> None:
        """Whatever happened, every video gets a row."""
        for state in list(self.videos.values()):
            if not state.closed:
                self.finish_failed(state, message)

    def close(self) -> None:
        """Commit every finished video and wait for the writes (raises a write error)."""
        try:
            self.committer.close()
        finally:
            self.counters.write_s = self.committer.write_s
            self.counters.commits = self.committer.batches

    def _commit(self, state: VideoState, outcome: VideoOutcome) -> None:
        self.committer.add(outcome)
        self.counters.frames_decoded += int(outcome.record.get("frames_decoded") or 0)
        if state.info.get("flow_s"):  # two-stream models: what the flow cost the decoders
            self.counters.flow_s += float(state.info["flow_s"])
            self.counters.flow_frames += int(state.info.get("frames_sampled") or 0)
        state.closed = True
        state.probs, state.columns = [], {name: [] for name in COLUMNS}
        self.videos.pop(state.task.key, None)
        self.progress.video_done()
