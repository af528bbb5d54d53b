"""Frozen frame encoders (.tflite through LiteRT, .keras in safe mode) and bundles that carry one."""

import os

import numpy as np
import pytest

from tests.support.encoders import (
    SHARED_EMBEDDER,
    make_keras_encoder,
    make_tflite_encoder,
    tiny_encoder_model,
)
from vidbatch.core.errors import ModelBundleError
from vidbatch.model.encoder import open_encoder


@pytest.fixture(scope="module")
def tflite_path(tmp_path_factory):
    return make_tflite_encoder(str(tmp_path_factory.mktemp("enc") / "tiny.tflite"))


@pytest.fixture(scope="module")
def keras_path(tmp_path_factory):
    return make_keras_encoder(str(tmp_path_factory.mktemp("enc") / "tiny.keras"))


def frames(n, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_tflite_encoder_dequantizes_and_batches_like_single_frames(tflite_path):
    encoder = open_encoder(tflite_path)
    assert encoder.format == "tflite" and encoder.input_size == (32, 32) and encoder.features == 195
    x = frames(21)
    batched = encoder.encode(x)  # 16 + a padded batch of 5
    single = np.concatenate([encoder.encode(x[i : i + 1]) for i in range(len(x))])
    assert batched.dtype == np.float32 and batched.shape == (21, 195)
    np.testing.assert_array_equal(batched, single)
    # dequantised: close to the float model it was converted from (raw uint8 codes would be 0..255)
    reference = tiny_encoder_model(32, 0).predict(x.astype("float32"), verbose=0)
    assert np.abs(batched - reference).max() < 0.1 and np.corrcoef(batched.ravel(), reference.ravel())[0, 1] > 0.98


def test_keras_encoder_takes_uint8_pixels(keras_path):
    encoder = open_encoder(keras_path)
    assert encoder.format == "keras" and encoder.features == 195 and encoder.runtime.startswith("keras")
    out = encoder.encode(frames(3))
    assert out.shape == (3, 195) and np.isfinite(out).all() and out.std() > 0


def test_encoder_errors_name_the_argument(tmp_path, tflite_path):
    with pytest.raises(ModelBundleError, match=r"\.tflite or \.keras.*Received: encoder="):
        open_encoder(str(tmp_path / "model.onnx"))
    with pytest.raises(ModelBundleError, match="cannot read it"):
        open_encoder(str(tmp_path / "missing.tflite"))
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(ModelBundleError, match="not a TensorFlow Lite model"):
        open_encoder(str(junk))
    with pytest.raises(ValueError, match=r"expected frames of shape \(N, \*\(32, 32, 3\)\)"):
        open_encoder(tflite_path).encode(frames(2, size=24))


@pytest.mark.shared_data
def test_shared_mobilenet_embedder_gives_1024_features():
    if not os.path.exists(SHARED_EMBEDDER):
        pytest.skip("../shared/data/weights is absent")
    encoder = open_encoder(SHARED_EMBEDDER)
    assert encoder.input_size == (224, 224) and encoder.features == 1024 and encoder.runtime == "litert"
    out = encoder.encode(frames(3, size=224))
    assert out.shape == (3, 1024) and (out >= 0).all() and out.max() > 0  # ReLU6 features, dequantised
