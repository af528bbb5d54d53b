import json
import os
import shutil

import pytest

from tests.support.helpers import colour_model, make_colour_bundle
from vidbatch import ModelBundleError
from vidbatch.model.bundle import BundleSpec, load_bundle, save_bundle


def test_roundtrip_and_fingerprint(tmp_path):
    folder = make_colour_bundle(str(tmp_path / "b"))
    assert sorted(os.listdir(folder)) == ["bundle.json", "model.keras"]
    bundle = load_bundle(folder)
    assert bundle.classes == ("ball", "box", "waves") and bundle.spec.item_shape == (32, 32, 3)
    assert load_bundle(folder).fingerprint == bundle.fingerprint
    # a .keras file path with its sidecar beside it works too
    assert load_bundle(os.path.join(folder, "model.keras")).classes == bundle.classes


def test_bundle_on_memory_filesystem(tmp_path):
    import fsspec

    folder = make_colour_bundle(str(tmp_path / "b"))
    fs = fsspec.filesystem("memory")
    for name in os.listdir(folder):
        fs.pipe_file(f"/remote-bundle/{name}", open(os.path.join(folder, name), "rb").read())
    assert load_bundle("memory://remote-bundle").classes == ("ball", "box", "waves")


def test_missing_sidecar(tmp_path):
    folder = make_colour_bundle(str(tmp_path / "b"))
    os.remove(os.path.join(folder, "bundle.json"))
    with pytest.raises(ModelBundleError, match="missing sidecar 'bundle.json'"):
        load_bundle(folder)


def test_missing_bundle(tmp_path):
    with pytest.raises(ModelBundleError, match="no such file or folder"):
        load_bundle(str(tmp_path / "nothing"))


def edit_sidecar(folder, **changes):
    path = os.path.join(folder, "bundle.json")
    record = json.load(open(path))
    record.update(changes)
    json.dump(record, open(path, "w"))


def test_class_count_mismatch(tmp_path):
    folder = make_colour_bundle(str(tmp_path / "b"))
    edit_sidecar(folder, classes=["a", "b"])
    with pytest.raises(ModelBundleError, match=r"outputs 3 scores per item but the sidecar names 2 classes"):
        load_bundle(folder)


def test_wrong_input_shape(tmp_path):
    folder = make_colour_bundle(str(tmp_path / "b"))
    edit_sidecar(folder, input_size=[64, 64])
    with pytest.raises(ModelBundleError, match=r"takes input of shape \(32, 32, 3\)"):
        load_bundle(folder)


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"kind": "audio"}, "`kind` must be one of"),
        ({"preprocessing": "magic"}, "`preprocessing` must be one of"),
        ({"classes": []}, "`classes` must be a non-empty list"),
        ({"classes": ["a", "a", "b"]}, "duplicates"),
        ({"surprise": 1}, "unknown field"),
        ({"kind": "clip"}, "needs `clip_len`"),
    ],
)
def test_bad_sidecars(tmp_path, changes, match):
    folder = make_colour_bundle(str(tmp_path / "b"))
    edit_sidecar(folder, **changes)
    with pytest.raises(ModelBundleError, match=match):
        load_bundle(folder)


def test_sidecar_not_json(tmp_path):
    folder = make_colour_bundle(str(tmp_path / "b"))
    open(os.path.join(folder, "bundle.json"), "w").write("classes = ['a']")
    with pytest.raises(ModelBundleError, match="not valid JSON"):
        load_bundle(folder)


def test_corrupt_keras_file(tmp_path):
    folder = make_colour_bundle(str(tmp_path / "b"))
    open(os.path.join(folder, "model.keras"), "wb").write(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelBundleError, match="Keras could not read it"):
        load_bundle(folder)


def lambda_bundle(folder):
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    save_bundle(model, BundleSpec(classes=("a", "b"), input_size=(8, 8)), folder)
    return folder


def test_lambda_layer_refused_by_safe_mode(tmp_path):
    folder = lambda_bundle(str(tmp_path / "lam"))
    with pytest.raises(ModelBundleError, match="Lambda layer.*--trust-model-code"):
        load_bundle(folder)


def test_lambda_layer_loads_with_explicit_opt_in(tmp_path):
    folder = lambda_bundle(str(tmp_path / "lam"))
    assert load_bundle(folder, trust_model_code=True).classes == ("a", "b")


def test_save_refuses_inconsistent_spec(tmp_path):
    with pytest.raises(ModelBundleError):
        save_bundle(colour_model(), BundleSpec(classes=("a", "b"), input_size=(32, 32)), str(tmp_path / "x"))
    assert not os.path.exists(tmp_path / "x" / "model.keras")
    shutil.rmtree(tmp_path, ignore_errors=True)
