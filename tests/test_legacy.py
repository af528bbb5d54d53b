"""Keras 2 .h5 models saved by TensorFlow 2.x load through the compatibility path."""

import json

import numpy as np
import pandas as pd
import pytest

import vidbatch
from tests.support.helpers import colour_model
from tests.support.legacy_h5 import write_keras2_h5
from vidbatch import ModelBundleError
from vidbatch.model.bundle import load_bundle


@pytest.fixture
def legacy_h5(tmp_path):
    path = str(tmp_path / "legacy.h5")
    write_keras2_h5(colour_model(), path)
    (tmp_path / "classes.json").write_text(json.dumps(["ball", "box", "waves"]))
    return path, str(tmp_path / "classes.json")


def test_plain_keras3_rejects_the_legacy_file(legacy_h5):
    import keras

    with pytest.raises(Exception, match="dtype"):
        keras.saving.load_model(legacy_h5[0], compile=False)


def test_legacy_h5_loads_with_classes_and_predicts_like_the_original(legacy_h5):
    path, classes = legacy_h5
    bundle = load_bundle(path, classes=classes)
    assert bundle.classes == ("ball", "box", "waves") and bundle.spec.input_size == (32, 32)
    x = np.random.default_rng(0).uniform(0, 1, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(bundle.model(x)), np.asarray(colour_model()(x)), atol=1e-5)


def test_classes_as_text_lines_and_as_sidecar_fields(legacy_h5, tmp_path):
    path, _ = legacy_h5
    (tmp_path / "names.txt").write_text("ball\nbox\nwaves\n")
    assert load_bundle(path, classes=str(tmp_path / "names.txt")).classes == ("ball", "box", "waves")
    (tmp_path / "fields.json").write_text(json.dumps({"classes": ["a", "b", "c"], "preprocessing": "none"}))
    assert load_bundle(path, classes=str(tmp_path / "fields.json")).spec.preprocessing == "none"


def test_legacy_model_without_classes_says_what_to_do(legacy_h5):
    with pytest.raises(ModelBundleError, match="pass --classes FILE"):
        load_bundle(legacy_h5[0])


def test_wrong_class_count(legacy_h5, tmp_path):
    (tmp_path / "two.json").write_text('["a", "b"]')
    with pytest.raises(ModelBundleError, match="names 2 classes"):
        load_bundle(legacy_h5[0], classes=str(tmp_path / "two.json"))


def test_not_an_h5_file(tmp_path, legacy_h5):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(ModelBundleError, match="not a readable HDF5"):
        load_bundle(str(bad), classes=legacy_h5[1])


def test_legacy_lambda_is_refused(tmp_path):
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    path = str(tmp_path / "lam.h5")
    model.save(path)
    (tmp_path / "c.json").write_text('["a", "b"]')
    with pytest.raises(ModelBundleError, match="Lambda layer.*--trust-model-code"):
        load_bundle(path, classes=str(tmp_path / "c.json"))


def test_label_command_with_a_legacy_model(legacy_h5, synth_set, tmp_path):
    path, classes = legacy_h5
    summary = vidbatch.label(synth_set, path, str(tmp_path / "out"), classes=classes, progress=False).summary_frame()
    assert (summary.pred_label == summary.label).all()
    assert pd.read_parquet(tmp_path / "out" / "summary.parquet").model.unique().tolist() == ["legacy"]
