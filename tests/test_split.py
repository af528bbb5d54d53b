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
