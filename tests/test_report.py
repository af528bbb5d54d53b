"""`vidbatch report` opened in a real headless Chromium; `inspect` and `annotate` as a user runs them."""

import os
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
    assert "<b>evil</b>" not in document and "&lt;b&gt;evil&lt;/b&gt;" in document  # escaped
    assert "src='http" not in document and "src=\"http" not in document  # self-contained
    dom = browser("--dump-dom", f"file://{path}", profile=tmp_path / "p1").stdout
    assert "<table id=\"videos\">" in dom
    for video_id in ("ball_000", "waves_001", "shots"):
        assert f"<td>{video_id}</td>" in dom
    assert dom.count("data:image/png;base64,") >= 8  # class distribution + a timeline per labeled video
    shot = tmp_path / "report.png"
    browser("--window-size=1200,1600", f"--screenshot={shot}", f"file://{path}", profile=tmp_path / "p2")
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (1600, 1200)
    assert image.std() > 20  # a rendered page, not a blank one
    # the table's rows render as light/dark bands: many distinct rows of pixels below the header
    assert len(np.unique(image[:, :, 0].mean(axis=1).round())) > 50


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


def test_annotate_command_and_bad_input(colour_bundle, tmp_path):
    source = str(tmp_path / "in.mp4")
    write_shots_video(source, ["waves"], seed=6, spec=SynthSpec(width=96, height=72, seconds=1))
    ok = subprocess.run([sys.executable, "-m", "vidbatch.cli", "annotate", source, "--model", colour_bundle, "--out",
                         str(tmp_path / "a.webm")], capture_output=True, text=True, env=ENV)
    assert ok.returncode == 0 and "25 frames" in ok.stdout and "waves" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "vidbatch.cli", "annotate", str(tmp_path / "none.mp4"), "--model",
                          colour_bundle, "--out", str(tmp_path / "b.mp4")], capture_output=True, text=True, env=ENV)
    assert bad.returncode == 1 and "not found" in bad.stderr and "Traceback" not in bad.stderr
