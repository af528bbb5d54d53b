"""`--sampling keyframes`: only the key frames are decoded (PyAV), on real files written here with known GOPs."""

import fractions
import json
import os

import numpy as np
import pandas as pd
import pytest

import vidbatch
from vidbatch import ConfigError
from vidbatch.stages.decode import DecodeSpec
from vidbatch.stages.decode_job import make_decoder
from vidbatch.stages.keyframes import KeyframeDecoder
from vidbatch.stages.sampling import KeyframeSampling

RED, BLUE = (230, 30, 30), (30, 30, 230)  # RGB: the colour model calls them ball and box


def write(path, colours, gop, fps=10):
    """An MPEG-4 file with a key frame every `gop` frames; frame i has colour colours[i]."""
    import av

    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=fps)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    stream.codec_context.gop_size = gop
    stream.time_base = fractions.Fraction(1, fps)
    for i, colour in enumerate(colours):
        frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), colour, np.uint8), format="rgb24")
        frame.pts = i
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return str(path)


@pytest.fixture
def two_colours(tmp_path):
    return write(tmp_path / "two.mp4", [RED] * 20 + [BLUE] * 20, gop=10)


def test_only_key_frames_are_decoded_at_their_true_index_and_time(two_colours):
    decoder = make_decoder(two_colours, DecodeSpec(width=32, height=32, sampling=KeyframeSampling()))
    assert isinstance(decoder, KeyframeDecoder)
    chunks = list(decoder.chunks())
    index = np.concatenate([c["frame_index"] for c in chunks])
    assert index.tolist() == [0, 10, 20, 30]
    np.testing.assert_allclose(np.concatenate([c["timestamp_s"] for c in chunks]), [0.0, 1.0, 2.0, 3.0], atol=1e-6)
    frames = np.concatenate([c["frames"] for c in chunks])
    assert frames.shape == (4, 32, 32, 3) and frames[0, 16, 16, 0] > 200 and frames[3, 16, 16, 2] > 200  # RGB order
    assert decoder.info.frames_decoded == 4 and decoder.info.frame_count == 40 and decoder.info.duration_s == 4.0
    decoder.close()


def test_label_with_keyframes_and_report_videos_with_too_few(two_colours, colour_bundle, tmp_path):
    single = write(tmp_path / "one_key.mp4", [BLUE] * 30, gop=300)
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"uri": [two_colours, single], "video_id": ["two", "single"]}).to_csv(manifest, index=False)
    result = vidbatch.label(str(manifest), colour_bundle, str(tmp_path / "out"), sampling="keyframes", window=1,
                            progress=False)
    assert result.ok == 2 and len(result.notes) == 1 and "1 video(s) have fewer than 3 key frames" in result.notes[0]
    assert "single" in result.notes[0]
    frames = pd.read_parquet(tmp_path / "out" / "frames").sort_values(["video_id", "frame_index"])
    two = frames[frames.video_id == "two"]
    assert two.frame_index.tolist() == [0, 10, 20, 30] and two.raw_label.tolist() == ["ball", "ball", "box", "box"]
    assert set(two.shot_index) == {0}  # no shot detection between key frames seconds apart
    run = json.load(open(tmp_path / "out" / "run.json"))
    assert run["counts"]["few_keyframes"] == 1 and run["notes"] == result.notes
    assert run["config"]["sampling"] == "keyframes"


def test_a_rerun_with_another_sampling_is_another_run(two_colours, colour_bundle, tmp_path):
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"uri": [two_colours]}).to_csv(manifest, index=False)
    vidbatch.label(str(manifest), colour_bundle, str(tmp_path / "out"), sampling="keyframes", progress=False)
    with pytest.raises(vidbatch.OutputError, match="other settings"):
        vidbatch.label(str(manifest), colour_bundle, str(tmp_path / "out"), progress=False)


def test_clip_models_and_bad_values_are_refused(two_colours, tmp_path):
    from tests.support.helpers import make_colour_bundle

    clip = make_colour_bundle(str(tmp_path / "clip"), kind="clip")
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"uri": [two_colours]}).to_csv(manifest, index=False)
    with pytest.raises(ConfigError, match="Received: sampling='keyframes'"):
        vidbatch.label(str(manifest), clip, str(tmp_path / "out"), sampling="keyframes", progress=False)
    with pytest.raises(ConfigError, match="Received: sampling='every'"):
        vidbatch.label(str(manifest), clip, str(tmp_path / "out"), sampling="every")
    assert not os.path.exists(tmp_path / "out" / "summary.parquet")


def test_a_file_that_is_not_a_video_fails_in_words(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("just some text, not a video\n")
    with pytest.raises(vidbatch.VideoError, match="not a video"):
        make_decoder(str(path), DecodeSpec(width=32, height=32, sampling=KeyframeSampling())).open()
