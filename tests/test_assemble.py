"""The assembly stage: one video's probabilities become its frames, segments, shots and summary record."""

import numpy as np
import pytest

from vidbatch.core.config import LabelConfig
from vidbatch.io.schema import (
    FRAMES_SCHEMA,
    SEGMENTS_SCHEMA,
    SHOTS_SCHEMA,
    SUMMARY_SCHEMA,
)
from vidbatch.stages.assemble import assemble_failed, assemble_ok

CLASSES = ["a", "b"]
INFO = {"fps": 10.0, "frames_decoded": 60, "duration_s": 6.0, "width": 64, "height": 48}


def config(**options):
    return LabelConfig(manifest="m.csv", model="m", out="o", **options)


def video(cut_at=None):
    """Class a for 3 s, then class b for 3 s, one item per second... per half second (12 items)."""
    probs = np.array([[0.9, 0.1]] * 6 + [[0.2, 0.8]] * 6, np.float32)
    cuts = np.zeros(12, bool)
    if cut_at is not None:
        cuts[cut_at] = True
    return np.arange(0, 60, 5), np.arange(12) * 0.5, probs, cuts


def test_ok_video_rows_follow_the_schemas():
    index, stamps, probs, cuts = video()
    outcome = assemble_ok("v", "v-key", CLASSES, index, stamps, probs, INFO, config(window=4, top_k=2), "model-x", 1.5,
                          shot_cut=cuts)
    assert outcome.ok and outcome.frames.schema == FRAMES_SCHEMA
    assert set(outcome.record) <= set(SUMMARY_SCHEMA.names) and outcome.record["model"] == "model-x"
    assert outcome.record["frames_classified"] == 12 and outcome.record["shots"] == 1
    assert [s["label"] for s in outcome.segments] == ["a", "b"]
    assert set(outcome.segments[0]) == set(SEGMENTS_SCHEMA.names) and set(outcome.shots[0]) == set(SHOTS_SCHEMA.names)
    assert outcome.segments[-1]["end_s"] == 6.0  # the last segment ends at the video's duration


def test_window_lag_and_a_shot_cut_that_resets_it():
    index, stamps, probs, cuts = video()
    lagging = assemble_ok("v", "k", CLASSES, index, stamps, probs, INFO, config(window=8), "m", 0.0, shot_cut=cuts)
    index, stamps, probs, cuts = video(cut_at=6)
    reset = assemble_ok("v", "k", CLASSES, index, stamps, probs, INFO, config(window=8), "m", 0.0, shot_cut=cuts)
    smoothed = lambda outcome: outcome.frames.column("smoothed_label").to_pylist()  # noqa: E731
    assert smoothed(lagging)[6] == "a"  # the rolling window still remembers the first half
    assert smoothed(reset)[6] == "b" and reset.record["shots"] == 2  # the cut restarts it
    assert [s["start_s"] for s in reset.shots] == [0.0, 3.0]


def test_items_arrive_in_any_order():
    index, stamps, probs, cuts = video()
    order = np.random.default_rng(0).permutation(12)
    shuffled = assemble_ok("v", "k", CLASSES, index[order], stamps[order], probs[order], INFO, config(), "m", 0.0,
                           shot_cut=cuts[order])
    straight = assemble_ok("v", "k", CLASSES, index, stamps, probs, INFO, config(), "m", 0.0, shot_cut=cuts)
    assert shuffled.frames.equals(straight.frames) and shuffled.segments == straight.segments


@pytest.mark.parametrize("threshold,expected", [(0.95, "unknown"), (0.5, "a")])
def test_video_threshold(threshold, expected):
    index, stamps, probs, cuts = video()
    probs[6:] = [0.7, 0.3]
    outcome = assemble_ok("v", "k", CLASSES, index, stamps, probs, INFO, config(video_threshold=threshold), "m", 0.0)
    assert outcome.record["pred_label"] == expected


def test_failed_video_keeps_its_message():
    outcome = assemble_failed("v", "k", "not found: no file at v.mp4", None, "m", 0.2)
    assert not outcome.ok and outcome.frames is None and outcome.record["error"] == "not found: no file at v.mp4"
    assert outcome.record["shots"] is None and outcome.record["model"] == "m"
