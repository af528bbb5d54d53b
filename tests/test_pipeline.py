"""The local engine end to end on real files: outputs read back with pandas."""

import json
import os
import shutil
import time

import numpy as np
import pandas as pd
import pytest

import vidbatch
from tests.support.badfiles import (
    avi_cut,
    avi_index_off,
    png_file,
    random_bytes,
    text_file,
    truncated,
    zero_bytes,
)
from vidbatch.apps.synth import SynthSpec, write_video
from vidbatch.stages.smooth import count_switches


def write_manifest(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def synth_rows(manifest):
    return pd.read_csv(manifest).assign(uri=lambda d: [os.path.join(os.path.dirname(manifest), u) for u in d.uri]).to_dict("records")


def label(manifest, model, out, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("decode_workers", 2)
    return vidbatch.label(str(manifest), str(model), str(out), **kw)


def test_labels_synthetic_set_correctly(synth_set, colour_bundle, tmp_path):
    result = label(synth_set, colour_bundle, tmp_path / "out", fps=5, window=4)
    assert (result.videos, result.ok, result.failed, result.exit_code) == (6, 6, 0, 0)
    summary = pd.read_parquet(tmp_path / "out" / "summary.parquet")
    assert (summary["pred_label"] == summary["label"]).all()
    assert summary["frames_classified"].tolist() == [10] * 6 and summary["frames_decoded"].tolist() == [50] * 6
    assert summary["duration_s"].tolist() == [2.0] * 6 and summary["fps"].tolist() == [25.0] * 6
    assert summary[["width", "height"]].values.tolist() == [[96, 72]] * 6
    assert summary["model"].unique().tolist() == ["colour"]
    assert all(len(top) == 3 for top in summary["top_k"]) and (summary["pred_score"] > 0.5).all()
    frames = pd.read_parquet(tmp_path / "out" / "frames", filters=[("video_id", "==", "box_001")])
    assert len(frames) == 10 and set(frames["video_id"]) == {"box_001"}
    assert frames["frame_index"].tolist() == list(range(0, 50, 5))
    assert np.allclose(frames["timestamp_s"], np.arange(10) * 0.2)
    segments = pd.read_parquet(tmp_path / "out" / "segments.parquet")
    assert set(segments["video_id"]) == set(summary["video_id"])
    assert (segments.groupby("video_id")["end_s"].max() == 2.0).all()
    run = json.load(open(tmp_path / "out" / "run.json"))
    assert run["counts"]["ok"] == 6 and run["counts"]["frames_classified"] == 60
    assert run["counts"]["frames_classified_counts"] == "sampled frames"
    assert run["model"]["classes"] == ["ball", "box", "waves"] and len(run["model"]["fingerprint"]) == 64
    assert run["stages"]["items_classified"] == 60 and "keras" in run["versions"]
    layout = run["stages"]["layout"]  # what the engine chose, so a user can see why a run was fast or slow
    assert layout["inference_device"] == "cpu" and layout["decode_workers"] >= 1 and layout["precision"] == "float32"


def test_every_frame_mode(synth_set, colour_bundle, tmp_path):
    summary = label(synth_set, colour_bundle, tmp_path / "out", fps=0, batch_size=16).summary_frame()
    assert (summary["frames_classified"] == summary["frames_decoded"]).all()
    assert (summary["pred_label"] == summary["label"]).all()


def bad_rows(folder, good_video):
    os.makedirs(folder, exist_ok=True)
    return [
        {"video_id": "missing", "uri": os.path.join(folder, "does-not-exist.mp4"), "label": "ball"},
        {"video_id": "zero", "uri": zero_bytes(folder), "label": "ball"},
        {"video_id": "random", "uri": random_bytes(folder), "label": "ball"},
        {"video_id": "text", "uri": text_file(folder), "label": "ball"},
        {"video_id": "png", "uri": png_file(folder), "label": "ball"},
        {"video_id": "truncated", "uri": truncated(good_video, folder, 0.5), "label": "ball"},
        {"video_id": "folder", "uri": folder, "label": "ball"},
        {"video_id": "scheme", "uri": "gopher://host/x.mp4", "label": "ball"},
    ]


def test_bad_videos_fail_alone_and_lose_nothing(synth_set, colour_bundle, tmp_path):
    good = synth_rows(synth_set)
    clean = label(write_manifest(tmp_path / "clean.csv", good), colour_bundle, tmp_path / "clean", fps=5)
    bad = bad_rows(str(tmp_path / "bad"), good[0]["uri"])
    mixed_rows = [bad[0]] + good[:3] + bad[1:] + good[3:]
    mixed = label(write_manifest(tmp_path / "mixed.csv", mixed_rows), colour_bundle, tmp_path / "mixed", fps=5)
    assert (mixed.ok, mixed.failed, mixed.exit_code) == (6, 8, 1)
    summary = pd.read_parquet(tmp_path / "mixed" / "summary.parquet").set_index("video_id")
    assert summary.index.tolist() == [r["video_id"] for r in mixed_rows]  # manifest order, one row each
    errors = summary["error"].to_dict()
    assert errors["missing"].startswith("not found: no file at")
    assert errors["zero"].startswith("empty file")
    assert errors["random"].startswith("not a video")
    assert errors["text"] == "not a video: the file is text"
    assert errors["png"] == "not a video: the file is a PNG image"
    assert errors["truncated"].startswith("truncated or incomplete MP4")
    assert errors["folder"].startswith("not a file")
    assert errors["scheme"].startswith("unsupported uri: unknown URL scheme 'gopher'")
    assert "Traceback" not in " ".join(e for e in errors.values() if isinstance(e, str))
    # good videos are labeled exactly as in a run without the bad ones
    clean_summary = pd.read_parquet(tmp_path / "clean" / "summary.parquet").set_index("video_id")
    ok = summary[summary["status"] == "ok"]
    pd.testing.assert_frame_equal(
        ok[["pred_label", "pred_score", "frames_classified"]], clean_summary[["pred_label", "pred_score", "frames_classified"]]
    )
    cols = ["video_id", "frame_index", "raw_label", "smoothed_label", "smoothed_score"]
    a = pd.read_parquet(tmp_path / "mixed" / "frames")[cols].sort_values(cols[:2]).reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "clean" / "frames")[cols].sort_values(cols[:2]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert clean.ok == 6


def test_flickering_video_is_steadied_by_the_rolling_average(colour_bundle, tmp_path):
    path = str(tmp_path / "flicker.mp4")
    write_video(path, "ball", seed=3, spec=SynthSpec(width=96, height=72, seconds=12, fps=25, flicker=0.3))
    manifest = write_manifest(tmp_path / "m.csv", [{"video_id": "flicker", "uri": path, "label": "ball"}])
    # shot detection off: this synthetic flicker swaps the whole object on single frames, a real content change
    label(manifest, colour_bundle, tmp_path / "out", fps=10, window=8, shot_threshold=None)
    frames = pd.read_parquet(tmp_path / "out" / "frames")
    raw, smoothed = count_switches(frames["raw_label"].to_numpy()), count_switches(frames["smoothed_label"].to_numpy())
    assert raw >= 30 and smoothed * 4 <= raw, (raw, smoothed)
    raw_right, smoothed_right = (frames["raw_label"] == "ball").mean(), (frames["smoothed_label"] == "ball").mean()
    assert smoothed_right > raw_right and smoothed_right >= 0.8, (raw_right, smoothed_right)
    summary = pd.read_parquet(tmp_path / "out" / "summary.parquet")
    assert summary["pred_label"].tolist() == ["ball"]


def test_rerun_resumes_and_settings_change_needs_overwrite(synth_set, colour_bundle, tmp_path):
    first = label(synth_set, colour_bundle, tmp_path / "out", fps=5)
    before = pd.read_parquet(tmp_path / "out" / "summary.parquet")
    second = label(synth_set, colour_bundle, tmp_path / "out", fps=5)
    assert (second.resumed, second.ok) == (6, 6) and first.resumed == 0
    after = pd.read_parquet(tmp_path / "out" / "summary.parquet")
    pd.testing.assert_frame_equal(before, after)
    with pytest.raises(vidbatch.OutputError, match="other settings"):
        label(synth_set, colour_bundle, tmp_path / "out", fps=2)
    third = label(synth_set, colour_bundle, tmp_path / "out", fps=2, overwrite=True)
    assert third.resumed == 0 and (third.summary_frame()["frames_classified"] == 4).all()


def test_hostile_video_ids_stay_inside_out(synth_set, colour_bundle, tmp_path):
    rows = synth_rows(synth_set)[:4]
    for row, hostile in zip(rows, ["../../escape", "/etc/passwd", "a/b/c", "tab\tnew\nline"]):
        row["video_id"] = hostile
    out = tmp_path / "deep" / "out"
    label(write_manifest(tmp_path / "m.csv", rows), colour_bundle, out, fps=5)
    written = [os.path.join(d, f) for d, _, files in os.walk(tmp_path) for f in files]
    outside = [p for p in written if not p.startswith(str(out)) and not p.endswith(".csv")]
    assert outside == []
    summary = pd.read_parquet(out / "summary.parquet")
    assert summary["video_id"].tolist() == ["../../escape", "/etc/passwd", "a/b/c", "tab\tnew\nline"]
    assert sorted(pd.read_parquet(out / "frames")["video_id"].unique()) == sorted(summary["video_id"])


def test_credentials_never_reach_outputs(synth_set, colour_bundle, tmp_path):
    label(synth_set, colour_bundle, tmp_path / "out", storage_options={"key": "AKIASECRETKEY", "secret": "VERYSECRET"})
    for _, _, files in os.walk(tmp_path / "out"):
        pass
    blobs = b"".join(open(os.path.join(d, f), "rb").read() for d, _, fs in os.walk(tmp_path / "out") for f in fs)
    assert b"AKIASECRETKEY" not in blobs and b"VERYSECRET" not in blobs
    assert '"***"' in open(tmp_path / "out" / "run.json").read()


def test_clip_model_runs_over_sliding_clips(synth_set, tmp_path):
    from tests.support.helpers import make_colour_bundle

    bundle = make_colour_bundle(str(tmp_path / "clip"), kind="clip", clip_len=4)
    summary = label(synth_set, bundle, tmp_path / "out", fps=5, clip_stride=2).summary_frame()
    assert (summary["pred_label"] == summary["label"]).all()
    assert summary["frames_classified"].tolist() == [4] * 6  # clips ending at sampled frames 4, 6, 8, 10
    counts = json.load(open(tmp_path / "out" / "run.json"))["counts"]
    assert counts["frames_classified_counts"].startswith("windows of 4 sampled frames")
    frames = pd.read_parquet(tmp_path / "out" / "frames", filters=[("video_id", "==", "ball_000")])
    assert frames["frame_index"].tolist() == [15, 25, 35, 45]


@pytest.mark.shared_data
def test_generated_real_and_missing_mixed(synth_set, colour_bundle, tmp_path, shared_video_paths):
    rows = synth_rows(synth_set)
    rows += [{"video_id": os.path.basename(p), "uri": p, "label": None} for p in shared_video_paths]
    rows.append({"video_id": "missing", "uri": str(tmp_path / "missing.mp4"), "label": None})
    result = label(write_manifest(tmp_path / "m.csv", rows), colour_bundle, tmp_path / "out", fps=5)
    assert (result.failed, result.ok) == (1, len(rows) - 1)
    summary = pd.read_parquet(tmp_path / "out" / "summary.parquet")
    assert summary.loc[summary.status == "failed", "video_id"].tolist() == ["missing"]
    real = summary[summary.video_id.str.contains(r"\.(?:mp4|avi|webm)$")]
    assert (real["frames_classified"] > 0).all() and (real["width"] > 0).all()
    assert set(pd.read_parquet(tmp_path / "out" / "frames")["video_id"]) == set(summary.loc[summary.status == "ok", "video_id"])
    assert len(pd.read_parquet(tmp_path / "out" / "segments.parquet")) >= len(summary) - 1
    shutil.rmtree(tmp_path / "out")


UCF_INDEX_OFF = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.pardir, "shared", "data",
                             "ucf101", "BaseballPitch", "v_BaseballPitch_g10_c01.avi")


def test_an_index_off_by_a_few_frames_labels_with_a_note_and_a_cut_file_fails(colour_bundle, tmp_path):
    rows = [{"video_id": "index_off", "uri": avi_index_off(str(tmp_path))},
            {"video_id": "cut", "uri": avi_cut(str(tmp_path))},
            {"video_id": "gone", "uri": str(tmp_path / "gone.avi")}]
    if os.path.exists(UCF_INDEX_OFF):  # the real file the rule was made for (lists 104 frames, holds 101)
        rows.append({"video_id": "ucf", "uri": os.path.abspath(UCF_INDEX_OFF)})
    result = label(write_manifest(tmp_path / "m.csv", rows), colour_bundle, tmp_path / "out", fps=5)
    summary = pd.read_parquet(tmp_path / "out" / "summary.parquet").set_index("video_id")
    assert (result.ok, result.failed) == (len(rows) - 2, 2)
    assert summary.loc["cut", "status"] == "failed" and summary.loc["cut", "error"].startswith("truncated: decoded")
    noted = summary[summary.status == "ok"]
    assert noted["decode_note"].str.contains("decoded: its index is off by 3").all()
    if "ucf" in noted.index:
        assert "lists 104 frames, 101 decoded" in noted.loc["ucf", "decode_note"]
    run = json.load(open(tmp_path / "out" / "run.json"))
    assert run["counts"]["decode_notes"] == len(noted) and "decode_note" in run["notes"][0]
    # a failed row keeps the integer columns integers (nullable), as pandas reads them back
    assert str(summary["width"].dtype) == "Int32" and pd.isna(summary.loc["gone", "width"])
    assert summary.loc["index_off", "width"] == 64


def test_shots_reset_the_window_and_get_their_own_table(colour_bundle, tmp_path):
    from vidbatch.apps.synth import write_shots_video

    path = str(tmp_path / "shots.mp4")
    write_shots_video(path, ["ball", "box", "ball"], seed=2, spec=SynthSpec(width=96, height=72, seconds=3))
    manifest = write_manifest(tmp_path / "m.csv", [{"video_id": "shots", "uri": path}])
    label(manifest, colour_bundle, tmp_path / "aware", fps=5, window=16)
    label(manifest, colour_bundle, tmp_path / "blind", fps=5, window=16, shot_threshold=None)
    shots = pd.read_parquet(tmp_path / "aware" / "shots.parquet")
    assert shots[["shot_index", "start_s", "end_s", "label"]].values.tolist() == [
        [0, 0.0, 3.0, "ball"], [1, 3.0, 6.0, "box"], [2, 6.0, 9.0, "ball"]]
    aware = pd.read_parquet(tmp_path / "aware" / "frames")
    blind = pd.read_parquet(tmp_path / "blind" / "frames")
    truth = np.where((aware.timestamp_s >= 3.0) & (aware.timestamp_s < 6.0), "box", "ball")
    assert (aware.smoothed_label == truth).all()  # no label bleeds across a cut
    assert (blind.smoothed_label != truth).sum() >= 4  # without cuts the window lags behind each change
    assert aware.shot_index.tolist() == [0] * 15 + [1] * 15 + [2] * 15
    segments = pd.read_parquet(tmp_path / "aware" / "segments.parquet")
    assert segments[["start_s", "label"]].values.tolist() == [[0.0, "ball"], [3.0, "box"], [6.0, "ball"]]
    assert pd.read_parquet(tmp_path / "aware" / "summary.parquet")["shots"].tolist() == [3]


def test_thresholds_and_frame_top_k(synth_set, colour_bundle, tmp_path):
    summary = label(synth_set, colour_bundle, tmp_path / "out", fps=5, frame_threshold=0.999999, video_threshold=0.9999999,
                    unknown_label="unsure", frame_top_k=2).summary_frame()
    frames = pd.read_parquet(tmp_path / "out" / "frames")
    low = frames.smoothed_score < 0.999999
    assert low.any() and (frames.smoothed_label[low] == "unsure").all() and (frames.smoothed_label[~low] != "unsure").all()
    assert ((summary.pred_score < 0.9999999) == (summary.pred_label == "unsure")).all()
    assert frames.top_k.map(len).eq(2).all()
    first = frames.iloc[0]
    assert first.top_k[0]["score"] == pytest.approx(first.smoothed_score, rel=1e-5)
    assert first.top_k[0]["score"] >= first.top_k[1]["score"]


def test_hung_decoder_costs_one_row_through_the_engine(synth_set, colour_bundle, tmp_path):
    """A real hang (SIGSTOP on the decoder process) fails only its video, via --video-timeout."""
    import signal
    import threading

    import psutil

    outcome = {}
    job = threading.Thread(target=lambda: outcome.update(result=label(
        synth_set, colour_bundle, tmp_path / "out", fps=5, decode_workers=1, video_timeout=2.0)))
    job.start()
    me, stopped, deadline = psutil.Process(), None, time.monotonic() + 60
    while stopped is None and time.monotonic() < deadline:
        for child in me.children(recursive=True):
            try:
                if "worker_entry" in " ".join(child.cmdline()):
                    child.send_signal(signal.SIGSTOP)  # the first decoder: it holds the manifest's first video
                    stopped = child
                    break
            except psutil.Error:
                continue
        time.sleep(0.005)
    job.join(timeout=120)
    assert stopped is not None and not job.is_alive()
    summary = outcome["result"].summary_frame().set_index("video_id")
    assert summary.loc["ball_000", "status"] == "failed"
    assert summary.loc["ball_000", "error"] == "timeout: the decoder made no progress for 2 s (--video-timeout)"
    assert (summary.drop(index="ball_000").status == "ok").all()
    assert not stopped.is_running() or stopped.status() == psutil.STATUS_ZOMBIE


def test_a_video_no_engine_committed_gets_a_failed_row_and_the_others_stay(tmp_path):
    """The pipeline's last guard, whatever the engine: a video with no commit gets a failed row saying so."""
    from tests.test_output import outcome_ok, prepared
    from vidbatch.pipeline import LOST, fail_lost

    manifest, out = prepared(tmp_path, ["done.mp4", "lost.mp4"])
    done, lost = manifest.tasks
    out.commit_batch([outcome_ok(done)])
    winners = fail_lost(out, manifest, "m", commit_videos=256)
    assert not winners.missing().any()
    ledger = out.ledger()
    assert ledger.column_for([done.key, lost.key], "status") == ["ok", "failed"]
    assert ledger.column_for([lost.key], "error") == [LOST]
    assert (fail_lost(out, manifest, "m", commit_videos=256).at == winners.at).all()
    assert len(out._records()) == 2  # nothing more was committed the second time
