"""Rolling prediction averaging (the Keras tutorial's anti-flicker trick), vectorised.

The tutorial keeps a deque of the last K probability vectors and labels each
frame with the argmax of their mean. `rolling_average` computes exactly that
for a whole video at once with a cumulative sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def rolling_average(probs: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` rows (fewer at the start), row by row: causal, like the tutorial's deque."""
    if window < 1:
        raise ValueError(f"rolling_average: window must be >= 1. Received: window={window}")
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return probs.astype(np.float32)
    cumulative = np.cumsum(probs, axis=0)
    shifted = np.zeros_like(cumulative)
    if len(probs) > window:
        shifted[window:] = cumulative[:-window]
    counts = np.minimum(np.arange(1, len(probs) + 1), window)[:, None]
    return ((cumulative - shifted) / counts).astype(np.float32)


class RollingAverage:
    """`rolling_average` over a stream that arrives in batches, for callers that cannot hold a whole video
    (`vidbatch annotate` writes each frame as soon as it is labeled). It keeps the last `window - 1` rows."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"RollingAverage: window must be >= 1. Received: window={window}")
        self.window = window
        self._tail: np.ndarray | None = None

    def update(self, probs: np.ndarray) -> np.ndarray:
        """The smoothed rows for `probs`, the stream's next rows: equal to `rolling_average` over the whole stream."""
        probs = np.asarray(probs, dtype=np.float32)
        joined = probs if self._tail is None else np.concatenate([self._tail, probs])
        smoothed = rolling_average(joined, self.window)[len(joined) - len(probs):]
        self._tail = joined[max(0, len(joined) - (self.window - 1)):] if self.window > 1 else joined[:0]
        return smoothed


@dataclass(frozen=True)
class FrameLabels:
    """Raw and smoothed labels (class indices) and scores for every classified item of one video."""

    raw_index: np.ndarray
    raw_score: np.ndarray
    smoothed_index: np.ndarray
    smoothed_score: np.ndarray
    smoothed_probs: np.ndarray


def label_frames(probs: np.ndarray, window: int, resets: np.ndarray | None = None) -> FrameLabels:
    """Label each item raw (argmax) and smoothed (argmax of the rolling mean).

    `resets` (optional, bool per item) starts a fresh window at that item, so a
    label never bleeds across a shot cut.
    """
    probs = np.asarray(probs, dtype=np.float32)
    if resets is None or not np.any(resets):
        smoothed = rolling_average(probs, window)
    else:
        starts = np.flatnonzero(np.asarray(resets, dtype=bool))
        bounds = np.unique(np.concatenate([[0], starts, [len(probs)]]))
        smoothed = np.concatenate([rolling_average(probs[a:b], window) for a, b in zip(bounds[:-1], bounds[1:])])
    raw_index = probs.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    smoothed_index = smoothed.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    rows = np.arange(len(probs))
    return FrameLabels(
        raw_index=raw_index.astype(np.int32),
        raw_score=probs[rows, raw_index].astype(np.float32),
        smoothed_index=smoothed_index.astype(np.int32),
        smoothed_score=smoothed[rows, smoothed_index].astype(np.float32),
        smoothed_probs=smoothed,
    )


def video_top_k(probs: np.ndarray, k: int, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The video-level label: mean probability over all items (weighted by `weights`: a streaming model's
    items by how many frames their state has seen, `ResetRule.context`), best `k` classes first."""
    mean = weighted_mean(probs, weights)
    order = np.argsort(-mean, kind="stable")[: max(1, k)]
    return order, mean[order].astype(np.float32)


def weighted_mean(probs: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Items' mean probabilities (float64), each item counted `weights[i]` times (None: once)."""
    probs = np.asarray(probs, dtype=np.float64)
    if weights is None:
        return probs.mean(axis=0)
    weights = np.asarray(weights, dtype=np.float64)
    return (weights[:, None] * probs).sum(axis=0) / weights.sum()


def count_switches(labels: np.ndarray) -> int:
    """How often consecutive labels differ: the flicker measure."""
    labels = np.asarray(labels)
    return int(np.count_nonzero(labels[1:] != labels[:-1])) if len(labels) > 1 else 0
