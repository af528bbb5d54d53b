"""Bundles that carry a frozen encoder: saved, checked, loaded and run by the Predictor."""

import json
import os

import keras
import numpy as np
import pytest

from tests.support.encoders import make_tflite_encoder
from vidbatch.core.errors import ModelBundleError
from vidbatch.model.bundle import BundleSpec, load_bundle, save_bundle
from vidbatch.model.encoder import open_encoder
from vidbatch.stages.classify import Predictor


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return open_encoder(make_tflite_encoder(str(tmp_path_factory.mktemp("enc") / "tiny.tflite")))


def head(input_shape, classes=2, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape)
    x = keras.layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
    x = keras.layers.Dense(8, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))


def frame_bundle(folder, encoder):
    spec = BundleSpec(classes=("a", "b"), input_size=(1, 1), preprocessing="unit")  # save_bundle fills both in
    return save_bundle(head((encoder.features,)), spec, str(folder), encoder=encoder)


def test_encoder_bundle_round_trip(tmp_path, encoder):
    folder = frame_bundle(tmp_path / "b", encoder)
    sidecar = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert sidecar["encoder"] == {"file": "encoder.tflite", "format": "tflite", "features": 195, "sha256": encoder.sha256}
    assert sidecar["input_size"] == [32, 32] and sidecar["preprocessing"] == "none"
    bundle = load_bundle(folder)
    assert bundle.encoder.features == 195 and bundle.spec.head_input_shape == (195,)
    x = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    expected = bundle.model.predict(encoder.encode(x), verbose=0)
    np.testing.assert_allclose(Predictor(bundle, batch_size=4).predict(x), expected, atol=1e-5)


def test_a_changed_encoder_file_is_refused(tmp_path, encoder):
    folder = frame_bundle(tmp_path / "b", encoder)
    path = os.path.join(folder, "encoder.tflite")
    data = bytearray(open(path, "rb").read())
    data[-1] ^= 0xFF
    open(path, "wb").write(bytes(data))
    with pytest.raises(ModelBundleError, match="does not match the sha256"):
        load_bundle(folder)
    os.remove(path)
    with pytest.raises(ModelBundleError, match="not in the bundle folder"):
        load_bundle(folder)


def test_head_must_take_the_encoder_features(tmp_path, encoder):
    spec = BundleSpec(classes=("a", "b"), input_size=(32, 32))
    with pytest.raises(ModelBundleError, match="an encoder of 195 features"):
        save_bundle(head((10,)), spec, str(tmp_path / "b"), encoder=encoder)


def test_encoder_record_is_validated():
    with pytest.raises(ModelBundleError, match="`encoder` must be an object"):
        BundleSpec(classes=("a", "b"), input_size=(8, 8), encoder={"file": "e.tflite"})
    with pytest.raises(ModelBundleError, match="file name inside the bundle folder"):
        BundleSpec(classes=("a", "b"), input_size=(8, 8),
                   encoder={"file": "../e.tflite", "format": "tflite", "features": 3, "sha256": "x"})


def test_preprocessing_options_are_refused_for_encoder_bundles(tmp_path, encoder):
    folder = frame_bundle(tmp_path / "b", encoder)
    with pytest.raises(ModelBundleError, match="goes to its encoder|go to its encoder"):
        load_bundle(folder, preprocessing="unit")


def test_sequence_bundle_encodes_each_shared_frame_once(tmp_path, encoder):
    spec = BundleSpec(classes=("a", "b"), input_size=(32, 32), kind="clip", clip_len=4, sample_fps=4.0)
    folder = save_bundle(head((4, encoder.features)), spec, str(tmp_path / "s"), encoder=encoder)
    predictor = Predictor(folder, batch_size=8, embeddings=True)
    video = np.random.default_rng(2).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    clips = np.stack([video[i : i + 4] for i in range(0, 7, 2)])  # 4 clips overlapping by 2 frames: 10 distinct frames
    out = predictor.predict_all(clips)
    features = encoder.encode(video)
    expected = predictor.bundle.model.predict(np.stack([features[i : i + 4] for i in range(0, 7, 2)]), verbose=0)
    np.testing.assert_allclose(out["probs"], expected, atol=1e-5)
    np.testing.assert_allclose(out["embedding"][1], features[2:6].mean(axis=0), atol=1e-5)
    assert predictor.frames_encoded == 10


def test_embeddings_of_a_bundle_without_encoder_are_its_last_layer_input(tmp_path):
    from tests.support.helpers import make_colour_bundle

    predictor = Predictor(make_colour_bundle(str(tmp_path / "c")), batch_size=4, embeddings=True)
    out = predictor.predict_all(np.random.default_rng(3).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8))
    assert out["embedding"].shape == (6, 3) and out["probs"].shape == (6, 3)
    # its last layer is a Softmax, so what it reads are the logits
    np.testing.assert_allclose(keras.ops.softmax(out["embedding"]), out["probs"], atol=1e-4)
