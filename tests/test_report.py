"""`vidbatch report` opened in a real headless Chromium; `inspect` and `annotate` as a user runs them."""

import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest

import vidbatch
from vidbatch.apps.synth import SynthSpec, write_shots_video

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def finished_run(synth_set, colour_bundle, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    shots = str(folder / "shots.mp4")
    write_shots_video(shots, ["ball", "box"], seed=4, spec=SynthSpec(width=96, height=72, seconds=2))
    rows = pd.read_csv(synth_set)
    rows["uri"] = [os.path.join(os.path.dirname(synth_set), u) for u in rows.uri]
    extra = [{"video_id": "shots", "uri": shots, "label": "ball"},
             {"video_id": "<b>evil</b>", "uri": str(folder / "missing.mp4"), "label": "box"}]
    pd.concat([rows, pd.DataFrame(extra)]).to_csv(folder / "m.csv", index=False)
    vidbatch.label(str(folder / "m.csv"), colour_bundle, str(folder / "out"), fps=5, progress=False)
    return folder / "out"


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium installed (Debian: apt-get install chromium; .ci/run installs it)")


def browser(*args, profile):
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_report_in_a_real_browser(finished_run, tmp_path):
    from vidbatch.apps.report import write_report

    path = write_report(str(finished_run))
    assert path.endswith("report.html") and os.path.getsize(path) > 10_000
    document = open(path, encoding="utf-8").read()
    assert "<b>evil</b>" not in document  # the id sits in the page's JSON, its "</" escaped
    assert "src='http" not in document and "src=\"http" not in document  # self-contained
    dom = browser("--dump-dom", f"file://{path}", profile=tmp_path / "p1").stdout
    assert "<b>evil</b>" not in dom and "&lt;b&gt;evil&lt;/b&gt;" in dom  # escaped where the script renders it
    assert "<table id=\"videos\">" in dom
    for video_id in ("ball_000", "waves_001", "shots"):
        assert f">{video_id}</a></td>" in dom  # each id links to its video
    assert dom.count("data:image/png;base64,") >= 8  # class distribution + a timeline per labeled video
    shot = tmp_path / "report.png"
    browser("--window-size=1200,1600", f"--screenshot={shot}", f"file://{path}", profile=tmp_path / "p2")
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (1600, 1200)
    assert image.std() > 20  # a rendered page, not a blank one
    # the table's rows render as light/dark bands: many distinct rows of pixels below the header
    assert len(np.unique(image[:, :, 0].mean(axis=1).round())) > 50


def test_a_reviewer_sees_the_wrong_and_doubtful_videos_first(synth_set, colour_bundle, tmp_path):
    """A manifest whose ball_000 is labeled box (wrong on purpose), with relative uris: the timelines start with
    the wrong video, every video links to its file, 'wrong only' keeps just it, and a confusion table shows it."""
    from pathlib import Path

    from vidbatch.apps.report import write_report

    rows = pd.read_csv(synth_set)
    rows.loc[rows.video_id == "ball_000", "label"] = "box"
    manifest = os.path.join(os.path.dirname(synth_set), "mislabeled.csv")
    rows.to_csv(manifest, index=False)
    vidbatch.label(manifest, colour_bundle, str(tmp_path / "out"), fps=5, progress=False)
    page = write_report(str(tmp_path / "out"), str(tmp_path / "r.html"), max_videos=3)
    document = open(page, encoding="utf-8").read()
    timelines = re.findall(r"<h3 class='timeline'><a href='([^']+)'>([^<]+)</a></h3>", document)
    assert [video_id for _, video_id in timelines][0] == "ball_000" and len(timelines) == 3
    video = os.path.join(os.path.dirname(synth_set), "videos", "ball_000.mp4")
    assert timelines[0][0] == Path(video).as_uri()
    confusion = document[document.index("<table id='confusion'>"):]
    confusion = confusion[:confusion.index("</table>")]
    assert "<td class='off'>1</td>" in confusion  # box labeled, ball predicted
    dom = browser("--dump-dom", f"file://{page}#wrong=1", profile=tmp_path / "p").stdout
    table = dom[dom.index('<table id="videos">'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr class=") == 1 and ">ball_000</a>" in table
    assert f'href="{Path(video).as_uri()}"' in table
    queue = dom[dom.index('<table id="queue-segments">'):]
    queue = queue[:queue.index("</table>")]
    assert "<th>video_id</th>" in queue and "<th>frame</th>" not in queue  # no thumbnails kept: no empty column


def test_the_accuracy_card_says_what_it_covers(finished_run, tmp_path):
    """The missing video has a label but failed: the accuracy counts the 7 that succeeded, and says so."""
    from vidbatch.apps.report import write_report

    document = open(write_report(str(finished_run), str(tmp_path / "r.html")), encoding="utf-8").read()
    assert "of the 7 labeled videos that succeeded (1 labeled video failed and is not counted)" in document


def test_report_command_and_missing_run(finished_run, tmp_path):
    run = subprocess.run([sys.executable, "-m", "vidbatch.cli", "report", str(finished_run), "--out", str(tmp_path / "r.html")],
                         capture_output=True, text=True, env=ENV)
    assert run.returncode == 0 and os.path.exists(tmp_path / "r.html")
    missing = subprocess.run([sys.executable, "-m", "vidbatch.cli", "report", str(tmp_path)], capture_output=True, text=True, env=ENV)
    assert missing.returncode == 2 and "no run.json" in missing.stderr and "Traceback" not in missing.stderr


def test_inspect_bundle_and_run(finished_run, colour_bundle):
    from vidbatch.apps.describe import describe

    bundle = describe(colour_bundle)
    assert "classes (3): ball, box, waves" in bundle and "input size:    32x32" in bundle and "preprocessing: unit" in bundle
    run = describe(str(finished_run))
    assert "videos 8: 7 ok, 1 failed" in run and "<b>evil</b>: not found: no file at" in run


def test_annotate_draws_labels_and_keeps_frames_and_fps(colour_bundle, tmp_path):
    from vidbatch.apps.annotate import annotate

    source = str(tmp_path / "in.mp4")
    write_shots_video(source, ["ball", "box"], seed=5, spec=SynthSpec(width=160, height=120, seconds=2, fps=20))
    result = annotate(source, colour_bundle, str(tmp_path / "out.mp4"), window=8)
    assert result.frames == 80 and result.fps == 20 and set(result.labels) == {"ball", "box"}
    capture = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 80 and capture.get(cv2.CAP_PROP_FPS) == 20
    ok, annotated = capture.read()
    original = cv2.VideoCapture(source).read()[1]
    assert ok and annotated.shape == original.shape
    box = np.abs(annotated[:30, :120].astype(int) - original[:30, :120].astype(int)).mean()
    rest = np.abs(annotated[80:, 80:].astype(int) - original[80:, 80:].astype(int)).mean()
    assert box > 20 and rest < 8  # the label box is drawn top-left; the rest of the frame is the video


def test_annotate_command_and_bad_input(colour_bundle, tmp_path, capfd):
    source = str(tmp_path / "in.mp4")
    write_shots_video(source, ["waves"], seed=6, spec=SynthSpec(width=96, height=72, seconds=1))
    ok = subprocess.run([sys.executable, "-m", "vidbatch.cli", "annotate", source, "--model", colour_bundle, "--out",
                         str(tmp_path / "a.webm")], capture_output=True, text=True, env=ENV)
    assert ok.returncode == 0 and "25 frames" in ok.stdout and "waves" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "vidbatch.cli", "annotate", str(tmp_path / "none.mp4"), "--model",
                          colour_bundle, "--out", str(tmp_path / "b.mp4")], capture_output=True, text=True, env=ENV)
    assert bad.returncode == 1 and "not found" in bad.stderr and "Traceback" not in bad.stderr
    # to .mov, .mp4 and .avi: the codec the container gets, and no FFmpeg/OpenCV lines on a success (the same
    # command in this process, where Keras is already loaded: capfd reads what FFmpeg writes to fd 2)
    from vidbatch.cli import main

    for name, codecs in (("c.mov", ("avc1", "mp4v")), ("d.mp4", ("avc1", "mp4v")), ("e.avi", ("MJPG",))):
        capfd.readouterr()
        code = main(["annotate", source, "--model", colour_bundle, "--out", str(tmp_path / name)])
        out, err = capfd.readouterr()
        assert code == 0 and any(f"({codec})" in out for codec in codecs), out
        assert err.strip() == "", err
        capture = cv2.VideoCapture(str(tmp_path / name))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 25
        capture.release()
    capfd.readouterr()  # --fps is a streaming model's rate: for a frame model, which is run on every frame, it is refused
    assert main(["annotate", source, "--model", colour_bundle, "--out", str(tmp_path / "f.mp4"), "--fps", "5"]) == 2
    assert "Invalid `fps`" in capfd.readouterr().err and not (tmp_path / "f.mp4").exists()


def generated_run(folder, n=10_000, seed=0):
    """A finished run's outputs for n videos, generated (no labeling): what an archive review opens."""
    import json as _json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from vidbatch.io.schema import SEGMENTS_SCHEMA, SHOTS_SCHEMA

    rng = np.random.default_rng(seed)
    classes = ["ball", "box", "waves"]
    errors = ["not found: no file at s3://archive/x.mp4", "timeout: the decoder made no progress for 300 s (--video-timeout)",
              "decoder crashed (SIGSEGV) while reading this video", "truncated: decoded 10 of the 99 frames the container lists"]
    failed = rng.random(n) < 0.05
    pred = rng.integers(0, 3, n)
    score = np.round(rng.uniform(0.34, 1.0, n), 4)
    rows, segments, shots = [], [], []
    for i in range(n):
        vid = f"v{i:05d}"
        if failed[i]:
            rows.append({"video_id": vid, "uri": f"{vid}.mp4", "status": "failed", "error": errors[i % 4], "pred_label": None,
                         "pred_score": None, "top_k": [], "duration_s": None, "shots": None, "label": classes[i % 3]})
            continue
        second = round(float(rng.uniform(0, 1 - score[i])), 4)
        rows.append({"video_id": vid, "uri": f"{vid}.mp4", "status": "ok", "error": None, "pred_label": classes[pred[i]],
                     "pred_score": float(score[i]), "duration_s": 30.0, "shots": 1, "label": classes[i % 3],
                     "top_k": [{"label": classes[pred[i]], "score": float(score[i])}, {"label": "x", "score": second}]})
        segments += [{"video_id": vid, "segment_index": 0, "start_s": 0.0, "end_s": 12.5, "label": classes[pred[i]],
                      "score": float(score[i]), "margin": float(score[i]) - second},
                     {"video_id": vid, "segment_index": 1, "start_s": 12.5, "end_s": 30.0, "label": classes[(pred[i] + 1) % 3],
                      "score": 0.6, "margin": 0.2}]
        shots.append({"video_id": vid, "shot_index": 0, "start_s": 0.0, "end_s": 30.0, "label": classes[pred[i]],
                      "score": float(score[i])})
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(folder / "summary.parquet")
    pq.write_table(pa.Table.from_pylist(segments, schema=SEGMENTS_SCHEMA), folder / "segments.parquet")
    pq.write_table(pa.Table.from_pylist(shots, schema=SHOTS_SCHEMA), folder / "shots.parquet")
    (folder / "run.json").write_text(_json.dumps({
        "model": {"name": "m", "kind": "frame", "input_size": [64, 64], "preprocessing": "unit", "classes": classes,
                  "fingerprint": "0" * 64},
        "counts": {"videos": n, "ok": int((~failed).sum()), "failed": int(failed.sum()), "frames_classified": n * 60},
        "config": {"manifest": "m.csv", "fps": 2.0, "window": 8, "top_k": 3, "shot_threshold": 0.3},
        "engine": "local", "elapsed_s": 1.0, "finished_at": "2026-11-29T00:00:00Z"}))
    return pd.DataFrame(rows)


def test_a_10000_video_report_filters_pages_and_renders_in_chromium(tmp_path):
    import re
    import time

    from vidbatch.apps.report import write_report

    summary = generated_run(tmp_path / "run")
    started = time.monotonic()
    path = write_report(str(tmp_path / "run"), max_videos=0)
    built_s = time.monotonic() - started
    size = os.path.getsize(path)
    assert size < 8_000_000 and built_s < 60, (size, built_s)

    expected = int(((summary.pred_label == "box") & (summary.status == "ok") & (summary.pred_score >= 0.9)).sum())
    dom = browser("--dump-dom", f"file://{path}#label=box&status=ok&min=0.9&sort=score&dir=-1",
                  profile=tmp_path / "p1").stdout
    assert f"{expected:,} of 10,000 videos match; page 1 of {-(-expected // 50)}" in dom
    table = dom[dom.index('<table id="videos">'):]
    table = table[:table.index("</table>")]
    shown = re.findall(r"<tr class=\"ok\"[^>]*><td><a href=\"file://[^\"]+\" title=\"[^\"]+\">(v\d+)</a></td><td>[a-z]+</td><td>([a-z]+)</td><td>([0-9.]+)</td>", table)
    assert len(shown) == 50 and {label for _, label, _ in shown} == {"box"}
    scores = [float(s) for _, _, s in shown]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 0.9  # filtered and sorted by the script
    render_ms = int(re.search(r'data-render-ms="(\d+)"', dom).group(1))
    assert render_ms < 10_000
    # failures grouped by kind, with counts that add up
    kinds = re.findall(r'<td data-kind="([^"]+)">[^<]+</td><td>([\d,]+)</td>', dom)
    assert {k for k, _ in kinds} == {"not found", "timeout", "decoder crashed", "truncated"}
    assert sum(int(c.replace(",", "")) for _, c in kinds) == int((summary.status == "failed").sum())

    shot = tmp_path / "failed.png"
    browser("--window-size=1280,900", f"--screenshot={shot}", f"file://{path}#kind=timeout&status=failed&video=v00001",
            profile=tmp_path / "p2")
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (900, 1280) and image.std() > 20
    failed_rows = np.all(np.abs(image.astype(int) - np.array([240, 241, 255])) <= 2, axis=2)  # BGR of #fff1f0
    assert failed_rows.sum() > 5_000  # the filtered table shows failed rows


def test_thumbnails_show_what_each_segment_was_labeled_from(synth_set, colour_bundle, tmp_path):
    """--thumbnails: one small JPEG per segment (the frame nearest its middle), in shards beside frames/, shown in
    the report's review queue and timeline."""
    from vidbatch.apps.report import write_report

    out = tmp_path / "out"
    result = vidbatch.label(synth_set, colour_bundle, str(out), fps=5, thumbnails=True, progress=False)
    assert result.ok == 6
    thumbs = pd.read_parquet(out / "thumbnails")
    segments = pd.read_parquet(out / "segments.parquet")
    assert len(thumbs) == len(segments) and set(thumbs.video_id) == set(segments.video_id)
    assert len(list((out / "thumbnails").iterdir())) == 1  # one shard per commit batch, not a file per segment
    for row in thumbs.merge(segments, on=["video_id", "segment_index"]).itertuples():
        image = cv2.imdecode(np.frombuffer(row.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[1] <= 160 and row.start_s <= row.timestamp_s <= row.end_s
        # the colour keyed to the label dominates the picture (OpenCV gives BGR): ball red, box blue, waves green
        channel = {"ball": 2, "box": 0, "waves": 1}[row.label]
        pixels = image.astype(int)
        others = np.delete(pixels, channel, axis=2).max(axis=2)
        assert ((pixels[:, :, channel] - others) > 50).sum() > 20, row.label
    page = write_report(str(out), str(tmp_path / "r.html"))
    dom = browser("--dump-dom", f"file://{page}#video=ball_000", profile=tmp_path / "p").stdout
    assert dom.count('<img class="thumb"') >= len(segments) + 1  # the review queue's segments, and the timeline's
    with pytest.raises(vidbatch.ConfigError, match="thumbnails"):
        vidbatch.label(synth_set, colour_bundle, str(tmp_path / "r"), thumbnails=True, engine="ray")
