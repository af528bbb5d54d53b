"""Which frames to keep: value objects for frame and clip sampling."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vidbatch.core.errors import ConfigError


@dataclass(frozen=True)
class FrameSampling:
    """Keep about `fps` frames per second of video; `fps=0` keeps every frame.

    A frame is kept when its timestamp enters a new 1/fps bucket, so sampling is
    driven by the true timestamps (variable frame rate included) and needs only
    sequential `grab()` calls, never a seek.
    """

    fps: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.fps, (int, float)) and math.isfinite(self.fps) and self.fps >= 0):
            raise ConfigError(f"Invalid `fps`: expected a finite number >= 0. Received: fps={self.fps!r}")

    def sampler(self) -> "_Sampler":
        return _Sampler(self.fps)


@dataclass(frozen=True)
class KeyframeSampling:
    """Keep only the key frames (`--sampling keyframes`): the decoder skips every other frame without decoding
    it, which makes coarse labeling of a huge archive several times faster. How many there are is up to the
    encoder (often one every 2-10 s, sometimes one per video), so few-keyframe videos are counted and reported."""

    min_keyframes: int = 3
    """Videos with fewer key frames than this are reported: their labels rest on very few frames."""


class _Sampler:
    def __init__(self, fps: float) -> None:
        self._fps = fps
        self._last_bucket = -math.inf

    def keep(self, timestamp_s: float) -> bool:
        if self._fps == 0:
            return True
        bucket = math.floor(timestamp_s * self._fps + 1e-6)
        if bucket > self._last_bucket:
            self._last_bucket = bucket
            return True
        return False


@dataclass(frozen=True)
class ClipSampling:
    """Clips of `clip_len` consecutive sampled frames, a new one every `stride` frames.

    A clip is stamped with its last frame, so a clip label is, like the rolling
    average, causal: it uses only frames up to that moment.
    """

    clip_len: int
    stride: int

    def __post_init__(self) -> None:
        for name in ("clip_len", "stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"Invalid `{name}`: expected an integer >= 1. Received: {name}={value!r}")


class ClipAssembler:
    """Turns a stream of sampled frames into clips; keeps only `clip_len` frames in memory."""

    def __init__(self, sampling: ClipSampling) -> None:
        self.sampling = sampling
        self._frames: list[np.ndarray] = []
        self._since_last = 0
        self._emitted = 0

    def push(self, frame: np.ndarray) -> np.ndarray | None:
        self._frames.append(frame)
        if len(self._frames) > self.sampling.clip_len:
            self._frames.pop(0)
        self._since_last += 1
        full = len(self._frames) == self.sampling.clip_len
        if full and (self._emitted == 0 or self._since_last >= self.sampling.stride):
            self._since_last = 0
            self._emitted += 1
            return np.stack(self._frames)
        return None
