"""A long video cut into parts, each decoded by its own decoder after an exact seek, equals its one-pass decode."""

import os

import numpy as np
import pytest

av = pytest.importorskip("av")  # noqa: F841  (the optional extra the seeking decoder needs)

from tests.support.helpers import SHARED_VIDEOS  # noqa: E402
from tests.support.longvideos import CODECS, write, write_codec  # noqa: E402
from vidbatch.stages import split  # noqa: E402
from vidbatch.stages.decode import DecodeSpec, VideoDecoder  # noqa: E402
from vidbatch.stages.sampling import FrameSampling  # noqa: E402
from vidbatch.stages.seek import NotSeekable, SeekIndex, SeekingDecoder  # noqa: E402

ARRAYS = ("frames", "frame_index", "timestamp_s", "shot_cut")


def _decode(decoder):
    with decoder:
        chunks = list(decoder.chunks())
    arrays = {name: np.concatenate([c[name] for c in chunks]) for name in ARRAYS} if chunks else None
    return arrays, decoder.info.as_dict()


def _assert_parts_equal_one_pass(path, fps, parts):
    spec = DecodeSpec(width=48, height=32, sampling=FrameSampling(fps), chunk_frames=16, shot_threshold=0.3)
    whole, whole_info = _decode(VideoDecoder(path, spec))
    pieces, info = [], {}
    for part in range(parts):
        arrays, part_info = _decode(SeekingDecoder(path, spec, part=part, parts=parts))
        if arrays is not None:
            pieces.append(arrays)
        info = split.merge_part_info(info, part_info)
    joined = {name: np.concatenate([p[name] for p in pieces]) for name in ARRAYS}
    for name in ARRAYS:  # the pixels too: PyAV after a seek decodes what OpenCV decodes in one pass
        np.testing.assert_array_equal(joined[name], whole[name], err_msg=f"{os.path.basename(path)}: {name}")
    for name in ("frames_decoded", "frames_sampled", "duration_s", "fps", "frame_count", "width", "height"):
        assert info[name] == whole_info[name], name
    return whole, info


@pytest.fixture(scope="module")
def codec_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("codecs")
    return {name: write_codec(str(folder), name, seconds=20) for name in CODECS}


@pytest.mark.parametrize("name", sorted(CODECS))
def test_parts_equal_a_one_pass_decode_for_every_codec(codec_videos, name):
    whole, info = _assert_parts_equal_one_pass(codec_videos[name], fps=2.0, parts=3)
    assert whole["shot_cut"].any() and info["note"] == ""  # cuts exist to get wrong, and it was split
    SeekIndex.read(codec_videos[name])  # seekable: no one-pass fallback hid a difference


@pytest.mark.parametrize("name", ["h264_open_gop.mp4", "vp8.webm", "mpeg4.avi"])
def test_every_frame_sampled_equals_too(codec_videos, name):
    # every frame sampled: the shot detector's state at an edge comes from the replayed frames alone
    _assert_parts_equal_one_pass(codec_videos[name], fps=0.0, parts=2)


def test_h264_in_avi_is_decoded_in_one_pass_and_says_why(tmp_path):
    path = write(str(tmp_path / "h264.avi"), "libx264", {"bf": "2", "g": "50"}, seconds=6)
    with pytest.raises(NotSeekable, match="B-frames"):
        SeekIndex.read(path)
    _whole, info = _assert_parts_equal_one_pass(path, fps=2.0, parts=2)
    assert info["note"].startswith("decoded in one pass, not in 2 parts: its stream has B-frames")


@pytest.mark.shared_data
def test_shared_real_videos_split_exactly(shared_video_paths):
    names = {"bigbuckbunny.mp4", "scene_cuts.mp4", "test.webm", "person01_boxing_d1_uncomp.avi", "vtest_h264.avi"}
    paths = [p for p in shared_video_paths if os.path.basename(p) in names]
    assert len(paths) == len(names), f"expected {sorted(names)} in {SHARED_VIDEOS}"
    for path in paths:
        _assert_parts_equal_one_pass(path, fps=5.0, parts=2)


def test_a_part_with_no_sampled_frame_of_its_own_decodes_nothing(codec_videos):
    # 20 s at 0.1 fps: frames 0 and 250 are sampled; of 3 parts (frames 0-166, 167-333, 334-499) the last has none
    path = codec_videos["h264_bframes.mp4"]
    _assert_parts_equal_one_pass(path, fps=0.1, parts=3)
    spec = DecodeSpec(width=48, height=32, sampling=FrameSampling(0.1), shot_threshold=0.3)
    arrays, info = _decode(SeekingDecoder(path, spec, part=2, parts=3))
    assert arrays is None and info["frames_decoded"] == 500  # it still reports the whole video


@pytest.mark.parametrize("shots", [0.3, None])
def test_a_part_sends_its_preroll_as_the_one_pass_decode_has_it(codec_videos, shots):
    """The Ray engine's ranges of a split video carry the rolling window's pre-roll: a part sends up to `preroll`
    sampled items before its own (pixels, indices and cuts as in one pass), and says how many."""
    path = codec_videos["h264_bframes.mp4"]
    spec = DecodeSpec(width=48, height=32, sampling=FrameSampling(2.0), chunk_frames=16, shot_threshold=shots)
    whole, _ = _decode(VideoDecoder(path, spec))
    own = [_decode(SeekingDecoder(path, spec, part=p, parts=3))[0] for p in range(3)]
    for part in range(3):
        arrays, info = _decode(SeekingDecoder(path, spec, part=part, parts=3, preroll=5))
        start = int(np.searchsorted(whole["frame_index"], own[part]["frame_index"][0]))
        assert info["preroll"] == min(5, start)  # part 0 has nothing before it
        sent = slice(start - info["preroll"], start + len(own[part]["frame_index"]))
        for name in ARRAYS:
            np.testing.assert_array_equal(arrays[name], whole[name][sent], err_msg=name)
