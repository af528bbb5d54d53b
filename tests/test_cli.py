"""The `vidbatch` command as a user runs it: real subprocesses, exit codes, no tracebacks."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from vidbatch.stages.smooth import count_switches

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def vidbatch(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "vidbatch.cli", *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def test_label_ok_exit_zero(synth_set, colour_bundle, tmp_path):
    result = vidbatch("label", synth_set, "--model", colour_bundle, "--out", str(tmp_path / "out"), "--fps", "5",
                      "--window", "4", "--top-k", "2", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "6 videos: 6 ok, 0 failed" in result.stdout
    summary = pd.read_parquet(tmp_path / "out" / "summary.parquet")
    assert summary["top_k"].map(len).tolist() == [2] * 6


def with_a_missing_video(synth_set, tmp_path):
    """The synthetic set plus a row whose file does not exist (video_id 'gone')."""
    manifest = tmp_path / "m.csv"
    rows = pd.read_csv(synth_set)
    rows["uri"] = [os.path.join(os.path.dirname(synth_set), u) for u in rows.uri]
    rows = pd.concat([rows, pd.DataFrame([{"video_id": "gone", "uri": str(tmp_path / "gone.mp4"), "label": "ball"}])])
    rows.to_csv(manifest, index=False)
    return manifest


def test_some_failed_exit_one_without_traceback(synth_set, colour_bundle, tmp_path):
    manifest = with_a_missing_video(synth_set, tmp_path)
    result = vidbatch("label", str(manifest), "--model", colour_bundle, "--out", str(tmp_path / "out"), "--no-progress")
    assert result.returncode == 1
    assert "7 videos: 6 ok, 1 failed" in result.stdout
    assert "failed: gone: not found: no file at" in result.stderr and "Traceback" not in result.stderr


def test_not_found_names_the_resolved_path(synth_set, colour_bundle, tmp_path):
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "m.csv").write_text("video_id,uri\ngone,clips/gone.mp4\n")
    result = vidbatch("label", str(folder / "m.csv"), "--model", colour_bundle, "--out", str(tmp_path / "out"),
                      "--no-progress")
    assert result.returncode == 1
    assert f"failed: gone: not found: no file at {folder / 'clips' / 'gone.mp4'}" in result.stderr


@pytest.mark.parametrize(
    "setup,words",
    [
        (lambda d: (d / "m.csv").write_text("path\nx.mp4\n"), "has no 'uri' column"),
        (lambda d: (d / "m.csv").write_text("uri,video_id\na.mp4,x\nb.mp4,x\n"), "row 2, column 'video_id': duplicate"),
        (lambda d: (d / "m.csv").write_bytes(b"uri\n\xff\xfe.mp4\n"), "not UTF-8"),
    ],
)
def test_bad_manifest_exit_two(colour_bundle, tmp_path, setup, words):
    setup(tmp_path)
    result = vidbatch("label", str(tmp_path / "m.csv"), "--model", colour_bundle, "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and words in result.stderr and "m.csv" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out" / "summary.parquet").exists()


def test_bad_model_and_bad_option_exit_two(synth_set, tmp_path):
    started = time.monotonic()
    result = vidbatch("label", synth_set, "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "no such file or folder" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists(), "a bad --model is reported before --out is created"
    assert time.monotonic() - started < 5, "and before TensorFlow starts"
    result = vidbatch("label", synth_set, "--model", str(tmp_path), "--out", str(tmp_path / "o"), "--window", "0")
    assert result.returncode == 2 and "Received: window=0" in result.stderr


def test_synth_command(tmp_path):
    result = vidbatch("synth", "--out", str(tmp_path / "s"), "--classes", "ball,left_to_right", "--per-class", "1",
                      "--seconds", "1", "--size", "64x48")
    assert result.returncode == 0, result.stderr
    manifest = pd.read_csv(tmp_path / "s" / "manifest.csv")
    assert manifest["label"].tolist() == ["ball", "left_to_right"]
    assert all((tmp_path / "s" / u).stat().st_size > 0 for u in manifest.uri)


def test_sigkill_mid_run_then_resume_equals_clean_run(colour_bundle, tmp_path):
    """The ledger commit: kill -9 the driver mid-run, rerun, compare with an uninterrupted run."""
    from vidbatch.apps.synth import SynthSpec, make_dataset
    from vidbatch.io.output import RunOutput

    # 48 videos: the run commits two at a time for about a second, so the kill lands mid-run even on a loaded machine
    # (18 videos were all committed within 0.35 s, which a poll could miss)
    total = 48
    manifest = make_dataset(str(tmp_path / "set"), videos_per_class=total // 3, seed=11,
                            spec=SynthSpec(width=96, height=72, seconds=3))
    out, clean = tmp_path / "out", tmp_path / "clean"
    args = ["label", manifest, "--model", colour_bundle, "--fps", "10", "--no-progress", "--decode-workers", "1", "--batch-size", "4",
            "--commit-videos", "2"]  # commits mid-run, where the kill lands
    process = subprocess.Popen([sys.executable, "-m", "vidbatch.cli", *args, "--out", str(out)], env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    def committed() -> int:  # what the product itself counts as done (a hidden temporary is not)
        return len(RunOutput(str(out)).committed())

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and committed() < 3:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = committed()
    assert 3 <= done_before < total, "the kill must land mid-run"
    assert not (out / "summary.parquet").exists()

    resumed = vidbatch(*args, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert f"({done_before} already done in an earlier run)" in resumed.stdout
    assert vidbatch(*args, "--out", str(clean)).returncode == 0

    run = json.load(open(out / "run.json"))
    assert run["counts"]["resumed_from_previous_run"] == done_before and run["counts"]["processed_this_run"] == total - done_before
    timing = ["elapsed_s"]
    a = pd.read_parquet(out / "summary.parquet").drop(columns=timing)
    b = pd.read_parquet(clean / "summary.parquet").drop(columns=timing)
    pd.testing.assert_frame_equal(a, b)
    for table in ("segments.parquet", "frames"):
        a = pd.read_parquet(out / table).sort_values(["video_id"] + (["frame_index"] if table == "frames" else ["segment_index"]))
        b = pd.read_parquet(clean / table).sort_values(list(a.columns[:1]) + (["frame_index"] if table == "frames" else ["segment_index"]))
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    assert not [f for _, _, fs in os.walk(out) for f in fs if f.startswith(".tmp")]


@pytest.mark.slow
def test_demo_runs_offline_and_is_accurate(tmp_path):
    result = vidbatch("demo", "--out", str(tmp_path / "demo"), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "video-level accuracy against the manifest's label column" in result.stdout
    summary = pd.read_parquet(tmp_path / "demo" / "labels" / "summary.parquet")
    accuracy = (summary["pred_label"] == summary["label"]).mean()
    assert accuracy >= 0.9 and len(summary) == 16
    # the README's example manifest names every video the demo generates, where the demo puts it
    example = pd.read_csv(os.path.join(os.path.dirname(os.path.dirname(__file__)), "manifests", "demo.csv"))
    assert sorted(example.video_id) == sorted(summary.video_id)
    assert all(uri.startswith("../vidbatch-demo/data/videos/") for uri in example.uri)
    assert (tmp_path / "demo" / "model" / "model.keras").exists()
    # the changing videos show what smoothing and shot resets do
    shots = summary.set_index("video_id").shots
    assert shots["cut_ball_box"] == 3 and shots["cut_waves_ball"] == 3 and shots["ball_000"] == 1
    frames = pd.read_parquet(tmp_path / "demo" / "labels" / "frames", filters=[("video_id", "==", "flicker_box")])
    assert (frames.raw_label != "box").any() and count_switches(frames.smoothed_label) < count_switches(frames.raw_label)
    assert "cut_ball_box (hard cut): label switches raw" in result.stdout and "shots.parquet" in result.stdout


def test_eval_command(synth_set, colour_bundle, tmp_path):
    result = vidbatch("eval", "--manifest", synth_set, "--model", colour_bundle, "--out", str(tmp_path / "eval"),
                      "--windows", "1,4", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "video-level accuracy: 1.000 on 6 videos" in result.stdout and "rolling average, K=4" in result.stdout
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 0


@pytest.mark.slow
def test_train_clips_command_then_label_with_it(tmp_path):
    from vidbatch.apps.synth import SynthSpec, make_dataset

    data = make_dataset(str(tmp_path / "d"), classes=("left_to_right", "right_to_left"), videos_per_class=4, seed=1,
                        spec=SynthSpec(width=64, height=48, seconds=2))
    result = vidbatch("train", "clips", "--data", data, "--out", str(tmp_path / "clip"), "--clip-len", "6",
                      "--image-size", "24", "--epochs", "2", "--fps", "10")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test accuracy" in result.stdout
    # not a terminal: progress is plain lines (videos decoded, with an ETA; one per epoch), no animated bars
    assert "decoding videos: 8/8 videos" in result.stderr and "ETA" in result.stderr
    assert "Epoch 2/2" in result.stdout + result.stderr
    assert "\r" not in result.stdout + result.stderr and "\x1b[" not in result.stdout + result.stderr
    bundle = json.load(open(tmp_path / "clip" / "bundle.json"))
    assert bundle["kind"] == "clip" and bundle["clip_len"] == 6 and bundle["sample_fps"] == 10
    labeled = vidbatch("label", data, "--model", str(tmp_path / "clip"), "--out", str(tmp_path / "out"), "--fps", "10",
                       "--no-progress")
    assert labeled.returncode == 0, labeled.stderr[-2000:]
    frames = pd.read_parquet(tmp_path / "out" / "frames")
    assert len(frames) > 0 and frames.frame_index.min() >= 10  # the first clip ends at the 6th sampled frame


def test_dry_run_checks_everything_and_writes_nothing(synth_set, colour_bundle, tmp_path):
    manifest = with_a_missing_video(synth_set, tmp_path)
    out = tmp_path / "out"
    result = vidbatch("label", str(manifest), "--model", colour_bundle, "--out", str(out), "--dry-run")
    assert result.returncode == 1, result.stderr
    assert "7 videos, 1 missing (e.g. " in result.stdout and "gone.mp4" in result.stdout
    assert "would label 7 videos on the local engine" in result.stdout and "output " + str(out) + ": new" in result.stdout
    assert not out.exists()  # nothing written, not even the folder
    clean = vidbatch("label", synth_set, "--model", colour_bundle, "--out", str(out), "--dry-run")
    assert clean.returncode == 0 and "0 missing" in clean.stdout
    bad = vidbatch("label", synth_set, "--model", str(tmp_path / "nope"), "--out", str(out), "--dry-run")
    assert bad.returncode == 2 and "no such file or folder" in bad.stderr


def test_a_clean_run_prints_nothing_the_user_cannot_act_on(synth_set, colour_bundle, tmp_path):
    """No TensorFlow/CUDA/absl start-up lines, no OpenCV [ERROR] lines: stderr of a clean run is empty."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "OPENCV_LOG_LEVEL")}
    result = subprocess.run([sys.executable, "-m", "vidbatch.cli", "label", synth_set, "--model", colour_bundle, "--out",
                             str(tmp_path / "out"), "--no-progress"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    noise = [line for line in result.stderr.splitlines() if line.strip()]
    assert noise == [], noise


def test_the_python_api_is_as_quiet_as_the_command_line(synth_set, colour_bundle, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "OPENCV_LOG_LEVEL")}
    script = (f"import vidbatch; r = vidbatch.label({synth_set!r}, {colour_bundle!r}, {str(tmp_path / 'out')!r}, "
              "progress=False); print(r.ok)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "6", result.stderr
    noise = [line for line in result.stderr.splitlines() if line.strip()]
    assert noise == [], noise
