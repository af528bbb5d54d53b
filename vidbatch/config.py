"""Run configuration: one frozen, validated value that every engine reads."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from vidbatch.errors import ConfigError

DEFAULT_FPS = 2.0
"""Frames sampled per second of video; 0 means every frame. Archive labeling usually samples 1-2 fps (cloud
video APIs label frames at about 1 fps): every sampled frame costs a model call, every skipped one only a
decode. Raise it for finer segment boundaries."""

DEFAULT_WINDOW = 8
"""Rolling-average window in sampled frames: 4 s at the default rate, like the tutorial's 128 frames at ~30 fps."""

DEFAULT_TOP_K = 3
DEFAULT_BATCH_SIZE = 32
DEFAULT_CHUNK_FRAMES = 32
DEFAULT_VIDEO_TIMEOUT_S = 300.0
DEFAULT_SHOT_THRESHOLD = 0.3

ENGINES = ("local", "ray")
PRECISIONS = ("float32", "bfloat16", "float16")
"""Inference precision: float32, or Keras mixed precision (weights stay float32, compute in 16 bits, the model's
output layers in float32 so probabilities keep their resolution). 16 bits pays off on GPUs with tensor cores."""


def _fail(name: str, value: Any, expected: str) -> None:
    raise ConfigError(f"Invalid `{name}`: expected {expected}. Received: {name}={value!r}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(name, value, f"an integer >= {minimum}")


def _check_positive_number(name: str, value: Any, allow_zero: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        _fail(name, value, "a finite number " + (">= 0" if allow_zero else "> 0"))


def default_decode_workers(inference_on_cpu: bool = True) -> int:
    """One decoder per CPU this process may use, less one when inference needs a CPU too.

    Measured on 2 CPUs, every frame: with MobileNetV2 on the CPU, 1 decoder
    gave 62-67 frames/s and 2 gave 50-60 (they take cores from the model); with
    inference that costs the CPU ~nothing (an accelerator's case), 2 decoders
    gave 427 frames/s and 1 gave 300.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus - 1) if inference_on_cpu else max(1, cpus)


@dataclass(frozen=True)
class RayOptions:
    """Where the Ray engine schedules its stages; ignored by the local engine."""

    address: str | None = None
    """Ray cluster address; None starts (and stops) a local Ray instance."""
    decode_cpus: float = 1.0
    """CPUs reserved by each decode task."""
    inference_actors: int | None = None
    """Size of the inference actor pool; None = one per GPU, or 1 without GPUs."""
    inference_gpus: float | None = None
    """GPUs per inference actor (fractional allowed); None = 1 if the cluster has GPUs, else 0."""
    inference_cpus: float = 1.0
    max_decode_in_flight: int | None = None
    """Decode actors running at once; None = the cluster's CPUs (less those inference takes)."""
    object_store_memory: float | None = None
    """Bytes of object store the pipeline may fill before backpressure; None = Ray Data's default share."""

    def __post_init__(self) -> None:
        _check_positive_number("ray.decode_cpus", self.decode_cpus, allow_zero=False)
        _check_positive_number("ray.inference_cpus", self.inference_cpus, allow_zero=True)
        if self.inference_actors is not None:
            _check_int("ray.inference_actors", self.inference_actors, 1)
        if self.inference_gpus is not None:
            _check_positive_number("ray.inference_gpus", self.inference_gpus, allow_zero=True)
        if self.max_decode_in_flight is not None:
            _check_int("ray.max_decode_in_flight", self.max_decode_in_flight, 1)
        if self.object_store_memory is not None:
            _check_positive_number("ray.object_store_memory", self.object_store_memory, allow_zero=False)


@dataclass(frozen=True)
class LabelConfig:
    """Everything a labeling run needs; validated on construction."""

    manifest: str
    model: str
    out: str
    fps: float = DEFAULT_FPS
    window: int = DEFAULT_WINDOW
    top_k: int = DEFAULT_TOP_K
    batch_size: int = DEFAULT_BATCH_SIZE
    precision: str = "float32"
    """Inference precision: float32, or bfloat16/float16 (Keras mixed precision; for GPUs with tensor cores)."""
    clip_stride: int | None = None
    """For clip models: sampled frames between clip starts; None = the clip length."""
    shot_threshold: float | None = DEFAULT_SHOT_THRESHOLD
    """Hard-cut detection threshold (histogram distance, 0..1); the rolling window restarts at each cut.
    None or 0 turns shot detection off."""
    frame_threshold: float | None = None
    """Frame labels (raw and smoothed) whose score is below this are reported as `unknown_label`."""
    video_threshold: float | None = None
    """Video and shot labels whose score is below this are reported as `unknown_label`."""
    unknown_label: str = "unknown"
    frame_top_k: int = 0
    """Also list the best k smoothed classes of every frame (frames/ column `top_k`); 0 = off."""
    classes: str | None = None
    """A legacy Keras 2 `.h5` model has no sidecar: a file of class names (JSON list or one per line)."""
    engine: str = "local"
    decode_workers: int | None = None
    """Local engine: decoder processes; None = one per CPU available, less one when the model runs on the CPU."""
    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    """Frames a decoder ships at a time; bounds memory per video in flight."""
    video_timeout: float | None = DEFAULT_VIDEO_TIMEOUT_S
    """Seconds a decoder may go without producing frames before its video fails."""
    storage_options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    overwrite: bool = False
    """Start afresh when `out` holds a run with a different configuration."""
    trust_model_code: bool = False
    """Load models whose config holds code (Lambda layers): Keras safe mode off."""
    progress: bool = True
    keep_probs: bool = False
    """Write every item's full probability vector into frames/ (column `probs`)."""
    ray: RayOptions = field(default_factory=RayOptions)

    def __post_init__(self) -> None:
        for name in ("manifest", "model", "out"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                _fail(name, value, "a non-empty path or URL")
        _check_positive_number("fps", self.fps, allow_zero=True)
        _check_int("window", self.window, 1)
        _check_int("top_k", self.top_k, 1)
        _check_int("batch_size", self.batch_size, 1)
        if self.precision not in PRECISIONS:
            _fail("precision", self.precision, f"one of {PRECISIONS}")
        _check_int("chunk_frames", self.chunk_frames, 1)
        if self.clip_stride is not None:
            _check_int("clip_stride", self.clip_stride, 1)
        for name in ("shot_threshold", "frame_threshold", "video_threshold"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1):
                _fail(name, value, "a number between 0 and 1, or None")
        if not isinstance(self.unknown_label, str) or not self.unknown_label:
            _fail("unknown_label", self.unknown_label, "a non-empty string")
        _check_int("frame_top_k", self.frame_top_k, 0)
        if self.engine not in ENGINES:
            _fail("engine", self.engine, f"one of {ENGINES}")
        if self.decode_workers is not None:
            _check_int("decode_workers", self.decode_workers, 1)
        if self.video_timeout is not None:
            _check_positive_number("video_timeout", self.video_timeout, allow_zero=False)
        if not isinstance(self.storage_options, Mapping):
            _fail("storage_options", type(self.storage_options).__name__, "a mapping")
        if not isinstance(self.ray, RayOptions):
            _fail("ray", type(self.ray).__name__, "a RayOptions")

    def workers(self, inference_on_cpu: bool = True) -> int:
        return self.decode_workers or default_decode_workers(inference_on_cpu)

    def answer_fields(self) -> dict[str, Any]:
        """The options that change the labels: a resumed run must match them."""
        return {"fps": float(self.fps), "window": self.window, "top_k": self.top_k, "clip_stride": self.clip_stride,
                "keep_probs": self.keep_probs, "shot_threshold": self.shot_threshold or None,
                "frame_threshold": self.frame_threshold, "video_threshold": self.video_threshold,
                "unknown_label": self.unknown_label, "frame_top_k": self.frame_top_k,
                "precision": self.precision}

    def to_record(self) -> dict[str, Any]:
        """A JSON-safe description for run.json, with credentials left out."""
        from vidbatch.storage import redact

        record = asdict(self)
        record["storage_options"] = redact(self.storage_options)
        return record
