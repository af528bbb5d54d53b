"""`vidbatch eval`: label a labeled manifest and measure accuracy and flicker.

Video-level accuracy, per-class precision/recall/F1 and the confusion matrix
come from the summary's `pred_label` against the manifest's `label`. Flicker is
label switches per minute of video, for the raw frame labels and for the
rolling average at several window sizes, recomputed from the stored
per-frame probabilities so every window sees the same predictions.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from vidbatch.apps.metrics import classification_report, plot_confusion
from vidbatch.core.config import LabelConfig
from vidbatch.core.errors import ManifestError
from vidbatch.pipeline import run
from vidbatch.stages.smooth import count_switches, label_frames

DEFAULT_WINDOWS = (1, 4, 8, 16, 32, 64)


def flicker_table(frames, durations: dict[str, float], windows: Sequence[int]) -> list[dict[str, Any]]:
    """Switches per minute of video for each window (window 1 = raw labels), over all videos."""
    total_minutes = sum(durations.values()) / 60.0
    rows = []
    for window in windows:
        switches = 0
        for video_id, group in frames.groupby("video_id", sort=False):
            probs = np.stack(group.sort_values("frame_index")["probs"].to_numpy())
            switches += count_switches(label_frames(probs, window).smoothed_index)
        rows.append({"window": int(window), "label": "raw" if window == 1 else f"rolling average, K={window}",
                     "switches": int(switches),
                     "switches_per_minute": switches / total_minutes if total_minutes else float("nan")})
    return rows


def evaluate(manifest: str, model: str, out: str, windows: Sequence[int] = DEFAULT_WINDOWS, **label_options) -> dict:
    labels_dir = os.path.join(out, "labels")
    result = run(LabelConfig(manifest=manifest, model=model, out=labels_dir, keep_probs=True, **label_options))
    summary = result.summary_frame()
    if "label" not in summary.columns:
        raise ManifestError(f"Manifest {manifest!r} has no 'label' column: eval needs the true label of each video")
    scored = summary[(summary["status"] == "ok") & summary["label"].notna()]
    classes = sorted(set(scored["label"].astype(str)) | set(scored["pred_label"].astype(str)))
    index = {c: i for i, c in enumerate(classes)}
    report = classification_report([index[v] for v in scored["label"].astype(str)],
                                   [index[v] for v in scored["pred_label"].astype(str)], classes)
    frames = pd.read_parquet(os.path.join(labels_dir, "frames"), columns=["video_id", "frame_index", "probs"])
    durations = dict(zip(scored["video_id"], scored["duration_s"].fillna(0.0)))
    frames = frames[frames["video_id"].isin(durations)]
    flicker = flicker_table(frames, durations, windows)
    os.makedirs(out, exist_ok=True)
    plot_confusion(report["confusion"], classes, os.path.join(out, "confusion.png"),
                   title=f"Video-level accuracy {report['accuracy']:.3f} ({report['count']} videos)")
    pd.DataFrame(report["confusion"], index=pd.Index(classes, name="true"), columns=classes).to_csv(
        os.path.join(out, "confusion.csv"))
    pd.DataFrame(flicker).to_csv(os.path.join(out, "flicker.csv"), index=False)
    _plot_flicker(flicker, os.path.join(out, "flicker.png"))
    metrics = {
        "video_accuracy": report["accuracy"],
        "videos_scored": report["count"],
        "videos_failed": int((summary["status"] == "failed").sum()),
        "per_class": report["per_class"],
        "macro_f1": report["macro_f1"],
        "confusion": report["confusion"],
        "classes": classes,
        "flicker": flicker,
        "model": model,
        "manifest": manifest,
    }
    with open(os.path.join(out, "metrics.json"), "w") as handle:
        json.dump(metrics, handle, indent=2)
    return metrics


def _plot_flicker(rows: list[dict[str, Any]], path: str) -> None:
    matplotlib.use("Agg")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["window"] for r in rows], [r["switches_per_minute"] for r in rows], marker="o")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("rolling-average window K (sampled frames; 1 = raw)")
    ax.set_ylabel("label switches per minute")
    ax.set_title("Flicker vs smoothing window")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_report(metrics: dict) -> str:
    lines = [f"video-level accuracy: {metrics['video_accuracy']:.3f} on {metrics['videos_scored']} videos"
             f" ({metrics['videos_failed']} failed)", "per class:"]
    for name, row in metrics["per_class"].items():
        lines.append(f"  {name:>16}: precision {row['precision']:.3f}  recall {row['recall']:.3f}  f1 {row['f1']:.3f}  (n={row['support']})")
    lines.append("flicker (label switches per minute):")
    for row in metrics["flicker"]:
        lines.append(f"  {row['label']:>24}: {row['switches_per_minute']:.2f}")
    return "\n".join(lines)
