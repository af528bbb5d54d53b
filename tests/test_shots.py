"""Hard-cut detection on frames made here: a cut is a large colour change that is also a spike."""

import os

import numpy as np
import pytest

from vidbatch.stages.shots import ShotDetector


def frame(colour, noise=0, seed=0):
    rng = np.random.default_rng(seed)
    image = np.full((72, 96, 3), colour, np.uint8).astype(int) + rng.integers(-noise, noise + 1, (72, 96, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def cuts(frames, threshold=0.3):
    marked = list(ShotDetector(threshold).mark((f, i) for i, f in enumerate(frames)))
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


def write(path, frames, fps=25.0):
    """An MJPEG AVI: every frame compressed alike (no group-of-pictures steps in quality)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames[0].shape[1], frames[0].shape[0]))
    for image in frames:
        writer.write(image)
    writer.release()
    return str(path)


def decoded_cuts(path, fps, resize="stretch", size=(32, 32)):
    from vidbatch.stages.decode import DecodeSpec, VideoDecoder
    from vidbatch.stages.sampling import FrameSampling

    spec = DecodeSpec(width=size[0], height=size[1], sampling=FrameSampling(fps), resize=resize, shot_threshold=0.3)
    with VideoDecoder(path, spec) as decoder:
        return [f.index for f in decoder.frames() if f.shot_cut]


def test_cuts_are_found_on_the_whole_frame_whatever_the_models_crop(tmp_path):
    """A wide picture whose sides change at frame 25 while its centre stays put: a centre-crop model sees no
    change, the shot detector must."""
    def wide(sides, seed):
        image = frame(sides, 6, seed)
        image = np.concatenate([image, image, image], axis=1)  # 288x72
        image[:, 108:180] = frame((128, 128, 128), 6, seed)[:, :72]  # the centre square stays grey
        return image

    path = write(tmp_path / "sides.avi", [wide((20, 20, 200), s) for s in range(25)] +
                 [wide((200, 60, 20), s) for s in range(25, 50)])
    assert decoded_cuts(path, 0, resize="center_crop") == [25]
    assert decoded_cuts(path, 2, resize="center_crop") == [25]


def test_a_cut_between_samples_is_verified_on_the_frames_between(tmp_path):
    """At 2 fps, samples are 12 frames apart; a cut between two of them is confirmed on every frame between (the
    decoder's second reader) and marked at the first sample after it."""
    red, blue = (20, 20, 200), (200, 60, 20)
    cut = write(tmp_path / "cut.avi", [frame(red, 6, s) for s in range(31)] + [frame(blue, 6, s) for s in range(31, 75)])
    assert decoded_cuts(cut, 0) == [31]
    assert decoded_cuts(cut, 2) == [38]  # the first sampled frame after the cut (0, 13, 25, 38, ...)


def test_a_candidate_the_frames_between_do_not_confirm_is_no_cut():
    red, blue = (20, 20, 200), (200, 60, 20)
    frames = [frame(red, 8, s) for s in range(10)] + [frame(blue, 8, s) for s in range(10, 20)]
    asked = []

    def verify(before, after):
        asked.append((before, after))
        return False  # as for fast motion: many small steps between the samples, no jump

    marked = list(ShotDetector(0.3, verify=verify).mark((f, i) for i, f in enumerate(frames)))
    assert [i for i, cut in marked if cut] == [] and asked[0] == (9, 10)


@pytest.mark.shared_data
def test_real_footage_at_the_default_rate(shared_video_paths):
    """cockatoo.mp4 is one hand-held shot (checked by eye; the bird rushes the lens around frames 140-170);
    scene_cuts.mp4 has hard cuts at frames 30, 76, 137, 187 and 242 (the last after the final 2 fps sample)."""
    videos = {os.path.basename(p): p for p in shared_video_paths}
    assert decoded_cuts(videos["cockatoo.mp4"], 2, size=(224, 224)) == []
    assert decoded_cuts(videos["cockatoo.mp4"], 2, resize="center_crop", size=(224, 224)) == []
    assert decoded_cuts(videos["scene_cuts.mp4"], 2, resize="center_crop", size=(224, 224)) == [38, 88, 138, 188]
    assert decoded_cuts(videos["scene_cuts.mp4"], 0, resize="center_crop", size=(224, 224)) == [30, 76, 137, 187, 242]
