"""Commit entries of a video split into time ranges, and their merge into the video's one entry.

A range's entry (status `PARTIAL`, written by `stages.assemble.assemble_range`) holds sums, never means:

    attempt, range, ranges      which decode it came from, its index, and on the last range the count
    items, cuts, first_cut      its own items, the shot cuts among them, whether its first item is a cut
    first_index, last_index     the frame_index of its first and last own item (its frames rows)
    last_s, prob_sum            its last item's time; the sum of its items' probabilities, each times its weight
    weight_sum                  the sum of its items' weights (`assemble.item_weights`; absent: one each)
    range_segments              runs of one smoothed label: start, label, count, sums of scores and margins
    range_shots                 its items per (global) shot: start, count, sums of weighted probabilities and weights
    embedding_sum               with --embeddings: the sum of its items' vectors
    model_prob_sum              with --model-top-k: as prob_sum, over the model's own classes (before the label map)
    merge                       on the last range: classes and the options the video-level labels need

`merge` turns a complete set (every range 0..ranges-1 of one attempt) into
the entry an unsplit video gets: the same summary fields, segments and shots,
equal up to floating-point summation order. It is pure and small: the merge
reads records, never frames.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

PARTIAL = "range"
"""The status of a range's commit entry: a part of a video, not a video."""
NO_FRAMES = "no frames: nothing was sampled from this video"


def complete(parts: Mapping[int, Mapping[str, Any]]) -> bool:
    """Every range of one attempt is there."""
    counts = {p["ranges"] for p in parts.values() if p.get("ranges")}
    return len(counts) == 1 and set(parts) == set(range(counts.pop()))


def merge(parts: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """The whole video's commit entry from a complete set of its range entries (by range index)."""
    ordered = [parts[i] for i in sorted(parts)]
    last = ordered[-1]
    options = last["merge"]
    classes = options["classes"]
    video_id = last["video_id"]
    total = sum(int(p["items"]) for p in ordered)
    fields = {name: last.get(name) for name in ("frames_decoded", "duration_s", "fps", "width", "height",
                                                      "decode_note")}
    base = {"video_id": video_id, "key": last["key"], **fields, "model": last.get("model"),
            "elapsed_s": max(float(p.get("elapsed_s") or 0.0) for p in ordered), "merged_from": last["attempt"]}
    if total == 0:
        return {**base, "status": "failed", "error": NO_FRAMES, "pred_label": None, "pred_score": None, "top_k": [],
                "frames_classified": 0, "shots": None, "segments": [], "shots_table": []}
    last_s = next(p["last_s"] for p in reversed(ordered) if p["items"])
    end_s = fields["duration_s"] if fields["duration_s"] is not None else last_s
    end_s = max(float(end_s), float(last_s))
    unknown, threshold = options["unknown_label"], options["video_threshold"]

    def label(mean: np.ndarray) -> tuple[str, float]:
        best = int(mean.argmax())
        score = float(np.float32(mean[best]))
        return (str(classes[best]) if threshold is None or score >= threshold else unknown), score

    weight = sum(_weight(p, "items") for p in ordered if p["items"])

    def ranked(name: str, k: int, names) -> list[dict[str, Any]]:
        """The best `k` of the video's mean of the ranges' `name` sums (as `stages.smooth.video_top_k`)."""
        mean = np.sum([np.asarray(p[name], np.float64) for p in ordered if p["items"]], axis=0) / weight
        return [{"label": str(names[i]), "score": float(np.float32(mean[i]))}
                for i in np.argsort(-mean, kind="stable")[: max(1, k)]]

    top = ranked("prob_sum", int(options["top_k"]), classes)
    pred_label = top[0]["label"]
    if threshold is not None and top[0]["score"] < threshold:
        pred_label = unknown

    segments: list[dict[str, Any]] = []
    for part in ordered:
        for i, run in enumerate(part["range_segments"]):
            if i == 0 and segments and segments[-1]["label"] == run["label"] and not part["first_cut"]:
                joined = segments[-1]  # the segment goes on across the edge
                for name in ("count", "score_sum", "margin_sum"):
                    joined[name] += run[name]
            else:
                segments.append(dict(run))
    segment_rows = [
        {"video_id": video_id, "segment_index": i, "start_s": s["start_s"],
         "end_s": segments[i + 1]["start_s"] if i + 1 < len(segments) else end_s, "label": s["label"],
         "score": s["score_sum"] / s["count"], "margin": s["margin_sum"] / s["count"]}
        for i, s in enumerate(segments)
    ]

    shots: dict[int, dict[str, Any]] = {}
    for part in ordered:
        for run in part["range_shots"]:
            shot = shots.get(run["shot"])
            if shot is None:
                shots[run["shot"]] = {"start_s": run["start_s"], "count": run["count"], "weight": _weight(run, "count"),
                                      "prob_sum": np.asarray(run["prob_sum"], np.float64)}
            else:
                shot["count"] += run["count"]
                shot["weight"] += _weight(run, "count")
                shot["prob_sum"] = shot["prob_sum"] + np.asarray(run["prob_sum"], np.float64)
    starts = [s["start_s"] for s in shots.values()]
    shot_rows = []
    for i, shot in enumerate(shots.values()):
        shot_label, score = label(shot["prob_sum"] / shot["weight"])
        shot_rows.append({"video_id": video_id, "shot_index": i, "start_s": shot["start_s"],
                          "end_s": starts[i + 1] if i + 1 < len(starts) else end_s, "label": shot_label,
                          "score": score})
    sums = [p["embedding_sum"] for p in ordered if p.get("embedding_sum") is not None and p["items"]]
    model_top = (ranked("model_prob_sum", int(options["model_top_k"]), options["model_classes"])
                 if options.get("model_top_k") else None)  # the model's own classes, weighed as the label is
    return {
        **base,
        "status": "ok",
        "error": None,
        "pred_label": pred_label,
        "pred_score": top[0]["score"],
        "top_k": top,
        "model_top_k": model_top,
        "frames_classified": total,
        "shots": sum(int(p["cuts"]) for p in ordered) + 1,
        "segments": segment_rows,
        "shots_table": shot_rows,
        "embedding": (np.sum(np.asarray(sums, np.float64), axis=0) / total).tolist() if sums else None,
    }


def _weight(entry: Mapping[str, Any], count: str) -> float:
    """The sum of an entry's items' weights: `weight_sum`, or (entries written before weights) its item count."""
    weight = entry.get("weight_sum")
    return float(entry[count]) if weight is None else float(weight)
