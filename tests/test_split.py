"""How many decoders a long video gets, and the local engine labeling a video split between decoders exactly as it
labels it in one pass."""

import json
import os

import pandas as pd
import pytest

pytest.importorskip("av")

import vidbatch  # noqa: E402
from tests.support.longvideos import write, write_codec  # noqa: E402
from tests.support.raytools import assert_same_answers  # noqa: E402
from vidbatch.apps.synth import SynthSpec, write_video  # noqa: E402
from vidbatch.stages import split  # noqa: E402
from vidbatch.stages.decode import DecodeSpec  # noqa: E402


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    return write_codec(str(tmp_path_factory.mktemp("long")), "h264_bframes.mp4", seconds=20)


def test_parts_follow_decode_work_and_decoders(long_video, monkeypatch):
    path = long_video  # 500 frames of 160x120: 10.4 frames of 720p decode work
    assert split.parts_for(path, decoders=4) == 1  # below SPLIT_MIN_BYTES: not even probed
    monkeypatch.setattr(split, "SPLIT_MIN_BYTES", 0)
    assert split.parts_for(path, decoders=4) == 1  # short: one part
    monkeypatch.setattr(split, "PART_MIN_WORK", 3)
    assert split.parts_for(path, decoders=4) == 3  # 10.4 // 3
    assert split.parts_for(path, decoders=2) == 2  # never more parts than decoders
    assert split.parts_for(path, decoders=1) == 1
    assert split.parts_for("s3://bucket/a.mp4", decoders=4) == 1  # remote videos are not split (yet)
    assert split.parts_for(str(os.path.dirname(path)) + "/missing.mp4", decoders=4) == 1  # the decoder says why


def test_what_turns_splitting_off():
    frames = DecodeSpec(width=32, height=32)
    assert split.unsplittable(frames, streaming=False) is None
    assert "streaming" in split.unsplittable(frames, streaming=True)
    assert "thumbnails" in split.unsplittable(DecodeSpec(width=32, height=32, thumbnails=True), streaming=False)


def test_the_local_engine_labels_a_split_video_as_it_labels_it_whole(long_video, colour_bundle, tmp_path, monkeypatch):
    short = str(tmp_path / "short.mp4")
    write_video(short, "box", seed=3, spec=SynthSpec(width=96, height=72, seconds=3.0))
    manifest = tmp_path / "m.csv"
    avi = write(str(tmp_path / "h264.avi"), "libx264", {"bf": "2", "g": "50"}, seconds=12)  # not seekable
    pd.DataFrame({"video_id": ["long", "short", "avi"], "uri": [long_video, short, avi]}).to_csv(manifest, index=False)
    monkeypatch.setattr(split, "SPLIT_MIN_BYTES", 0)
    monkeypatch.setattr(split, "PART_MIN_WORK", 3)  # the 20 s test video counts as a long one
    outs = {}
    for decoders in (1, 2):
        outs[decoders] = out = str(tmp_path / f"out{decoders}")
        vidbatch.label(str(manifest), colour_bundle, out, fps=5, window=4, decode_workers=decoders, progress=False)
    with open(os.path.join(outs[2], "run.json")) as handle:
        layout = json.load(handle)["stages"]["layout"]
    assert layout["split_long_videos"] == {"videos": 2, "parts": 4, "one_pass": 1, "off": None}
    with open(os.path.join(outs[1], "run.json")) as handle:
        assert json.load(handle)["stages"]["layout"]["split_long_videos"]["videos"] == 0
    assert_same_answers(outs[1], outs[2])
    shots = [pd.read_parquet(f"{out}/shots.parquet").sort_values(["video_id", "shot_index"]) for out in outs.values()]
    pd.testing.assert_frame_equal(shots[0].reset_index(drop=True), shots[1].reset_index(drop=True))
    assert len(shots[0][shots[0].video_id == "long"]) > 1  # the long video's cuts were found, on both sides of edges
    summary = pd.read_parquet(f"{outs[2]}/summary.parquet").set_index("video_id")
    assert summary.loc["long", "status"] == "ok" and summary.loc["long", "frames_decoded"] == 500
    assert summary.loc["avi", "status"] == "ok" and summary.loc["avi", "frames_decoded"] == 300
    assert summary.loc["avi", "decode_note"].startswith("decoded in one pass, not in 2 parts: its stream has B-frames")
    assert pd.isna(summary.loc["long", "decode_note"])  # split exactly: nothing to say


def test_the_ray_engine_splits_long_videos_between_its_decode_actors(long_video, colour_bundle, tmp_path, monkeypatch):
    """Each part of a long video is a row of its own, decoded by whichever decode actor is free (seeking to it),
    cut into ranges with the rolling window's pre-roll; the committer settles the parts' ranges (range numbers,
    shot numbers) before their frames rows are written: the tables equal a one-pass decode's."""
    ray = pytest.importorskip("ray")
    from tests.support.longvideos import write_codec
    from vidbatch.core.config import RayOptions

    folder = str(tmp_path)
    videos = {"long": long_video, "webm": write_codec(folder, "vp8.webm", seconds=16),
              "mpeg4": write_codec(folder, "mpeg4.avi", seconds=16),
              "avi": write(str(tmp_path / "h264.avi"), "libx264", {"bf": "2", "g": "50"}, seconds=12)}  # not seekable
    short = str(tmp_path / "short.mp4")
    write_video(short, "box", seed=3, spec=SynthSpec(width=96, height=72, seconds=3.0))
    videos["short"] = short
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"video_id": list(videos), "uri": list(videos.values())}).to_csv(manifest, index=False)
    monkeypatch.setattr(split, "SPLIT_MIN_BYTES", 0)  # read on the driver, handed to the workers
    monkeypatch.setattr(split, "PART_MIN_WORK", 3)
    options = dict(fps=5, window=4, progress=False)
    one = str(tmp_path / "one")
    vidbatch.label(str(manifest), colour_bundle, one, decode_workers=1, **options)
    out = str(tmp_path / "ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:  # two decode actors of half a CPU each; parts cut into ranges of 7 items (and 3 of pre-roll)
        vidbatch.label(str(manifest), colour_bundle, out, engine="ray", ray=RayOptions(decode_cpus=0.5, range_items=7),
                       **options)
    finally:
        ray.shutdown()
    with open(os.path.join(out, "run.json")) as handle:
        layout = json.load(handle)["stages"]["layout"]
    assert layout["decode_actors"] == 2
    assert layout["split_long_videos"] == {"videos": 4, "parts": 8, "one_pass": 1, "off": None}
    assert_same_answers(one, out)
    for table, order in (("shots.parquet", ["video_id", "shot_index"]), ("frames", ["video_id", "frame_index"])):
        a, b = (pd.read_parquet(f"{o}/{table}").sort_values(order).reset_index(drop=True) for o in (one, out))
        columns = ["video_id", "shot_index"] + (["start_s", "end_s", "label"] if table == "shots.parquet" else
                                                ["frame_index", "timestamp_s"])
        pd.testing.assert_frame_equal(a[columns], b[columns])
    shots = pd.read_parquet(f"{out}/shots.parquet").groupby("video_id").size()
    assert (shots.drop("short") > 1).all()  # cuts to number on both sides of the parts' edges
    summary = pd.read_parquet(f"{out}/summary.parquet").set_index("video_id")
    assert summary.loc["avi", "decode_note"].startswith("decoded in one pass, not in 2 parts: its stream has B-frames")
    assert pd.isna(summary.loc["long", "decode_note"]) and summary.loc["long", "frames_decoded"] == 500
