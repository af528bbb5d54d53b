"""Hard-cut detection on frames made here: a cut is a large colour change that is also a spike."""

import numpy as np

from vidbatch.stages.shots import ShotDetector


def frame(colour, noise=0, seed=0):
    rng = np.random.default_rng(seed)
    image = np.full((72, 96, 3), colour, np.uint8).astype(int) + rng.integers(-noise, noise + 1, (72, 96, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def cuts(frames, threshold=0.3):
    marked = list(ShotDetector(threshold).mark((f, None, i) for i, f in enumerate(frames)))
    assert [i for i, _ in marked] == list(range(len(frames)))  # every frame comes out once, in order
    return [i for i, cut in marked if cut]


def test_a_change_of_scene_is_a_cut_and_the_first_frame_never_is():
    red, blue = (20, 20, 200), (200, 60, 20)  # BGR
    frames = [frame(red, 8, s) for s in range(10)] + [frame(blue, 8, s) for s in range(10, 20)]
    assert cuts(frames) == [10]


def test_noise_and_steady_motion_are_not_cuts():
    frames = [frame((30 + 3 * i, 90, 160), 20, i) for i in range(30)]  # a slow colour drift under heavy noise
    assert cuts(frames) == []


def test_a_single_flashed_frame_is_not_a_cut_and_a_lasting_change_is():
    red, green = (20, 20, 200), (40, 210, 40)
    flash = [frame(red, 8, s) for s in range(10)] + [frame(green, 8, 99)] + [frame(red, 8, s) for s in range(11, 20)]
    assert cuts(flash) == []  # a camera flash, an explosion: the shot goes on
    lasting = [frame(red, 8, s) for s in range(10)] + [frame(green, 8, s) for s in range(10, 20)]
    assert cuts(lasting) == [10]
    at_the_end = [frame(red, 8, s) for s in range(10)] + [frame(green, 8, 99)]
    assert cuts(at_the_end) == [10]  # nothing follows the last frame: a spike there counts


def test_threshold_bounds_what_counts():
    frames = [frame((20, 20, 200), 8, 0), frame((200, 60, 20), 8, 1)]
    assert cuts(frames, threshold=0.3) == [1] and cuts(frames, threshold=1.0) == []  # the distance is at most 1
