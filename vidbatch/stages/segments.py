"""Segments: runs of consecutive items with the same smoothed label (like cloud video APIs' segment labels)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Segment:
    index: int
    start_s: float
    end_s: float
    label_index: int
    score: float


def runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop (exclusive) of each run of equal consecutive keys."""
    keys = np.asarray(keys)
    if len(keys) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.flatnonzero(keys[1:] != keys[:-1]) + 1])
    return starts, np.concatenate([starts[1:], [len(keys)]])


def find_segments(labels: np.ndarray, scores: np.ndarray, timestamps: np.ndarray, end_s: float) -> list[Segment]:
    """Split a video into segments.

    A segment starts at its first item's timestamp and ends where the next one
    starts (the last ends at `end_s`, the video's duration); its score is the
    mean smoothed score of its items.
    """
    labels = np.asarray(labels)
    if len(labels) == 0:
        return []
    starts, stops = runs(labels)
    segments = []
    for i, (a, b) in enumerate(zip(starts, stops)):
        end = float(timestamps[b]) if b < len(labels) else max(float(end_s), float(timestamps[-1]))
        segments.append(
            Segment(
                index=i,
                start_s=float(timestamps[a]),
                end_s=end,
                label_index=int(labels[a]),
                score=float(np.mean(scores[a:b], dtype=np.float64)),
            )
        )
    return segments
