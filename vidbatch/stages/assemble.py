"""Turn one video's decoded-and-classified arrays into its output rows.

Both engines call this, so the local and the Ray engine give the same answers
by construction: same smoothing, same segments, same summary fields. The
options come straight from the run's `LabelConfig` (window, top_k, thresholds,
frame_top_k, keep_probs); `model` is the name written in the summary.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from vidbatch.core.config import LabelConfig
from vidbatch.io.output import VideoOutcome
from vidbatch.io.schema import FRAMES_OPTIONAL_FIELDS, FRAMES_SCHEMA
from vidbatch.stages import thumbnails
from vidbatch.stages.segments import find_segments
from vidbatch.stages.smooth import label_frames, video_top_k


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


def _names(classes: Sequence[str], index: np.ndarray, scores: np.ndarray, threshold: float | None, unknown: str) -> np.ndarray:
    names = np.asarray(classes, dtype=object)[index]
    if threshold is not None:
        names = np.where(scores < threshold, unknown, names)
    return names


def find_shots(video_id: str, classes: Sequence[str], probs: np.ndarray, timestamp_s: np.ndarray, cuts: np.ndarray,
               end_s: float, options: LabelConfig) -> list[dict[str, Any]]:
    """One row per shot (between detected cuts): the argmax of the shot's mean probabilities."""
    starts = np.concatenate([[0], np.flatnonzero(cuts[1:]) + 1]) if len(cuts) else np.zeros(0, int)
    stops = np.concatenate([starts[1:], [len(probs)]])
    shots = []
    for i, (a, b) in enumerate(zip(starts, stops)):
        mean = probs[a:b].mean(axis=0)
        best = int(mean.argmax())
        score = float(mean[best])
        label = classes[best] if options.video_threshold is None or score >= options.video_threshold else options.unknown_label
        shots.append({"video_id": video_id, "shot_index": i, "start_s": float(timestamp_s[a]),
                      "end_s": float(timestamp_s[b]) if b < len(probs) else max(float(end_s), float(timestamp_s[-1])),
                      "label": str(label), "score": score})
    return shots


def assemble_ok(
    video_id: str,
    key: str,
    classes: Sequence[str],
    frame_index: np.ndarray,
    timestamp_s: np.ndarray,
    probs: np.ndarray,
    info: dict[str, Any],
    options: LabelConfig,
    model: str,
    elapsed_s: float,
    shot_cut: np.ndarray | None = None,
    thumbs: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
) -> VideoOutcome:
    order = np.argsort(frame_index, kind="stable")
    frame_index, timestamp_s, probs = frame_index[order], timestamp_s[order], probs[order]
    cuts = np.zeros(len(probs), bool) if shot_cut is None else np.asarray(shot_cut, bool)[order]
    labels = label_frames(probs, options.window, resets=cuts)
    unknown = options.unknown_label
    raw_names = _names(classes, labels.raw_index, labels.raw_score, options.frame_threshold, unknown)
    smoothed_names = _names(classes, labels.smoothed_index, labels.smoothed_score, options.frame_threshold, unknown)
    top_index, top_score = video_top_k(probs, options.top_k)
    fields = _info_fields(info)
    end_s = fields["duration_s"] if fields["duration_s"] is not None else float(timestamp_s[-1])
    # segments follow the reported smoothed labels (an `unknown` stretch is a segment of its own) and never span a cut
    segment_keys = np.unique(smoothed_names.astype(str), return_inverse=True)[1] * 2 + (np.cumsum(cuts) % 2)
    # how far each frame's smoothed top class is ahead of the second: the review queue's "nearest the boundary"
    ranked = np.sort(labels.smoothed_probs, axis=1)
    frame_margin = ranked[:, -1] - ranked[:, -2] if ranked.shape[1] > 1 else ranked[:, -1]
    margins = find_segments(segment_keys, frame_margin, timestamp_s, end_s)
    segments = [
        {
            "video_id": video_id,
            "segment_index": s.index,
            "start_s": s.start_s,
            "end_s": s.end_s,
            "label": str(smoothed_names[np.searchsorted(timestamp_s, s.start_s)]),
            "score": s.score,
            "margin": m.score,
        }
        for s, m in zip(find_segments(segment_keys, labels.smoothed_score, timestamp_s, end_s), margins)
    ]
    columns = {
        "video_id": pa.array([video_id] * len(probs), pa.string()),
        "frame_index": pa.array(frame_index, pa.int64()),
        "timestamp_s": pa.array(timestamp_s, pa.float64()),
        "raw_label": pa.array(raw_names.tolist(), pa.string()),
        "raw_score": pa.array(labels.raw_score, pa.float32()),
        "smoothed_label": pa.array(smoothed_names.tolist(), pa.string()),
        "smoothed_score": pa.array(labels.smoothed_score, pa.float32()),
        "shot_index": pa.array(np.cumsum(cuts).astype(np.int32), pa.int32()),
    }
    frames = pa.table(columns, schema=FRAMES_SCHEMA)
    if options.frame_top_k:
        k = min(options.frame_top_k, len(classes))
        best = np.argsort(-labels.smoothed_probs, axis=1, kind="stable")[:, :k]
        frames = frames.append_column("top_k", pa.array(
            [[{"label": str(classes[i]), "score": float(p[i])} for i in row] for row, p in zip(best, labels.smoothed_probs)],
            FRAMES_OPTIONAL_FIELDS["top_k"]))
    if options.keep_probs:
        frames = frames.append_column("probs", pa.array(list(probs.astype(np.float32)), FRAMES_OPTIONAL_FIELDS["probs"]))
    video_embedding = None
    if embeddings is not None:
        embeddings = np.asarray(embeddings, np.float32)[order]
        features = embeddings.shape[1]
        frames = frames.append_column("embedding", pa.FixedSizeListArray.from_arrays(
            pa.array(embeddings.astype(np.float16).ravel(), pa.float16()), features))
        video_embedding = embeddings.mean(axis=0)
    video_score = float(top_score[0])
    pred_label = str(classes[top_index[0]])
    if options.video_threshold is not None and video_score < options.video_threshold:
        pred_label = unknown
    record = {
        "video_id": video_id,
        "status": "ok",
        "error": None,
        "pred_label": pred_label,
        "pred_score": video_score,
        "top_k": [{"label": str(classes[i]), "score": float(s)} for i, s in zip(top_index, top_score)],
        **fields,
        "frames_classified": int(len(probs)),
        "shots": int(cuts.sum()) + 1,
        "model": model,
        "elapsed_s": float(elapsed_s),
    }
    shots = find_shots(video_id, classes, probs, timestamp_s, cuts, end_s, options)
    pictures = thumbnails.per_segment(video_id, segments, timestamp_s, thumbs[order]) if thumbs is not None else []
    return VideoOutcome(video_id=video_id, key=key, record=record, frames=frames, segments=segments, shots=shots,
                        thumbnails=pictures, embedding=video_embedding)


def assemble_failed(
    video_id: str, key: str, error: str, info: dict[str, Any] | None, model: str, elapsed_s: float
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
        "shots": None,
        "model": model,
        "elapsed_s": float(elapsed_s),
    }
    return VideoOutcome(video_id=video_id, key=key, record=record)
