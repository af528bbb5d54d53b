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


def brightness_model(rescaling: bool = False):
    """A Keras 2-era model trained on raw 0-255 pixels: 'bright' when the mean pixel exceeds 100, else 'dark'."""
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(255.0)(inputs) if rescaling else inputs  # a model that scales its own input
    dense = keras.layers.Dense(2, name="decide")
    outputs = keras.layers.Softmax()(dense(keras.layers.GlobalAveragePooling2D()(x)))
    model = keras.Model(inputs, outputs)
    dense.set_weights([np.array([[0.0, 1 / 3]] * 3, "float32"), np.array([0.0, -100.0], "float32")])
    return model


@pytest.fixture
def grey_videos(tmp_path):
    """A bright and a dark video (uniform grey 220 and 30), written by OpenCV, with a manifest."""
    import cv2

    rows = []
    for name, level in (("bright", 220), ("dark", 30)):
        path = str(tmp_path / f"{name}.mp4")
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10, (48, 48))
        for _ in range(10):
            writer.write(np.full((48, 48, 3), level, np.uint8))
        writer.release()
        rows.append({"uri": path, "video_id": name, "label": name})
    pd.DataFrame(rows).to_csv(tmp_path / "grey.csv", index=False)
    (tmp_path / "dark-bright.json").write_text(json.dumps(["dark", "bright"]))
    return str(tmp_path / "grey.csv"), str(tmp_path / "dark-bright.json")


def test_raw_pixel_legacy_model_needs_preprocessing_none_and_vidbatch_says_so(grey_videos, tmp_path, caplog):
    manifest, classes = grey_videos
    path = str(tmp_path / "raw.h5")
    write_keras2_h5(brightness_model(), path)
    with caplog.at_level("WARNING", logger="vidbatch"):
        guessed = vidbatch.label(manifest, path, str(tmp_path / "guess"), classes=classes, progress=False)
    assert guessed.summary_frame().set_index("video_id").pred_label.to_dict() == {"bright": "dark", "dark": "dark"}
    notes = [r.getMessage() for r in caplog.records if r.name == "vidbatch"]
    assert len(notes) == 1 and "assuming preprocessing 'unit'" in notes[0] and "--preprocessing none" in notes[0]
    run = json.load(open(tmp_path / "guess" / "run.json"))
    assert run["model"]["preprocessing"] == "unit" and run["model"]["preprocessing_source"] == "assumed"

    caplog.clear()
    with caplog.at_level("WARNING", logger="vidbatch"):
        told = vidbatch.label(manifest, path, str(tmp_path / "told"), classes=classes, preprocessing="none",
                              progress=False)
    assert told.summary_frame().set_index("video_id").pred_label.to_dict() == {"bright": "bright", "dark": "dark"}
    assert not [r for r in caplog.records if r.name == "vidbatch"]  # nothing assumed, nothing said
    run = json.load(open(tmp_path / "told" / "run.json"))
    assert run["model"]["preprocessing"] == "none" and run["model"]["preprocessing_source"] == "option"


def test_a_legacy_model_that_rescales_its_own_input_is_detected(tmp_path):
    path = str(tmp_path / "scales.h5")
    write_keras2_h5(brightness_model(rescaling=True), path)
    (tmp_path / "c.json").write_text(json.dumps(["dark", "bright"]))
    bundle = load_bundle(path, classes=str(tmp_path / "c.json"))
    assert bundle.spec.preprocessing == "none" and bundle.preprocessing_source == "detected"
    assert "scales its own input" in bundle.notes[0]


def test_a_model_trained_on_bgr_frames_needs_channel_order_bgr(synth_set, tmp_path):
    """The colour model with its input channels reversed: what training on cv2.imread images gives."""
    model = colour_model()
    conv = model.get_layer("colour")
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel[:, :, ::-1, :], bias])
    path = str(tmp_path / "bgr.h5")
    write_keras2_h5(model, path)
    (tmp_path / "c.json").write_text(json.dumps({"classes": ["ball", "box", "waves"], "preprocessing": "unit"}))
    classes = str(tmp_path / "c.json")
    as_rgb = vidbatch.label(synth_set, path, str(tmp_path / "rgb"), classes=classes, progress=False).summary_frame()
    as_bgr = vidbatch.label(synth_set, path, str(tmp_path / "bgr"), classes=classes, channel_order="bgr",
                            progress=False).summary_frame()
    assert (as_bgr.pred_label == as_bgr.label).all()
    assert (as_rgb.pred_label != as_rgb.label).sum() >= 4  # red read as blue and blue as red


def test_cli_prints_the_assumption_once_and_inspect_shows_it(grey_videos, tmp_path):
    import subprocess
    import sys

    manifest, classes = grey_videos
    path = str(tmp_path / "raw.h5")
    write_keras2_h5(brightness_model(), path)
    env = {**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "vidbatch.cli", "label", manifest, "--model", path, "--classes", classes,
                             "--out", str(tmp_path / "o"), "--no-progress"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("vidbatch: note:") == 1 and "--preprocessing none" in result.stderr
    shown = subprocess.run([sys.executable, "-m", "vidbatch.cli", "inspect", path, "--classes", classes],
                           capture_output=True, text=True, env=env).stdout
    assert "preprocessing: unit (assumed: nothing says; see the note)" in shown and "--preprocessing none" in shown
