from collections import deque

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vidbatch.stages.segments import find_segments
from vidbatch.stages.smooth import (
    count_switches,
    label_frames,
    rolling_average,
    video_top_k,
)


def tutorial_reference(probs, window):
    """The Keras tutorial's loop: a deque of the last K predictions, averaged."""
    queue, out = deque(maxlen=window), []
    for p in probs:
        queue.append(p)
        out.append(np.array(queue).mean(axis=0))
    return np.array(out)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 80), st.integers(1, 6)), elements=st.floats(0, 1, width=32)),
       st.integers(1, 40))
def test_rolling_average_equals_the_tutorial_deque(probs, window):
    np.testing.assert_allclose(rolling_average(probs, window), tutorial_reference(probs, window), atol=1e-5)


def test_smoothing_reduces_flicker():
    rng = np.random.default_rng(0)
    probs = np.tile([0.6, 0.3, 0.1], (200, 1))
    flicker = rng.random(200) < 0.3
    probs[flicker] = [0.2, 0.7, 0.1]
    raw = count_switches(label_frames(probs, window=1).smoothed_index)
    assert raw == count_switches(label_frames(probs, window=8).raw_index) > 60
    switches = [count_switches(label_frames(probs, window=w).smoothed_index) for w in (4, 8, 16, 32)]
    # measured: raw 88 switches; windows 4/8/16/32 give 42/20/8/4
    assert switches[0] < raw / 2 and switches[1] < raw / 4 and switches[-1] <= 5
    assert switches == sorted(switches, reverse=True)  # wider windows, less flicker
    assert (label_frames(probs, window=32).smoothed_index == 0).mean() > 0.9


def test_resets_start_a_fresh_window():
    probs = np.array([[1, 0]] * 10 + [[0, 1]] * 3, dtype=np.float32)
    without = label_frames(probs, window=10)
    with_reset = label_frames(probs, window=10, resets=np.array([False] * 10 + [True] + [False] * 2))
    assert without.smoothed_index[-3:].tolist() == [0, 0, 0]
    assert with_reset.smoothed_index[-3:].tolist() == [1, 1, 1]


def test_video_top_k():
    order, scores = video_top_k(np.array([[0.1, 0.7, 0.2], [0.3, 0.5, 0.2]]), k=2)
    assert order.tolist() == [1, 0] and np.allclose(scores, [0.6, 0.2])


def test_segments_cover_the_video():
    labels = np.array([0, 0, 1, 1, 1, 0])
    scores = np.array([0.9, 0.8, 0.6, 0.7, 0.8, 0.5])
    stamps = np.arange(6) * 0.5
    segments = find_segments(labels, scores, stamps, end_s=3.0)
    assert [(s.start_s, s.end_s, s.label_index) for s in segments] == [(0.0, 1.0, 0), (1.0, 2.5, 1), (2.5, 3.0, 0)]
    assert np.isclose(segments[1].score, 0.7)
    assert find_segments(np.array([]), np.array([]), np.array([]), 1.0) == []


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 12),
    st.lists(st.integers(1, 7), min_size=1, max_size=8),
    st.integers(0, 2**31 - 1),
)
def test_streaming_rolling_average_equals_the_whole_video_at_once(window, batch_sizes, seed):
    """`vidbatch annotate` smooths batch by batch: the result must equal the vectorised stage over the whole video."""
    from vidbatch.stages.smooth import RollingAverage

    probs = np.random.default_rng(seed).dirichlet(np.ones(3), size=sum(batch_sizes)).astype(np.float32)
    stream, start = RollingAverage(window), 0
    pieces = []
    for size in batch_sizes:
        pieces.append(stream.update(probs[start:start + size]))
        start += size
    np.testing.assert_allclose(np.concatenate(pieces), rolling_average(probs, window), atol=1e-6)
