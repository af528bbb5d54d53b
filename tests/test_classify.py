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


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_computes_in_16_bits_and_keeps_the_answers(colour_bundle, precision):
    items = np.concatenate([frames_with((230, 40, 40)), frames_with((40, 60, 230)), frames_with((60, 210, 60))])
    items = np.concatenate([items, np.random.default_rng(1).integers(0, 256, (17, 32, 32, 3), dtype=np.uint8)])
    full = Predictor(colour_bundle, batch_size=8).predict(items)
    half = Predictor(colour_bundle, batch_size=8, precision=precision)
    probs = half.predict(items)
    inner = [layer for layer in half._model.layers if hasattr(layer, "layers")][0]
    assert {layer.name: layer.dtype_policy.name for layer in inner.layers}["colour"] == f"mixed_{precision}"
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)  # the output layer stays float32
    difference = np.abs(probs - full).max()
    assert 0 < difference < 0.05, difference  # 16-bit rounding shows, but only just
    assert (probs.argmax(axis=1) == full.argmax(axis=1)).mean() >= 0.95
    assert probs[:15].argmax(axis=1).tolist() == [0] * 5 + [1] * 5 + [2] * 5


def test_precision_is_checked_and_a_model_that_cannot_be_rebuilt_is_named(colour_bundle):
    import keras

    from vidbatch import ConfigError, LabelConfig
    from vidbatch.core.errors import ModelBundleError
    from vidbatch.stages.classify import _at_precision

    with pytest.raises(ValueError, match=r"Received: precision='int8'"):
        Predictor(colour_bundle, precision="int8")
    with pytest.raises(ConfigError, match="precision"):
        LabelConfig(manifest="m.csv", model="b", out="o", precision="half")

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__(name="custom_net")
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    model = Subclassed()
    model(np.zeros((1, 4), "float32"))
    with pytest.raises(ModelBundleError, match=r"custom_net.*use precision='float32'"):
        _at_precision(model, "bfloat16")
