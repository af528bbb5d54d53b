import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidbatch import ConfigError
from vidbatch.stages.sampling import ClipAssembler, ClipSampling, FrameSampling


def kept(fps, video_fps, frames):
    sampler = FrameSampling(fps).sampler()
    return [i for i in range(frames) if sampler.keep(i / video_fps)]


def test_every_frame_mode():
    assert kept(0, 25, 10) == list(range(10))


def test_five_per_second_of_25fps():
    assert kept(5, 25, 50) == list(range(0, 50, 5))


@settings(max_examples=200, deadline=None)
@given(st.floats(0.5, 30), st.floats(5, 120), st.integers(1, 600))
def test_sampled_count_matches_rate(fps, video_fps, frames):
    duration = frames / video_fps
    count = len(kept(fps, video_fps, frames))
    expected = min(frames, duration * fps)
    assert abs(count - expected) <= 1 + 1e-9 or count == frames


def test_invalid_rates():
    with pytest.raises(ConfigError):
        FrameSampling(-1)
    with pytest.raises(ConfigError):
        ClipSampling(0, 1)


def test_clip_assembler_windows_and_stride():
    assembler = ClipAssembler(ClipSampling(clip_len=3, stride=2))
    clips = [c for c in (assembler.push(np.full((1,), i)) for i in range(8)) if c is not None]
    assert [c.ravel().tolist() for c in clips] == [[0, 1, 2], [2, 3, 4], [4, 5, 6]]
