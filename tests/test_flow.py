"""Optical flow in the decode stage (two-stream models): to each sampled frame's successor, packed as uint8."""

import json
import os

import cv2
import numpy as np
import pytest

import vidbatch
from tests.support.helpers import shared_videos
from vidbatch.apps.synth import SynthSpec, write_video
from vidbatch.stages.decode import DecodeSpec, VideoDecoder
from vidbatch.stages.flow import OpticalFlow, pack, unpack
from vidbatch.stages.sampling import ClipSampling, FrameSampling


def test_pack_round_trips_to_a_quarter_pixel():
    flow = np.array([[[0.0, -1.25], [3.1, 40.0]]], np.float32)
    np.testing.assert_allclose(unpack(pack(flow)), [[[0.0, -1.25], [3.0, 31.75]]])  # +-32 px is the range


def test_flow_goes_to_the_successor_frame_not_the_next_sampled_one(tmp_path):
    path = str(tmp_path / "ltr.mp4")
    write_video(path, "left_to_right", seed=3, spec=SynthSpec(width=96, height=72, fps=25, seconds=2))
    spec = DecodeSpec(width=64, height=48, sampling=FrameSampling(5.0), flow=True)
    frames = [f for f in VideoDecoder(path, spec).frames()]
    assert all(f.item.shape == (48, 64, 5) for f in frames) and len(frames) == 10
    # the same flow, computed by hand from the frame and the one decoded right after it
    capture = cv2.VideoCapture(path)
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(cv2.resize(frame, (64, 48), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
    flow = OpticalFlow()
    for f in frames[:-1]:
        np.testing.assert_array_equal(f.item[..., :3], decoded[f.index])
        np.testing.assert_array_equal(f.item[..., 3:], flow.packed(decoded[f.index], decoded[f.index + 1]))
    # the ball moves right: where it moves, the horizontal flow is positive, about a frame's step (not 5 frames')
    u = unpack(frames[3].item[..., 3:])[..., 0]
    moving = np.abs(u) > 0.5
    assert moving.any() and np.median(u[moving]) > 0.5 and np.abs(u).max() < 12


def test_clips_with_flow_and_the_last_frame_has_none(tmp_path):
    path = str(tmp_path / "b.mp4")
    write_video(path, "ball", seed=1, spec=SynthSpec(width=64, height=48, fps=10, seconds=1))
    spec = DecodeSpec(width=32, height=32, sampling=FrameSampling(0), flow=True, clip=ClipSampling(4, 4))
    chunks = list(VideoDecoder(path, spec).chunks())
    clips = np.concatenate([c["frames"] for c in chunks])
    assert clips.shape[1:] == (4, 32, 32, 5)
    last = [f for f in VideoDecoder(path, DecodeSpec(width=32, height=32, flow=True)).frames()][-1]
    assert (last.item[..., 3:] == 128).all()  # no successor: zero motion


@pytest.mark.slow
@pytest.mark.shared_data
def test_a_two_stream_bundle_labels_a_real_clip_and_reports_the_flow_cost(tmp_path):
    from vidbatch.model.architectures import two_stream
    from vidbatch.model.bundle import BundleSpec, save_bundle

    real = [p for p in shared_videos() if os.path.basename(p).startswith("person")] if shared_videos() else []
    if not real:
        pytest.skip("../shared/data/videos is absent")
    model = two_stream((6, 48, 48, 5), 2, width=8)
    bundle = save_bundle(model, BundleSpec(classes=("a", "b"), input_size=(48, 48), kind="clip", clip_len=6, flow=True,
                                           preprocessing="none", sample_fps=5.0), str(tmp_path / "ts"))
    manifest = tmp_path / "m.csv"
    manifest.write_text("uri\n" + real[0] + "\n")
    result = vidbatch.label(str(manifest), bundle, str(tmp_path / "out"), progress=False)
    assert result.ok == 1
    run = json.load(open(tmp_path / "out" / "run.json"))
    stages = run["stages"]
    assert run["config"]["fps"] == 5.0 and stages["flow_frames"] >= 20 and stages["flow_ms_per_frame"] > 0
    assert json.load(open(os.path.join(bundle, "bundle.json")))["flow"] is True
