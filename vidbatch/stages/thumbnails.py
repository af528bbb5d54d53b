"""Small JPEGs of what each segment was labeled from (`--thumbnails`), so a reviewer sees it.

The decoder keeps a thumbnail of every sampled frame, at most one every `EVERY_S` seconds (at the usual
sampling rates, 1-4 fps, that is every sampled frame; memory stays bounded: a 3-hour video keeps at most about
43,000 of about 5 KB); assembly picks, for each segment, the kept frame nearest the segment's middle. Every
segment gets one: the short ones, a flash or a label that holds for one sampled frame, are what a reviewer most
needs to see. Only above 4 fps can a segment hold no kept frame; it then gets the kept frame nearest it.
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

WIDTH = 160
EVERY_S = 0.25
QUALITY = 75


def encode(bgr: np.ndarray, width: int = WIDTH) -> bytes:
    height = max(1, round(bgr.shape[0] * width / max(1, bgr.shape[1])))
    small = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA) if bgr.shape[1] > width else bgr
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    return data.tobytes() if ok else b""


def per_segment(video_id: str, segments: Sequence[dict[str, Any]], timestamp_s: np.ndarray,
                thumbs: np.ndarray) -> list[dict[str, Any]]:
    """For each segment, the kept thumbnail nearest its middle: one inside the segment when there is one, else the
    kept one nearest the segment (every segment gets a thumbnail when any frame was kept)."""
    kept = np.flatnonzero(np.array([len(t) > 0 for t in thumbs], bool))
    rows = []
    if not len(kept):
        return rows
    stamps = timestamp_s[kept]
    for segment in segments:
        start, end = segment["start_s"], max(segment["end_s"], segment["start_s"] + 1e-9)
        inside = (stamps >= start) & (stamps < end)
        middle = (start + segment["end_s"]) / 2
        pool = np.flatnonzero(inside) if inside.any() else np.arange(len(kept))
        best = kept[pool[np.argmin(np.abs(stamps[pool] - middle))]]
        rows.append({"video_id": video_id, "segment_index": segment["segment_index"],
                     "timestamp_s": float(timestamp_s[best]), "jpeg": bytes(thumbs[best])})
    return rows
