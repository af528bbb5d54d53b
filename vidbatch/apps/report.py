"""`vidbatch report`: a self-contained HTML report of a finished run (images embedded, no external files).

Run configuration and counts, the table of videos (label, score, status,
error), the class distribution, and for the first videos a label timeline:
raw vs smoothed label over time, with segment boundaries and shot cuts.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any, Mapping

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from vidbatch.core.errors import VidbatchError
from vidbatch.io import storage

_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2rem; color: #222; }
h1 { margin-bottom: 0.2rem; } .muted { color: #666; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } tr.failed td { background: #fff1f0; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; } .card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 1rem; }
.card b { font-size: 1.4rem; display: block; } img { max-width: 100%; }
"""


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _distribution_plot(summary, classes: list[str]) -> str:
    ok = summary[summary.status == "ok"]
    names = list(dict.fromkeys(list(classes) + sorted(set(ok.pred_label) - set(classes))))
    predicted = [int((ok.pred_label == c).sum()) for c in names]
    fig, ax = plt.subplots(figsize=(max(4, 0.7 * len(names) + 2), 3))
    positions = range(len(names))
    if "label" in summary.columns and summary["label"].notna().any():
        truth = [int((ok["label"].astype(str) == c).sum()) for c in names]
        ax.bar([p - 0.2 for p in positions], truth, width=0.4, label="manifest label", color="#bbb")
        ax.bar([p + 0.2 for p in positions], predicted, width=0.4, label="predicted", color="#2b7bb9")
        ax.legend()
    else:
        ax.bar(list(positions), predicted, color="#2b7bb9")
    ax.set_xticks(list(positions), labels=names, rotation=30, ha="right")
    ax.set_ylabel("videos")
    ax.set_title("Class distribution (video-level labels)")
    return _png(fig)


def _timeline_plot(video_id: str, frames, segments, classes: list[str]) -> str:
    frames = frames.sort_values("timestamp_s")
    names = list(dict.fromkeys(list(classes) + sorted(set(frames.raw_label) | set(frames.smoothed_label))))
    index = {c: i for i, c in enumerate(names)}
    t = frames.timestamp_s.to_numpy()
    fig, ax = plt.subplots(figsize=(9, max(2.0, 0.35 * len(names) + 1.2)))
    ax.scatter(t, [index[c] for c in frames.raw_label], s=10, color="#e6863b", label="raw (per frame)", zorder=3)
    ax.step(t, [index[c] for c in frames.smoothed_label], where="post", color="#2b7bb9", linewidth=2,
            label="smoothed (rolling average)")
    for start in segments.start_s.tolist()[1:]:
        ax.axvline(start, color="#999", linestyle=":", linewidth=1)
    if "shot_index" in frames.columns:
        cuts = t[np.flatnonzero(np.diff(frames.shot_index.to_numpy())) + 1]
        for k, cut in enumerate(cuts):
            ax.axvline(cut, color="#c0392b", linestyle="--", linewidth=1, label="shot cut" if k == 0 else None)
    ax.set_yticks(range(len(names)), labels=names)
    ax.set_ylim(-0.5, len(names) - 0.5)
    ax.set_xlabel("time (s)")
    ax.set_title(f"{video_id}: raw vs smoothed label (dotted: segment boundaries)")
    ax.legend(loc="upper right", fontsize=8)
    return _png(fig)


def build_report(run_dir: str, max_videos: int = 20, storage_options: Mapping[str, Any] | None = None) -> str:
    matplotlib.use("Agg")
    fs, root = storage.url_to_fs(run_dir, storage_options)
    if not fs.exists(storage.join(root, "run.json")):
        raise VidbatchError(f"Cannot report on {run_dir!r}: no run.json (is it the --out folder of a finished run?)")
    run = json.loads(fs.cat_file(storage.join(root, "run.json")))

    def table(name: str):
        with fs.open(storage.join(root, name), "rb") as handle:
            return pd.read_parquet(handle)

    summary = table("summary.parquet")
    segments = table("segments.parquet")
    classes = list(run["model"]["classes"])
    counts, config = run["counts"], run["config"]
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>vidbatch report: {esc(run_dir)}</title>",
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>vidbatch run report</h1><p class='muted'>{esc(run_dir)} &middot; finished {esc(str(run.get('finished_at')))}"
             f" &middot; engine {esc(str(run.get('engine')))} &middot; {run.get('elapsed_s')} s</p>"]
    accuracy = ""
    if "label" in summary.columns and summary["label"].notna().any():
        labeled = summary[summary["label"].notna()]
        scored = labeled[labeled.status == "ok"]
        if len(scored):
            right = int((scored.pred_label == scored["label"].astype(str)).sum())
            unlabeled = len(labeled) - len(scored)
            # say what the figure covers: failed videos have no prediction, so they are not in it
            accuracy = (f"<div class='card'><b>{right / len(scored):.1%}</b>accuracy vs manifest label: {right} of the "
                        f"{len(scored)} labeled videos that succeeded"
                        + (f" ({unlabeled} labeled video{'s' if unlabeled != 1 else ''} failed and "
                           f"{'are' if unlabeled != 1 else 'is'} not counted)" if unlabeled else "") + "</div>")
    parts.append("<div class='cards'>" + "".join(
        f"<div class='card'><b>{esc(str(v))}</b>{esc(k)}</div>" for k, v in (
            ("videos", counts["videos"]), ("ok", counts["ok"]), ("failed", counts["failed"]),
            ("frames classified", f"{counts['frames_classified']:,}"))) + accuracy + "</div>")
    parts.append("<h2>Configuration</h2><table>" + "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in (
            ("model", f"{run['model']['name']} ({run['model']['kind']}, {run['model']['input_size']}, {run['model']['preprocessing']})"),
            ("classes", ", ".join(classes)), ("manifest", config["manifest"]), ("fps", config["fps"]),
            ("window", config["window"]), ("top k", config["top_k"]), ("shot threshold", config.get("shot_threshold")),
            ("thresholds (frame / video)", f"{config.get('frame_threshold')} / {config.get('video_threshold')}"),
            ("model fingerprint", run["model"]["fingerprint"][:16]))) + "</table>")
    parts.append(f"<h2>Class distribution</h2><img alt='class distribution' src='{_distribution_plot(summary, classes)}'>")
    columns = ["video_id"] + (["label"] if "label" in summary.columns else []) + [
        "pred_label", "pred_score", "status", "error", "duration_s", "frames_classified", "shots"]
    columns = [c for c in columns if c in summary.columns]
    rows = []
    for record in summary[columns].to_dict("records"):
        cells = []
        for c in columns:
            value = record[c]
            if value is None or (isinstance(value, float) and value != value):
                text = ""
            elif isinstance(value, float) and c in ("frames_classified", "shots"):
                text = str(int(value))
            elif isinstance(value, float):
                text = f"{value:.3f}"
            else:
                text = str(value)
            cells.append(f"<td>{esc(text)}</td>")
        rows.append(f"<tr class='{esc(str(record['status']))}'>{''.join(cells)}</tr>")
    parts.append("<h2>Videos</h2><table id='videos'><thead><tr>" + "".join(f"<th>{esc(c)}</th>" for c in columns)
                 + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    ok_ids = summary.loc[summary.status == "ok", "video_id"].tolist()[:max_videos]
    if ok_ids:
        parts.append(f"<h2>Label timelines</h2><p class='muted'>First {len(ok_ids)} labeled videos.</p>")
        frames_dir = storage.join(root, "frames")
        with_frames = pd.read_parquet(frames_dir, filters=[("video_id", "in", ok_ids)],
                                      filesystem=None if storage.is_local(fs) else fs)
        for video_id in ok_ids:
            frames = with_frames[with_frames.video_id == video_id]
            if len(frames):
                image = _timeline_plot(video_id, frames, segments[segments.video_id == video_id], classes)
                parts.append(f"<h3>{esc(video_id)}</h3><img alt='timeline of {esc(video_id)}' src='{image}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run_dir: str, out: str | None = None, max_videos: int = 20,
                 storage_options: Mapping[str, Any] | None = None) -> str:
    out = out or storage.join(run_dir, "report.html")
    document = build_report(run_dir, max_videos, storage_options)
    fs, path = storage.url_to_fs(out, storage_options)
    storage.atomic_write_bytes(fs, path, document.encode("utf-8"))
    return out
