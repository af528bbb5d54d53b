"""Small JPEGs of what each segment was labeled from (`--thumbnails`), so a reviewer sees it.

The decoder keeps a thumbnail of a sampled frame at most every `EVERY_S`
seconds (small, so memory stays flat: a 3-hour video keeps about 10,000 of
about 5 KB); assembly picks, for each segment, the kept frame nearest the
segment's middle.
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

WIDTH = 160
EVERY_S = 1.0
QUALITY = 75


def encode(bgr: np.ndarray, width: int = WIDTH) -> bytes:
    height = max(1, round(bgr.shape[0] * width / max(1, bgr.shape[1])))
    small = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA) if bgr.shape[1] > width else bgr
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    return data.tobytes() if ok else b""


def per_segment(video_id: str, segments: Sequence[dict[str, Any]], timestamp_s: np.ndarray,
                thumbs: np.ndarray) -> list[dict[str, Any]]:
    """For each segment, the kept thumbnail nearest its middle (segments without one get none)."""
    kept = np.array([len(t) > 0 for t in thumbs], bool)
    rows = []
    for segment in segments:
        inside = kept & (timestamp_s >= segment["start_s"]) & (timestamp_s < max(segment["end_s"], segment["start_s"] + 1e-9))
        if not inside.any():
            continue
        candidates = np.flatnonzero(inside)
        middle = (segment["start_s"] + segment["end_s"]) / 2
        best = candidates[np.argmin(np.abs(timestamp_s[candidates] - middle))]
        rows.append({"video_id": video_id, "segment_index": segment["segment_index"],
                     "timestamp_s": float(timestamp_s[best]), "jpeg": bytes(thumbs[best])})
    return rows
