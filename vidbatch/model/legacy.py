"""Models people already have: Keras 2 `.h5` files saved by TensorFlow 2.x.

Keras 3 reads the h5 format but rejects some config keys tf.keras 2.x wrote
(an initializer's `dtype`, for one). The compatibility path fixes those keys
in a temporary copy and loads it in safe mode; a `Lambda` layer (marshalled
Python bytecode in h5 files) is refused unless the user trusts the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from typing import Any, Mapping

import h5py
import keras

from vidbatch.core.errors import ModelBundleError
from vidbatch.io import storage
from vidbatch.model.spec import BundleSpec, ModelBundle, check_model_against_spec

_STRIP_FROM_SUBCONFIGS = ("dtype",)
_SUBCONFIG_SUFFIXES = ("_initializer", "_regularizer", "_constraint")


def keras3_compatible(config: Any) -> Any:
    """A copy of a tf.keras 2.x model config with the keys Keras 3 rejects removed or renamed."""
    if isinstance(config, list):
        return [keras3_compatible(v) for v in config]
    if not isinstance(config, dict):
        return config
    out = {}
    for key, value in config.items():
        if key.endswith(_SUBCONFIG_SUFFIXES) and isinstance(value, dict) and isinstance(value.get("config"), dict):
            inner = {k: v for k, v in value["config"].items() if k not in _STRIP_FROM_SUBCONFIGS}
            out[key] = {**value, "config": inner}
        else:
            out[key] = keras3_compatible(value)
    return out


def read_classes(path: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Class names from a JSON list, a JSON object of sidecar fields, or a text file with one name per line."""
    try:
        fs, local = storage.url_to_fs(path, storage_options)
        text = fs.cat_file(local).decode("utf-8-sig")  # a BOM (Windows editors) is not part of the first name
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelBundleError(f"Cannot read --classes {path!r}: {exc}") from None
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ModelBundleError(f"--classes {path!r}: not valid JSON ({exc})") from None
        return {"classes": value} if isinstance(value, list) else dict(value)
    return {"classes": [line.strip() for line in stripped.splitlines() if line.strip()]}


def load_legacy_h5(fs, model_path: str, sidecar_path: str, url: str, classes: str | None,
                   storage_options: Mapping[str, Any] | None, trust_model_code: bool):
    model_bytes = fs.cat_file(model_path)
    with tempfile.TemporaryDirectory(prefix="vidbatch-h5-") as tmp:
        local = os.path.join(tmp, "model.h5")
        with open(local, "wb") as handle:
            handle.write(model_bytes)
        try:
            with h5py.File(local, "r+") as handle:
                raw = handle.attrs.get("model_config")
                if raw is None:
                    raise ModelBundleError(f"Cannot load model {url!r}: the .h5 file holds weights only, no model config; "
                                           "rebuild the architecture in code and load the weights into it")
                config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
                if '"Lambda"' in json.dumps(config) and not trust_model_code:
                    raise ModelBundleError(
                        f"Cannot load model {url!r}: it holds code (a Lambda layer), which Keras safe mode refuses. "
                        "Only if you trust where this file came from, pass --trust-model-code (trust_model_code=True)."
                    )
                handle.attrs["model_config"] = json.dumps(keras3_compatible(config)).encode()
        except OSError as exc:
            raise ModelBundleError(f"Cannot load model {url!r}: not a readable HDF5 (.h5) file ({exc})") from None
        try:
            model = keras.saving.load_model(local, compile=False, safe_mode=not trust_model_code)
        except Exception as exc:
            raise ModelBundleError(
                f"Cannot load legacy model {url!r} even after the Keras 2 compatibility fixes "
                f"({type(exc).__name__}: {str(exc)[:300]}). Load it where it works (TensorFlow 2.x with tf.keras), "
                "then save it as a Keras 3 file with model.save('model.keras'), or rebuild the architecture and load "
                "its weights with model.load_weights()."
            ) from None

    source = "sidecar"
    if fs.exists(sidecar_path) and not classes:
        sidecar = fs.cat_file(sidecar_path)
        spec = BundleSpec.from_json(sidecar, source=f"{url} sidecar")
        if "preprocessing" not in _json_object(sidecar):
            spec, source = _guess_preprocessing(model, spec)
    else:
        if not classes:
            raise ModelBundleError(
                f"Cannot load legacy model {url!r}: an .h5 file carries no class names; pass --classes FILE "
                "(a JSON list, or one name per line), or put a bundle.json-style sidecar beside it"
            )
        fields = read_classes(classes, storage_options)
        shape = tuple(model.input_shape)
        fields.setdefault("input_size", [shape[-3], shape[-2]])
        fields.setdefault("name", os.path.splitext(os.path.basename(model_path))[0])
        if len(shape) == 5:
            fields.setdefault("kind", "clip")
            fields.setdefault("clip_len", shape[1])
        try:
            spec = BundleSpec(**{**fields, "classes": tuple(fields.get("classes") or ()),
                                 "input_size": tuple(fields["input_size"])})
        except TypeError as exc:
            raise ModelBundleError(f"--classes {classes!r}: {exc}") from None
        if "preprocessing" not in fields:
            spec, source = _guess_preprocessing(model, spec)
    check_model_against_spec(model, spec, url)
    fingerprint = hashlib.sha256(model_bytes + b"\0" + spec.to_json().encode()).hexdigest()
    return ModelBundle(spec=spec, model=model, fingerprint=fingerprint, source=url, preprocessing_source=source)


def _json_object(data: bytes) -> dict:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _guess_preprocessing(model, spec: BundleSpec) -> tuple[BundleSpec, str]:
    """Nothing says how a legacy model's input was scaled: a model whose first layer rescales its input takes raw
    pixels ('none', detected); otherwise 'unit' is assumed, and the bundle's notes say so."""
    layers = [layer for layer in getattr(model, "layers", []) if not isinstance(layer, keras.layers.InputLayer)]
    if layers and isinstance(layers[0], (keras.layers.Rescaling, keras.layers.Normalization)):
        return dataclasses.replace(spec, preprocessing="none"), "detected"
    return dataclasses.replace(spec, preprocessing="unit"), "assumed"
