"""Turn one video's decoded-and-classified arrays into its output rows.

Both engines call this, so the local and the Ray engine give the same answers
by construction: same smoothing, same segments, same summary fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from vidbatch.stages.segments import find_segments
from vidbatch.stages.smooth import label_frames, video_top_k

FRAMES_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("frame_index", pa.int64()),
        ("timestamp_s", pa.float64()),
        ("raw_label", pa.string()),
        ("raw_score", pa.float32()),
        ("smoothed_label", pa.string()),
        ("smoothed_score", pa.float32()),
    ]
)


@dataclass(frozen=True)
class LabelingOptions:
    """The options that shape a video's labels."""

    window: int
    top_k: int
    model: str
    """The model's name for the summary's `model` column."""
    keep_probs: bool = False
    """Add each item's full probability vector to the frames table (`probs`), e.g. for `vidbatch eval`."""


@dataclass
class VideoOutcome:
    """One video's result: its summary record (with segments) and, if ok, its frames table."""

    video_id: str
    key: str
    record: dict[str, Any]
    frames: pa.Table | None = None
    segments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.record["status"] == "ok"


def _info_fields(info: dict[str, Any] | None) -> dict[str, Any]:
    info = info or {}

    def number(name: str) -> float | None:
        value = info.get(name)
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    def integer(name: str) -> int | None:
        value = info.get(name)
        return int(value) if isinstance(value, (int, float)) and math.isfinite(value) and value > 0 else None

    return {
        "frames_decoded": int(info.get("frames_decoded") or 0),
        "duration_s": number("duration_s"),
        "fps": number("fps"),
        "width": integer("width"),
        "height": integer("height"),
    }


def assemble_ok(
    video_id: str,
    key: str,
    classes: Sequence[str],
    frame_index: np.ndarray,
    timestamp_s: np.ndarray,
    probs: np.ndarray,
    info: dict[str, Any],
    options: LabelingOptions,
    elapsed_s: float,
    resets: np.ndarray | None = None,
) -> VideoOutcome:
    order = np.argsort(frame_index, kind="stable")
    frame_index, timestamp_s, probs = frame_index[order], timestamp_s[order], probs[order]
    labels = label_frames(probs, options.window, resets=None if resets is None else resets[order])
    names = np.asarray(classes, dtype=object)
    top_index, top_score = video_top_k(probs, options.top_k)
    fields = _info_fields(info)
    end_s = fields["duration_s"] if fields["duration_s"] is not None else float(timestamp_s[-1])
    segments = [
        {
            "video_id": video_id,
            "segment_index": s.index,
            "start_s": s.start_s,
            "end_s": s.end_s,
            "label": str(classes[s.label_index]),
            "score": s.score,
        }
        for s in find_segments(labels.smoothed_index, labels.smoothed_score, timestamp_s, end_s)
    ]
    frames = pa.table(
        {
            "video_id": pa.array([video_id] * len(probs), pa.string()),
            "frame_index": pa.array(frame_index, pa.int64()),
            "timestamp_s": pa.array(timestamp_s, pa.float64()),
            "raw_label": pa.array(names[labels.raw_index].tolist(), pa.string()),
            "raw_score": pa.array(labels.raw_score, pa.float32()),
            "smoothed_label": pa.array(names[labels.smoothed_index].tolist(), pa.string()),
            "smoothed_score": pa.array(labels.smoothed_score, pa.float32()),
        },
        schema=FRAMES_SCHEMA,
    )
    if options.keep_probs:
        frames = frames.append_column("probs", pa.array(list(probs.astype(np.float32)), pa.list_(pa.float32())))
    record = {
        "video_id": video_id,
        "status": "ok",
        "error": None,
        "pred_label": str(classes[top_index[0]]),
        "pred_score": float(top_score[0]),
        "top_k": [{"label": str(classes[i]), "score": float(s)} for i, s in zip(top_index, top_score)],
        **fields,
        "frames_classified": int(len(probs)),
        "model": options.model,
        "elapsed_s": float(elapsed_s),
    }
    return VideoOutcome(video_id=video_id, key=key, record=record, frames=frames, segments=segments)


def assemble_failed(
    video_id: str, key: str, error: str, info: dict[str, Any] | None, options: LabelingOptions, elapsed_s: float
) -> VideoOutcome:
    record = {
        "video_id": video_id,
        "status": "failed",
        "error": error,
        "pred_label": None,
        "pred_score": None,
        "top_k": [],
        **_info_fields(info),
        "frames_classified": 0,
        "model": options.model,
        "elapsed_s": float(elapsed_s),
    }
    return VideoOutcome(video_id=video_id, key=key, record=record)
