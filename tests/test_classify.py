import numpy as np
import pytest

from vidbatch.model.bundle import load_bundle
from vidbatch.stages.classify import Predictor


def frames_with(colour, n=5, size=32):
    frames = np.full((n, size, size, 3), 40, np.uint8)
    frames[:, 10:20, 10:20] = colour
    return frames


def test_predicts_the_colour_classes(colour_bundle):
    predictor = Predictor(load_bundle(colour_bundle), batch_size=4)
    items = np.concatenate([frames_with((230, 40, 40)), frames_with((40, 60, 230)), frames_with((60, 210, 60))])
    probs = predictor.predict(items)
    assert probs.shape == (15, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert probs.argmax(axis=1).tolist() == [0] * 5 + [1] * 5 + [2] * 5


def test_padding_and_batch_size_do_not_change_answers(colour_bundle):
    rng = np.random.default_rng(0)
    items = rng.integers(0, 256, size=(13, 32, 32, 3), dtype=np.uint8)
    a = Predictor(colour_bundle, batch_size=4).predict(items)
    b = Predictor(colour_bundle, batch_size=32).predict(items)
    singles = np.concatenate([Predictor(colour_bundle, batch_size=1).predict(items[i : i + 1]) for i in range(13)])
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, singles, atol=1e-5)


def test_call_maps_a_dict_of_arrays(colour_bundle):
    predictor = Predictor(colour_bundle, batch_size=8)
    out = predictor({"frames": frames_with((230, 40, 40), n=3), "frame_index": np.arange(3), "video_id": np.array(["a"] * 3)})
    assert set(out) == {"frame_index", "video_id", "probs"} and out["probs"].shape == (3, 3)


def test_wrong_shape_is_refused(colour_bundle):
    with pytest.raises(ValueError, match=r"expected items of shape \(N, \*\(32, 32, 3\)\)"):
        Predictor(colour_bundle).predict(np.zeros((2, 16, 16, 3), np.uint8))
