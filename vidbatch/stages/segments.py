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


def find_segments(labels: np.ndarray, scores: np.ndarray, timestamps: np.ndarray, end_s: float) -> list[Segment]:
    """Split a video into segments.

    A segment starts at its first item's timestamp and ends where the next one
    starts (the last ends at `end_s`, the video's duration); its score is the
    mean smoothed score of its items.
    """
    labels = np.asarray(labels)
    if len(labels) == 0:
        return []
    starts = np.concatenate([[0], np.flatnonzero(labels[1:] != labels[:-1]) + 1])
    stops = np.concatenate([starts[1:], [len(labels)]])
    segments = []
    for i, (a, b) in enumerate(zip(starts, stops)):
        end = float(timestamps[b]) if b < len(labels) else max(float(end_s), float(timestamps[-1]))
        segments.append(
            Segment(
                index=i,
                start_s=float(timestamps[a]),
                end_s=end,
                label_index=int(labels[a]),
                score=float(np.mean(scores[a:b])),
            )
        )
    return segments
