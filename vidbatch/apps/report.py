"""`vidbatch report`: one self-contained HTML file for reviewing a run, from 12 videos to 100,000.

No external files, no CDN: the data are embedded as JSON and inline JavaScript draws the rest, so the page
works from disk or from a bucket. It has:
- the run's configuration and counts;
- a video table that can be filtered (label, status, error kind, score range, id), sorted and paged;
- failures grouped by error kind, each a click away from its videos;
- a review queue: the videos and segments nearest the decision boundary (top-1 minus top-2 score);
- score histograms per class;
- the timeline (segments and shot cuts) of the selected video.
The review queue's first `max_videos` videos (wrong ones first, where the manifest has labels; then the
smallest margin) also get a raw-vs-smoothed plot from their frames; each video links to its source, and with
labels the page has a "wrong only" filter and a confusion table. Filters can be set
in the address (`report.html#label=box&status=ok`), which is also how the tests drive it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import pathlib
import re
from importlib import resources
from typing import Any, Mapping

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from vidbatch.core.errors import VidbatchError
from vidbatch.io import storage

_STYLE = """
.controls { display: flex; flex-wrap: wrap; gap: 0.6rem; align-items: end; margin: 0.5rem 0; }
.controls label { display: flex; flex-direction: column; font-size: 0.8rem; color: #555; }
.pager button { margin: 0 0.2rem; } tr.selected td { background: #e8f1fb; } th.sortable { cursor: pointer; }
.hist { display: inline-block; margin: 0 1rem 1rem 0; vertical-align: top; } .hist svg { background: #fafafa; }
.kinds td:first-child { cursor: pointer; color: #1a5fa0; text-decoration: underline; }
.kinds td.none { cursor: default; color: #666; text-decoration: none; }
#timeline svg { background: #fafafa; border: 1px solid #ddd; }
img.thumb { height: 54px; display: block; } .thumbs figure { display: inline-block; margin: 0.3rem 0.6rem 0 0; }
.thumbs figcaption { font-size: 0.75rem; color: #555; }
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2rem; color: #222; }
h1 { margin-bottom: 0.2rem; } .muted { color: #666; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } tr.failed td { background: #fff1f0; }
#confusion td.diag { background: #e9f6ec; } #confusion td.off { background: #fdecea; font-weight: bold; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; } .card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 1rem; }
.card b { font-size: 1.4rem; display: block; } img { max-width: 100%; }
"""


_REVIEW_HTML = """
<h2>Videos</h2>
<div class="controls">
  <label>predicted label<select id="f-label"></select></label>
  <label>status<select id="f-status"></select></label>
  <label>error kind<select id="f-kind"></select></label>
  <label>score from<input id="f-min" type="number" min="0" max="1" step="0.05" size="5"></label>
  <label>score to<input id="f-max" type="number" min="0" max="1" step="0.05" size="5"></label>
  <label>video_id contains<input id="f-q" type="search"></label>
  <label>wrong only<input id="f-wrong" type="checkbox"></label>
</div>
<div class="pager"><button id="prev">&lsaquo; previous</button><button id="next">next &rsaquo;</button>
  <span id="pager-text"></span></div>
<table id="videos"></table>
<h2>Timeline of the selected video</h2><div id="timeline"></div>
<h2>Failures by kind</h2><table id="kinds" class="kinds"></table>
<h2>Review queue: nearest the decision boundary</h2>
<p class="muted">Margin: top-1 minus top-2 score (videos: of the mean probabilities; segments: mean over their
frames). The smallest margins are the labels most worth a look.</p>
<div class="cards"><div><h3>Videos</h3><table id="queue-videos"></table></div>
<div><h3>Segments</h3><table id="queue-segments"></table></div></div>
<h2>Scores per predicted class</h2><div id="histograms"></div>
"""


def _fmt(value: Any) -> str:
    """One number format everywhere (the page's script uses the same rule): at most 3 significant digits."""
    if value is None or (isinstance(value, float) and value != value):
        return "none"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{float(value):.3g}"
    return str(value)


def error_kind(error: str | None) -> str:
    """The kind of a failure, for grouping: its words before the first ':' or '(' ('decoder crashed', 'timeout')."""
    if not isinstance(error, str) or not error:
        return ""
    if error.startswith("could not read"):
        return "could not read"
    return re.split(r"[:(]", error, maxsplit=1)[0].strip()


def _clean(values) -> list:
    return [None if v is None or (isinstance(v, float) and (v != v or v in (float("inf"), float("-inf")))) else v
            for v in values]


def source_links(summary: pd.DataFrame, manifest: str | None) -> list[str | None]:
    """Where each video is, as a link: a `file://` URL for a local file (the manifest's relative uris resolved
    against its folder, as the run did), the uri itself for a remote one."""
    base = storage.parent(manifest) if manifest else None
    links = []
    for uri in summary.uri.astype(object).tolist():
        if not isinstance(uri, str) or not uri:
            links.append(None)
            continue
        location = storage.resolve(uri, base) if base else uri
        links.append(location if storage.has_scheme(location) else pathlib.Path(os.path.abspath(location)).as_uri())
    return links


def review_order(summary: pd.DataFrame) -> list[int]:
    """The labeled videos most worth a look first: wrong ones (where the manifest has labels), then by margin
    (top-1 minus top-2 score), smallest first."""
    ok = summary.status == "ok"
    wrong = (ok & summary["label"].notna() & (summary["pred_label"] != summary["label"].astype(str))
             if "label" in summary.columns else pd.Series(False, index=summary.index))
    margins = pd.Series([_margin(t) for t in summary.top_k], index=summary.index).fillna(np.inf)
    order = pd.DataFrame({"wrong": ~wrong, "margin": margins, "row": np.arange(len(summary))})[ok.to_numpy()]
    return order.sort_values(["wrong", "margin", "row"]).row.tolist()


def _margin(top_k) -> float | None:
    scores = [t["score"] for t in (top_k if top_k is not None else [])]
    return None if not scores else (scores[0] - scores[1] if len(scores) > 1 else scores[0])


def confusion_table(summary: pd.DataFrame) -> str:
    """Manifest label (rows) against predicted label (columns), over labeled videos that succeeded: HTML."""
    if "label" not in summary.columns:
        return ""
    scored = summary[(summary.status == "ok") & summary["label"].notna()]
    if not len(scored):
        return ""
    table = pd.crosstab(scored["label"].astype(str), scored["pred_label"].astype(str))
    esc = html.escape
    head = "<tr><th>manifest label &darr; / predicted &rarr;</th>" + "".join(f"<th>{esc(c)}</th>" for c in table.columns) + "</tr>"
    rows = "".join("<tr><th>" + esc(truth) + "</th>" + "".join(
        f"<td class='{'diag' if truth == pred else ('off' if n else '')}'>{n:,}</td>" for pred, n in row.items())
        + "</tr>" for truth, row in table.iterrows())
    return ("<h2>Confusion: manifest label against predicted</h2><table id='confusion'>" + head + rows + "</table>")


def _review_data(summary: pd.DataFrame, segments: pd.DataFrame, shots, classes: list[str],
                 manifest: str | None = None) -> dict:
    """The page's data, columnar and compact: labels as indices into one list."""
    labels = list(dict.fromkeys(list(classes) + sorted(set(summary.pred_label.dropna().astype(str))
                                                        | set(segments.label.astype(str)))))
    index = {label: i for i, label in enumerate(labels)}
    position = {video_id: i for i, video_id in enumerate(summary.video_id)}

    videos = {
        "id": summary.video_id.astype(str).tolist(),
        "pred": _clean(summary.pred_label.astype(object).where(summary.pred_label.notna(), None).tolist()),
        "score": _clean(summary.pred_score.astype(float).round(4).tolist()),
        "margin": _clean([None if m is None else round(m, 4) for m in map(_margin, summary.top_k)]),
        "status": summary.status.tolist(),
        "error": _clean(summary.error.astype(object).where(summary.error.notna(), None).tolist()),
        "kind": [error_kind(e) for e in summary.error.tolist()],
        "duration": _clean(summary.duration_s.astype(float).round(2).tolist()),
        "shots": _clean(summary.shots.astype(float).tolist()),
        "src": source_links(summary, manifest),
    }
    if "model_top_k" in summary.columns and summary.model_top_k.notna().any():  # --model-top-k: before the map
        videos["model"] = [", ".join(f"{t['label']} {t['score']:.2f}" for t in top) if top is not None else None
                           for top in summary.model_top_k]
    if "label" in summary.columns:
        videos["truth"] = _clean(summary["label"].astype(object).where(summary["label"].notna(), None).tolist())
    margins = segments["margin"] if "margin" in segments.columns else segments["score"]
    rows = [[position[v], round(float(a), 2), round(float(b), 2), index[label], round(float(sc), 4), round(float(m), 4),
             int(k)]
            for v, a, b, label, sc, m, k in zip(segments.video_id, segments.start_s, segments.end_s, segments.label,
                                                 segments.score, margins, segments.segment_index) if v in position]
    shot_rows = [] if shots is None else [
        [position[v], round(float(a), 2), round(float(b), 2), index.get(label, 0)]
        for v, a, b, label in zip(shots.video_id, shots.start_s, shots.end_s, shots.label) if v in position]
    return {"labels": labels, "videos": videos, "segments": rows, "shots": shot_rows}


THUMBNAILS_EMBEDDED = 600
"""Segment thumbnails embedded in the page: the review queue's, then the first videos'. All of them stay in
`thumbnails/` (Parquet), where a notebook reads any video's."""


def _thumbnails(fs, folder: str, data: dict, summary: pd.DataFrame) -> dict[str, str]:
    """`"<video index>:<segment index>"` -> a JPEG data URL, for the segments the page is likely to show."""
    segments = data["segments"]
    by_margin = sorted(range(len(segments)), key=lambda k: segments[k][5])[:20]
    videos = data["videos"]
    queue_videos = sorted((i for i, m in enumerate(videos["margin"]) if m is not None), key=lambda i: videos["margin"][i])[:20]
    wanted_videos = set(queue_videos) | set(range(min(len(videos["id"]), 200)))
    wanted = {(segments[k][0], segments[k][6]) for k in by_margin} | {
        (row[0], row[6]) for row in segments if row[0] in wanted_videos}
    ids = sorted({videos["id"][v] for v, _ in wanted})
    table = pd.read_parquet(folder, filters=[("video_id", "in", ids)], filesystem=None if storage.is_local(fs) else fs)
    position = {video_id: i for i, video_id in enumerate(videos["id"])}
    out = {}
    for video_id, segment, jpeg in zip(table.video_id, table.segment_index, table.jpeg):
        key = (position[video_id], int(segment))
        if key in wanted and len(out) < THUMBNAILS_EMBEDDED:
            out[f"{key[0]}:{key[1]}"] = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    return out


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
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside the bars, never over them
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
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
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
            accuracy = (f"<div class='card'><b>{right / len(scored):.1%}</b>accuracy vs manifest label: {right:,} of the "
                        f"{len(scored):,} labeled videos that succeeded"
                        + (f" ({unlabeled:,} labeled video{'s' if unlabeled != 1 else ''} failed and "
                           f"{'are' if unlabeled != 1 else 'is'} not counted)" if unlabeled else "") + "</div>")
    parts.append("<div class='cards'>" + "".join(
        f"<div class='card'><b>{esc(str(v))}</b>{esc(k)}</div>" for k, v in (
            ("videos", f"{counts['videos']:,}"), ("ok", f"{counts['ok']:,}"), ("failed", f"{counts['failed']:,}"),
            ("frames classified", f"{counts['frames_classified']:,}"))) + accuracy + "</div>")
    shots = table("shots.parquet") if fs.exists(storage.join(root, "shots.parquet")) else None
    data = _review_data(summary, segments, shots, classes, config.get("manifest"))
    if fs.exists(storage.join(root, "thumbnails")):
        data["thumbs"] = _thumbnails(fs, storage.join(root, "thumbnails"), data, summary)
    parts.append(_REVIEW_HTML)
    parts.append("<script type='application/json' id='report-data'>"
                 + json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/") + "</script>")
    parts.append("<script>" + resources.files("vidbatch.apps").joinpath("report.js").read_text(encoding="utf-8")
                 + "</script>")
    parts.append("<h2>Configuration</h2><table>" + "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in (
            ("model", f"{run['model']['name']} ({run['model']['kind']}, {run['model']['input_size']}, {run['model']['preprocessing']})"),
            ("classes", ", ".join(classes)), ("manifest", config["manifest"]), ("fps", _fmt(config["fps"])),
            ("window", config["window"]), ("top k", config["top_k"]), ("shot threshold", _fmt(config.get("shot_threshold"))),
            ("thresholds (frame / video)", f"{_fmt(config.get('frame_threshold'))} / {_fmt(config.get('video_threshold'))}"),
            ("model fingerprint", run["model"]["fingerprint"][:16]))) + "</table>")
    parts.append(confusion_table(summary))
    parts.append(f"<h2>Class distribution</h2><img alt='class distribution' src='{_distribution_plot(summary, classes)}'>")
    queue = review_order(summary)[:max_videos]
    ok_ids = summary.video_id.iloc[queue].tolist()
    links = dict(zip(summary.video_id, data["videos"]["src"]))
    if ok_ids:
        why = "wrong ones first, then " if "label" in summary.columns else ""
        parts.append(f"<h2>Label timelines</h2><p class='muted'>The review queue's {len(ok_ids)} videos: {why}the "
                     "smallest margin (top-1 minus top-2 score) first. Each title links to the video.</p>")
        frames_dir = storage.join(root, "frames")
        with_frames = pd.read_parquet(frames_dir, filters=[("video_id", "in", ok_ids)],
                                      filesystem=None if storage.is_local(fs) else fs)
        for video_id in ok_ids:
            frames = with_frames[with_frames.video_id == video_id]
            if len(frames):
                image = _timeline_plot(video_id, frames, segments[segments.video_id == video_id], classes)
                title = (f"<a href='{esc(links[video_id])}'>{esc(video_id)}</a>" if links.get(video_id)
                         else esc(video_id))
                parts.append(f"<h3 class='timeline'>{title}</h3><img alt='timeline of {esc(video_id)}' src='{image}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run_dir: str, out: str | None = None, max_videos: int = 20,
                 storage_options: Mapping[str, Any] | None = None) -> str:
    out = out or storage.join(run_dir, "report.html")
    document = build_report(run_dir, max_videos, storage_options)
    fs, path = storage.url_to_fs(out, storage_options)
    storage.atomic_write_bytes(fs, path, document.encode("utf-8"))
    return out
