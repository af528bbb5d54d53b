"""Segments: runs of one label, from their first item's time to the next run's (the last to the video's end)."""

import numpy as np

from vidbatch.stages.segments import find_segments


def test_runs_become_segments_with_mean_scores():
    segments = find_segments(np.array([0, 0, 1, 1, 1, 0]), np.array([0.5, 0.7, 0.9, 0.9, 0.6, 1.0]),
                             np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5]), end_s=3.2)
    assert [(s.label_index, s.start_s, s.end_s) for s in segments] == [(0, 0.0, 1.0), (1, 1.0, 2.5), (0, 2.5, 3.2)]
    assert np.isclose(segments[0].score, 0.6) and np.isclose(segments[1].score, 0.8)
    assert [s.index for s in segments] == [0, 1, 2]


def test_no_items_no_segments_and_end_never_before_the_last_item():
    assert find_segments(np.array([]), np.array([]), np.array([]), end_s=1.0) == []
    (only,) = find_segments(np.array([2, 2]), np.array([1.0, 1.0]), np.array([0.0, 4.0]), end_s=3.0)
    assert only.end_s == 4.0
