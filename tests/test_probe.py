"""Looking at a file before decoding it: the cause of a problem, in words, from the file's own bytes."""

import os

import pytest

from tests.support.badfiles import (
    png_file,
    text_file,
    truncated,
    truncated_inside_moov,
    zero_bytes,
)
from vidbatch import VideoError
from vidbatch.stages.probe import check_file, describe_unopenable, sniff_non_video


def test_missing_empty_and_folder(tmp_path):
    with pytest.raises(VideoError, match="not found: no file at clip.mp4"):
        check_file(str(tmp_path / "nope.mp4"), "clip.mp4")
    with pytest.raises(VideoError, match="empty file: z has 0 bytes"):
        check_file(zero_bytes(str(tmp_path)), "z")
    with pytest.raises(VideoError, match="not a file"):
        check_file(str(tmp_path), "folder")


def test_images_and_text_named_like_videos(tmp_path):
    assert sniff_non_video(png_file(str(tmp_path))) == "not a video: the file is a PNG image"
    assert sniff_non_video(text_file(str(tmp_path))) is None  # no magic number: OpenCV gets to try
    assert describe_unopenable(text_file(str(tmp_path))) == "not a video: the file is text"


def test_a_cut_short_mp4_is_named_as_such(synth_set, tmp_path):
    source = os.path.join(os.path.dirname(synth_set), "videos", "ball_000.mp4")
    assert sniff_non_video(source) is None
    assert describe_unopenable(truncated(source, str(tmp_path), 0.3)).startswith("truncated or incomplete MP4:")
    assert "truncated or incomplete MP4" in describe_unopenable(truncated_inside_moov(source, str(tmp_path)))
