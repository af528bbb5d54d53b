import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402

from helpers import SHARED_VIDEOS, make_colour_bundle, shared_videos  # noqa: E402


@pytest.fixture(scope="session")
def synth_set(tmp_path_factory):
    """3 classes x 2 short videos (96x72, 2 s at 25 fps) with a labeled manifest."""
    from vidbatch.synth import SynthSpec, make_dataset

    folder = tmp_path_factory.mktemp("synth")
    manifest = make_dataset(str(folder), videos_per_class=2, seed=7, spec=SynthSpec(width=96, height=72, seconds=2.0))
    return manifest


@pytest.fixture(scope="session")
def colour_bundle(tmp_path_factory):
    return make_colour_bundle(str(tmp_path_factory.mktemp("bundle") / "colour"))


@pytest.fixture
def shared_video_paths():
    paths = shared_videos()
    if not paths:
        pytest.skip(f"shared real videos not present at {os.path.abspath(SHARED_VIDEOS)}")
    return paths
