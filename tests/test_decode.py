import os

import numpy as np
import pytest

from tests.support.badfiles import (
    avi_cut,
    avi_index_off,
    one_frame,
    png_file,
    random_bytes,
    text_file,
    truncated,
    truncated_inside_moov,
    zero_bytes,
)
from vidbatch.core.errors import VideoError
from vidbatch.stages.decode import DecodeSpec, VideoDecoder
from vidbatch.stages.sampling import ClipSampling, FrameSampling


def decode_all(path, fps=0.0, size=(32, 24), chunk=8, clip=None):
    decoder = VideoDecoder(path, DecodeSpec(width=size[0], height=size[1], sampling=FrameSampling(fps), chunk_frames=chunk, clip=clip))
    chunks = list(decoder.chunks())
    decoder.close()
    return chunks, decoder.info


def first_video(manifest, name="ball_000"):
    return os.path.join(os.path.dirname(manifest), "videos", f"{name}.mp4")


def test_every_frame_streams_in_chunks(synth_set):
    chunks, info = decode_all(first_video(synth_set), fps=0, chunk=8)
    assert info.frames_decoded == 50 and info.frame_count == 50 and info.fps == 25
    assert all(len(c["frames"]) <= 8 for c in chunks)
    index = np.concatenate([c["frame_index"] for c in chunks])
    stamps = np.concatenate([c["timestamp_s"] for c in chunks])
    assert index.tolist() == list(range(50))
    np.testing.assert_allclose(stamps, index / 25.0, atol=1e-6)
    frames = np.concatenate([c["frames"] for c in chunks])
    assert frames.shape == (50, 24, 32, 3) and frames.dtype == np.uint8
    assert info.duration_s == pytest.approx(2.0)


def test_sampling_keeps_true_indices_and_rgb_order(synth_set):
    chunks, info = decode_all(first_video(synth_set), fps=5)
    index = np.concatenate([c["frame_index"] for c in chunks])
    assert index.tolist() == list(range(0, 50, 5))
    assert info.frames_sampled == 10 and info.frames_decoded == 50
    frame = chunks[0]["frames"][0].astype(int)
    # the ball is red: in RGB order the reddest pixel has R far above G and B
    redness = frame[..., 0] - (frame[..., 1] + frame[..., 2]) / 2
    assert redness.max() > 80


def test_clips_are_consecutive_sampled_frames(synth_set):
    chunks, _ = decode_all(first_video(synth_set), fps=5, clip=ClipSampling(clip_len=4, stride=2))
    clips = np.concatenate([c["frames"] for c in chunks])
    index = np.concatenate([c["frame_index"] for c in chunks])
    assert clips.shape[1:] == (4, 24, 32, 3)
    assert index.tolist() == [15, 25, 35, 45]  # each clip stamped with its last frame


@pytest.mark.parametrize(
    "make,match",
    [
        (zero_bytes, "empty file"),
        (random_bytes, "not a video"),
        (text_file, "not a video: the file is text"),
        (png_file, "not a video: the file is a PNG image"),
    ],
)
def test_bad_files_fail_in_words(tmp_path, make, match):
    path = make(str(tmp_path))
    with pytest.raises(VideoError, match=match):
        decode_all(path)


def test_missing_and_directory(tmp_path):
    with pytest.raises(VideoError, match="not found"):
        decode_all(str(tmp_path / "missing.mp4"))
    with pytest.raises(VideoError, match="is a folder"):
        decode_all(str(tmp_path))


@pytest.mark.parametrize("fraction", [0.001, 0.3, 0.7, 0.99])
def test_truncated_mp4(synth_set, tmp_path, fraction):
    path = truncated(first_video(synth_set), str(tmp_path), fraction)
    with pytest.raises(VideoError, match="truncated or incomplete MP4"):
        decode_all(path)


def test_a_container_index_off_by_a_few_frames_is_labeled_with_a_note(tmp_path):
    """The container lists 103 frames, the stream holds 100: an index off by 0.12 s, not a truncated video."""
    chunks, info = decode_all(avi_index_off(str(tmp_path), frames=100, extra=3))
    assert info.frame_count == 103 and info.frames_decoded == 100
    assert sum(len(c["frames"]) for c in chunks) == 100
    assert "lists 103 frames, 100 decoded" in info.note and "off by 3" in info.note


def test_a_stream_that_really_ends_early_still_fails(tmp_path):
    """Half an AVI: its headers list 100 frames, the stream stops at about 40 (seconds missing)."""
    with pytest.raises(VideoError, match=r"truncated: decoded \d+ of the 100 frames .* s missing"):
        decode_all(avi_cut(str(tmp_path), frames=100, fraction=0.5))


def test_an_intact_video_has_no_note(synth_set):
    assert decode_all(first_video(synth_set))[1].note == ""


def test_truncated_inside_moov(synth_set, tmp_path):
    with pytest.raises(VideoError, match="'moov' box is cut off"):
        decode_all(truncated_inside_moov(first_video(synth_set), str(tmp_path)))


def test_one_frame_video(tmp_path):
    chunks, info = decode_all(one_frame(str(tmp_path)), fps=5)
    assert info.frames_decoded == 1 and sum(len(c["frames"]) for c in chunks) == 1


def test_clip_model_on_too_short_video(tmp_path):
    with pytest.raises(VideoError, match="too short for the clip model"):
        decode_all(one_frame(str(tmp_path)), clip=ClipSampling(4, 4))


def test_huge_frames_are_resized_at_once(tmp_path):
    import cv2

    path = str(tmp_path / "8k.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 5, (7680, 4320))
    frame = np.zeros((4320, 7680, 3), np.uint8)
    frame[:, :3840] = (0, 0, 255)
    for _ in range(3):
        writer.write(frame)
    writer.release()
    chunks, info = decode_all(path, fps=0, size=(32, 18))
    frames = np.concatenate([c["frames"] for c in chunks])
    assert info.width == 7680 and info.height == 4320 and frames.shape == (3, 18, 32, 3)
    assert frames[0, 9, 5, 0] > 200 and frames[0, 9, 28, 0] < 50  # left half red in RGB


@pytest.mark.shared_data
def test_every_shared_real_video_decodes(shared_video_paths):
    for path in shared_video_paths:
        chunks, info = decode_all(path, fps=5, size=(64, 64), chunk=16)
        sampled = sum(len(c["frames"]) for c in chunks)
        stamps = np.concatenate([c["timestamp_s"] for c in chunks])
        assert info.frames_decoded > 0 and sampled > 0, path
        assert np.all(np.diff(stamps) > 0), path
        if info.frame_count:
            assert info.frames_decoded == info.frame_count, path
        assert sampled == pytest.approx(info.duration_s * 5, abs=2), path


def shot_cuts(path, fps):
    chunks, _ = decode_all(path, fps=fps, size=(32, 32))
    decoder_cuts = np.concatenate([c["shot_cut"] for c in chunks])
    return np.concatenate([c["frame_index"] for c in chunks])[decoder_cuts].tolist()


def test_shot_cuts_in_a_synthetic_multi_shot_video(tmp_path):
    from vidbatch.apps.synth import SynthSpec, write_shots_video
    from vidbatch.stages.decode import VideoDecoder

    path = str(tmp_path / "shots.mp4")
    cuts = write_shots_video(path, ["ball", "box", "waves", "ball"], seed=1, spec=SynthSpec(width=96, height=72, seconds=2))
    assert cuts == [50, 100, 150]
    decoder = VideoDecoder(path, DecodeSpec(width=32, height=32, sampling=FrameSampling(0), shot_threshold=0.3))
    found = [int(i) for c in decoder.chunks() for i in c["frame_index"][c["shot_cut"]]]
    assert found == cuts


def test_no_cuts_in_single_shot_synthetic_videos(synth_set):
    from vidbatch.stages.decode import VideoDecoder

    for name in ("ball_000", "box_001", "waves_000"):
        decoder = VideoDecoder(first_video(synth_set, name), DecodeSpec(width=32, height=32, shot_threshold=0.3))
        assert not any(c["shot_cut"].any() for c in decoder.chunks()), name


@pytest.mark.shared_data
@pytest.mark.parametrize("size", [64, 224])  # 64: histogram from the original frame; 224: from the model input
@pytest.mark.parametrize("fps,expected", [(0, [30, 76, 137, 187, 242]), (5, [30, 80, 140, 190, 245])])
def test_scene_cuts_match_the_visible_cuts(shared_video_paths, fps, expected, size):
    """scene_cuts.mp4: five hard cuts, checked by eye on the frames either side (README: shot boundaries)."""
    from vidbatch.stages.decode import VideoDecoder

    path = next(p for p in shared_video_paths if p.endswith("scene_cuts.mp4"))
    decoder = VideoDecoder(path, DecodeSpec(width=size, height=size, sampling=FrameSampling(fps), shot_threshold=0.3))
    found = [int(i) for c in decoder.chunks() for i in c["frame_index"][c["shot_cut"]]]
    assert found == expected  # at 5 fps: the first sampled frame after each cut


@pytest.mark.shared_data
def test_no_cuts_in_single_shot_real_clips(shared_video_paths):
    from vidbatch.stages.decode import VideoDecoder

    for path in shared_video_paths:
        if os.path.basename(path).startswith(("person", "vtest", "test.webm", "bigbuckbunny", "carphone", "realshort")):
            for size in (64, 224):
                decoder = VideoDecoder(path, DecodeSpec(width=size, height=size, sampling=FrameSampling(5), shot_threshold=0.3))
                assert not any(c["shot_cut"].any() for c in decoder.chunks()), (path, size)


def test_variable_frame_rate_uses_true_timestamps(tmp_path):
    from tests.support.badfiles import variable_frame_rate

    path = variable_frame_rate(str(tmp_path))
    chunks, info = decode_all(path, fps=0)
    stamps = np.concatenate([c["timestamp_s"] for c in chunks])
    np.testing.assert_allclose(stamps, [0, 0.04, 0.08, 0.2, 0.24, 0.6, 0.64, 0.68, 1.5, 1.54], atol=1e-6)
    # 2 fps sampling keeps the first frame of each half-second that has one: t=0, 0.6, 1.5
    chunks, _ = decode_all(path, fps=2)
    assert np.concatenate([c["frame_index"] for c in chunks]).tolist() == [0, 5, 8]
    assert info.duration_s >= 1.54


def test_unicode_and_spaces_in_the_path(synth_set, tmp_path):
    import shutil as sh

    odd = tmp_path / "vidéos d'été" / "clip été 1.mp4"
    odd.parent.mkdir()
    sh.copy(first_video(synth_set), odd)
    chunks, info = decode_all(str(odd), fps=5)
    assert info.frames_decoded == 50 and sum(len(c["frames"]) for c in chunks) == 10
