"""Turn one video's decoded-and-classified arrays into its output rows.

Both engines call this, so the local and the Ray engine give the same answers
by construction: same smoothing, same segments, same summary fields. The
options come straight from the run's `LabelConfig` (window, top_k, thresholds,
frame_top_k, keep_probs, model_top_k); `model` is the name written in the summary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from vidbatch.core.config import LabelConfig
from vidbatch.io import ranges
from vidbatch.io.output import VideoOutcome
from vidbatch.io.schema import FRAMES_OPTIONAL_FIELDS, FRAMES_SCHEMA
from vidbatch.stages import thumbnails
from vidbatch.stages.ranges import RangeUnit
from vidbatch.stages.segments import find_segments, runs
from vidbatch.stages.smooth import FrameLabels, label_frames, video_top_k, weighted_mean


def info_fields(info: dict[str, Any] | None) -> dict[str, Any]:
    """A record's container fields, from a decoder's info."""
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
        "decode_note": str(info["note"]) if info.get("note") else None,
    }


def _names(classes: Sequence[str], index: np.ndarray, scores: np.ndarray, threshold: float | None, unknown: str) -> np.ndarray:
    names = np.asarray(classes, dtype=object)[index]
    if threshold is not None:
        names = np.where(scores < threshold, unknown, names)
    return names


def find_shots(video_id: str, classes: Sequence[str], probs: np.ndarray, timestamp_s: np.ndarray, cuts: np.ndarray,
               end_s: float, options: LabelConfig, weights: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One row per shot (between detected cuts): the argmax of the shot's mean probabilities (`weights`: see
    `item_weights`)."""
    starts = np.concatenate([[0], np.flatnonzero(cuts[1:]) + 1]) if len(cuts) else np.zeros(0, int)
    stops = np.concatenate([starts[1:], [len(probs)]])
    shots = []
    for i, (a, b) in enumerate(zip(starts, stops)):
        mean = weighted_mean(probs[a:b], None if weights is None else weights[a:b])
        best = int(mean.argmax())
        score = float(mean[best])
        label = classes[best] if options.video_threshold is None or score >= options.video_threshold else options.unknown_label
        shots.append({"video_id": video_id, "shot_index": i, "start_s": float(timestamp_s[a]),
                      "end_s": float(timestamp_s[b]) if b < len(probs) else max(float(end_s), float(timestamp_s[-1])),
                      "label": str(label), "score": score})
    return shots


@dataclass(frozen=True)
class _Labeled:
    """One unit's items (a whole video, or a range with the items before it) in order, labeled."""

    frame_index: np.ndarray
    timestamp_s: np.ndarray
    probs: np.ndarray
    cuts: np.ndarray
    weights: np.ndarray | None
    """Each item's weight in its video's and shot's mean (`item_weights`; None: all equal)."""
    labels: FrameLabels
    raw_names: np.ndarray
    smoothed_names: np.ndarray
    margin: np.ndarray
    """How far each item's smoothed top class is ahead of the second: the review queue's "nearest the boundary"."""
    embeddings: np.ndarray | None
    thumbs: np.ndarray | None
    model_probs: np.ndarray | None = None
    """With --model-top-k: each item's probabilities over the model's own classes, before the label map."""


def item_weights(cuts: np.ndarray, options: LabelConfig, closes: bool = True) -> np.ndarray | None:
    """Each item's weight in its video's and shots' mean probabilities: for a streaming model's run (its config
    carries a reset period), by how many frames the item's state has seen since its last reset, since its scores
    rest on that many frames (`ResetRule.weights`, as `options.state_weights` says; a unit starts at a reset
    point, and `closes` says whether its last item ends a window); otherwise None (every item once)."""
    if options.state_reset_s is None:
        return None
    from vidbatch.model.streaming import ResetRule

    return ResetRule(options.reset_every()).weights(cuts, options.state_weights, closes)


def _label(classes, frame_index, timestamp_s, probs, shot_cut, options: LabelConfig, embeddings=None,
           thumbs=None, model_probs=None, closes: bool = True) -> _Labeled:
    order = np.argsort(frame_index, kind="stable")
    probs = np.asarray(probs)[order]
    cuts = np.zeros(len(probs), bool) if shot_cut is None else np.asarray(shot_cut, bool)[order]
    labels = label_frames(probs, options.window, resets=cuts)
    unknown = options.unknown_label
    ranked = np.sort(labels.smoothed_probs, axis=1)
    return _Labeled(
        frame_index=np.asarray(frame_index)[order], timestamp_s=np.asarray(timestamp_s)[order], probs=probs, cuts=cuts,
        weights=item_weights(cuts, options, closes), labels=labels,
        raw_names=_names(classes, labels.raw_index, labels.raw_score, options.frame_threshold, unknown),
        smoothed_names=_names(classes, labels.smoothed_index, labels.smoothed_score, options.frame_threshold, unknown),
        margin=ranked[:, -1] - ranked[:, -2] if ranked.shape[1] > 1 else ranked[:, -1],
        embeddings=None if embeddings is None else np.asarray(embeddings, np.float32)[order],
        thumbs=None if thumbs is None else np.asarray(thumbs, dtype=object)[order],
        model_probs=None if model_probs is None or not options.model_top_k else np.asarray(model_probs, np.float32)[order],
    )


def _ranked(classes: Sequence[str], index: Sequence[int], scores: Sequence[float]) -> list[dict[str, Any]]:
    """A `TOP_K_TYPE` value: `{label, score}` of each of `index`, in order."""
    return [{"label": str(classes[i]), "score": float(p)} for i, p in zip(index, scores)]


def _top_rows(classes: Sequence[str], probs: np.ndarray, k: int) -> list[list[dict[str, Any]]]:
    """Each row's best `k` classes (a frames `top_k` / `model_top_k` column)."""
    best = np.argsort(-probs, axis=1, kind="stable")[:, : min(k, len(classes))]
    return [_ranked(classes, row, p[row]) for row, p in zip(best, probs)]


def _frames_table(video_id: str, classes: Sequence[str], unit: _Labeled, own: slice, shot_index: np.ndarray,
                  options: LabelConfig, model_classes: Sequence[str] = ()) -> pa.Table:
    """The frames rows of the unit's own items (`own`)."""
    labels = unit.labels
    count = len(unit.frame_index[own])
    columns = {
        "video_id": pa.array([video_id] * count, pa.string()),
        "frame_index": pa.array(unit.frame_index[own], pa.int64()),
        "timestamp_s": pa.array(unit.timestamp_s[own], pa.float64()),
        "raw_label": pa.array(unit.raw_names[own].tolist(), pa.string()),
        "raw_score": pa.array(labels.raw_score[own], pa.float32()),
        "smoothed_label": pa.array(unit.smoothed_names[own].tolist(), pa.string()),
        "smoothed_score": pa.array(labels.smoothed_score[own], pa.float32()),
        "shot_index": pa.array(shot_index.astype(np.int32), pa.int32()),
    }
    frames = pa.table(columns, schema=FRAMES_SCHEMA)
    smoothed = labels.smoothed_probs[own]
    if options.frame_top_k:
        frames = frames.append_column("top_k", pa.array(_top_rows(classes, smoothed, options.frame_top_k),
                                                        FRAMES_OPTIONAL_FIELDS["top_k"]))
    if unit.model_probs is not None:  # the model's own view of each item (raw, not smoothed), for audit
        frames = frames.append_column("model_top_k", pa.array(
            _top_rows(model_classes, unit.model_probs[own], options.model_top_k), FRAMES_OPTIONAL_FIELDS["model_top_k"]))
    if options.keep_probs:
        frames = frames.append_column("probs", pa.array(list(unit.probs[own].astype(np.float32)),
                                                        FRAMES_OPTIONAL_FIELDS["probs"]))
    if unit.embeddings is not None:
        embeddings = unit.embeddings[own]
        frames = frames.append_column("embedding", pa.FixedSizeListArray.from_arrays(
            pa.array(embeddings.astype(np.float16).ravel(), pa.float16()), embeddings.shape[1]))
    return frames


def _segment_keys(unit: _Labeled, shot_index: np.ndarray) -> np.ndarray:
    """Segments follow the reported smoothed labels (an `unknown` stretch is a segment of its own) and never span a
    cut: a key per item that changes exactly where a segment starts."""
    return np.unique(unit.smoothed_names.astype(str), return_inverse=True)[1] * 2 + (shot_index % 2)


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
    model_probs: np.ndarray | None = None,
    model_classes: Sequence[str] = (),
) -> VideoOutcome:
    """A whole video's outcome. `model_probs` (with --model-top-k): each item's probabilities over the model's own
    classes (`model_classes`), before the label map made `probs`."""
    unit = _label(classes, frame_index, timestamp_s, probs, shot_cut, options, embeddings, thumbs, model_probs)
    timestamp_s, probs, cuts, labels = unit.timestamp_s, unit.probs, unit.cuts, unit.labels
    shot_index = np.cumsum(cuts)
    everything = slice(None)
    top_index, top_score = video_top_k(probs, options.top_k, unit.weights)
    fields = info_fields(info)
    end_s = fields["duration_s"] if fields["duration_s"] is not None else float(timestamp_s[-1])
    segment_keys = _segment_keys(unit, shot_index)
    margins = find_segments(segment_keys, unit.margin, timestamp_s, end_s)
    segments = [
        {
            "video_id": video_id,
            "segment_index": s.index,
            "start_s": s.start_s,
            "end_s": s.end_s,
            "label": str(unit.smoothed_names[np.searchsorted(timestamp_s, s.start_s)]),
            "score": s.score,
            "margin": m.score,
        }
        for s, m in zip(find_segments(segment_keys, labels.smoothed_score, timestamp_s, end_s), margins)
    ]
    frames = _frames_table(video_id, classes, unit, everything, shot_index, options, model_classes)
    video_embedding = unit.embeddings.mean(axis=0) if unit.embeddings is not None else None
    video_score = float(top_score[0])
    pred_label = str(classes[top_index[0]])
    if options.video_threshold is not None and video_score < options.video_threshold:
        pred_label = options.unknown_label
    record = {
        "video_id": video_id,
        "status": "ok",
        "error": None,
        "pred_label": pred_label,
        "pred_score": video_score,
        "top_k": _ranked(classes, top_index, top_score),
        "model_top_k": (_ranked(model_classes, *video_top_k(unit.model_probs, options.model_top_k, unit.weights))
                        if unit.model_probs is not None else None),
        **fields,
        "frames_classified": int(len(probs)),
        "shots": int(cuts.sum()) + 1,
        "model": model,
        "elapsed_s": float(elapsed_s),
    }
    shots = find_shots(video_id, classes, probs, timestamp_s, cuts, end_s, options, unit.weights)
    pictures = thumbnails.per_segment(video_id, segments, timestamp_s, unit.thumbs) if unit.thumbs is not None else []
    return VideoOutcome(video_id=video_id, key=key, record=record, frames=frames, segments=segments, shots=shots,
                        thumbnails=pictures, embedding=video_embedding)


def merge_options(classes: Sequence[str], options: LabelConfig, model_classes: Sequence[str] = ()) -> dict[str, Any]:
    """What `io.ranges.merge` needs besides a split video's sums: on its last range's record."""
    merge = {"classes": [str(c) for c in classes], "top_k": options.top_k,
             "video_threshold": options.video_threshold, "unknown_label": options.unknown_label}
    if options.model_top_k and model_classes:
        merge.update(model_classes=[str(c) for c in model_classes], model_top_k=options.model_top_k)
    return merge


def assemble_range(
    video_id: str,
    key: str,
    classes: Sequence[str],
    unit: RangeUnit,
    probs: np.ndarray,
    info: dict[str, Any] | None,
    options: LabelConfig,
    model: str,
    elapsed_s: float,
    embeddings: np.ndarray | None = None,
    model_probs: np.ndarray | None = None,
    model_classes: Sequence[str] = (),
) -> VideoOutcome:
    """One time range of a long video: its own items' final frames rows, and a partial record (sums, not means)
    that `io.ranges.merge` combines with the video's other ranges into the video's summary, segments and shots.

    The unit holds `unit.overlap` items before the range, so the rolling average at its first own item is the
    whole video's; the decoder saw every item, so `unit.shot_base` (cuts before the unit) numbers shots exactly.
    """
    labeled = _label(classes, unit.frame_index, unit.timestamp_s, probs, unit.shot_cut, options, embeddings,
                     model_probs=model_probs, closes=unit.closes)
    own = slice(unit.overlap, None)
    shot_index = unit.shot_base + np.cumsum(labeled.cuts)
    stamps, cuts, own_probs = labeled.timestamp_s[own], labeled.cuts[own], labeled.probs[own].astype(np.float64)
    own_weights = labeled.weights[own] if labeled.weights is not None else np.ones(len(stamps))
    own_probs = own_probs * own_weights[:, None]  # sums of weighted probabilities, and of the weights
    own_shots = shot_index[own]
    segments = []
    starts, stops = runs(_segment_keys(labeled, shot_index)[own])
    for a, b in zip(starts, stops):
        segments.append({"start_s": float(stamps[a]), "label": str(labeled.smoothed_names[own][a]), "count": int(b - a),
                         "score_sum": float(labeled.labels.smoothed_score[own][a:b].astype(np.float64).sum()),
                         "margin_sum": float(labeled.margin[own][a:b].astype(np.float64).sum())})
    shots = []
    starts, stops = runs(own_shots)
    for a, b in zip(starts, stops):
        shots.append({"shot": int(own_shots[a]), "start_s": float(stamps[a]), "count": int(b - a),
                      "prob_sum": own_probs[a:b].sum(axis=0).tolist(), "weight_sum": float(own_weights[a:b].sum())})
    record = {
        "video_id": video_id,
        "status": ranges.PARTIAL,
        "error": None,
        "attempt": unit.attempt,
        "range": unit.range_index,
        "ranges": unit.range_index + 1 if unit.last else None,
        "items": int(len(stamps)),
        "cuts": int(cuts.sum()),
        "first_cut": bool(cuts[0]) if len(cuts) else False,
        "first_index": int(labeled.frame_index[own][0]) if len(stamps) else None,
        "last_index": int(labeled.frame_index[own][-1]) if len(stamps) else None,
        "last_s": float(stamps[-1]) if len(stamps) else None,
        "prob_sum": own_probs.sum(axis=0).tolist(),
        "weight_sum": float(own_weights.sum()),
        "range_segments": segments,
        "range_shots": shots,
        "embedding_sum": (labeled.embeddings[own].astype(np.float64).sum(axis=0).tolist()
                          if labeled.embeddings is not None else None),
        "model_prob_sum": ((labeled.model_probs[own].astype(np.float64) * own_weights[:, None]).sum(axis=0).tolist()
                           if labeled.model_probs is not None else None),
        "model": model,
        "elapsed_s": float(elapsed_s),
    }
    if unit.last:  # what the merge needs besides the sums: the video's container fields and the labeling options
        record.update(info_fields(info))
        record["merge"] = merge_options(classes, options, model_classes)
    frames = (_frames_table(video_id, classes, labeled, own, shot_index[own], options, model_classes)
              if len(stamps) else None)
    return VideoOutcome(video_id=video_id, key=key, record=record, frames=frames)


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
        **info_fields(info),
        "frames_classified": 0,
        "shots": None,
        "model": model,
        "elapsed_s": float(elapsed_s),
    }
    return VideoOutcome(video_id=video_id, key=key, record=record)
