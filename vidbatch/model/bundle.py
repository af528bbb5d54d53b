"""A model bundle: `model.keras` plus `bundle.json` (classes, input size, preprocessing, kind).

The public router: `load_bundle` picks the loader for what it is given (a bundle
folder, a `.keras` file, a legacy `.h5` file) and `save_bundle` writes one. The
sidecar's fields are in `vidbatch.model.spec`. No pickle anywhere: the class names live in JSON, and Keras loads the model in
safe mode, which refuses models that carry code (Lambda layers) unless the
user passes `trust_model_code=True` (`--trust-model-code`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import keras

from vidbatch.core.errors import ModelBundleError
from vidbatch.io import storage
from vidbatch.model.encoder import FrameEncoder, load_encoder
from vidbatch.model.legacy import load_legacy_h5
from vidbatch.model.location import locate_model
from vidbatch.model.pretrained import PRETRAINED_SUFFIXES, load_pretrained_classifier
from vidbatch.model.spec import (
    MODEL_NAME,
    SIDECAR_NAME,
    BundleSpec,
    ModelBundle,
    check_model_against_spec,
)


def save_bundle(model: Any, spec: BundleSpec, folder: str, storage_options: Mapping[str, Any] | None = None,
                encoder: FrameEncoder | None = None, prior: Any = None) -> str:
    """Write `model.keras` and `bundle.json` into `folder` (created if needed); returns the folder.

    With `encoder`, its file is copied into the folder and the sidecar names it (`spec.encoder` is filled in),
    so the bundle is self-contained; `prior` (`model.prior.Prior`) is kept in its record.
    """
    if encoder is not None:
        record = {"file": f"encoder.{encoder.format}", "format": encoder.format, "features": encoder.features,
                  "sha256": encoder.sha256}
        if getattr(encoder, "head_input", "pooled") != "pooled":
            record["head_input"] = encoder.head_input
        if prior is not None:
            record["prior"] = prior.record()
        spec = dataclasses.replace(spec, encoder=record, preprocessing="none", channel_order="rgb",
                                   input_size=tuple(encoder.input_size))
    elif spec.encoder is not None:
        raise ModelBundleError(f"save_bundle: the spec names an encoder but none was given. Received: encoder={encoder!r}")
    check_model_against_spec(model, spec, folder)
    fs, path = storage.url_to_fs(folder, storage_options)
    if encoder is not None:
        storage.atomic_write_bytes(fs, storage.join(path, spec.encoder["file"]), encoder.data)
    with tempfile.TemporaryDirectory(prefix="vidbatch-save-") as tmp:
        local_model = os.path.join(tmp, MODEL_NAME)
        model.save(local_model)
        with open(local_model, "rb") as handle:
            storage.atomic_write_bytes(fs, storage.join(path, MODEL_NAME), handle.read())
    storage.atomic_write_bytes(fs, storage.join(path, SIDECAR_NAME), spec.to_json().encode())
    return folder


def load_bundle(
    url: str, storage_options: Mapping[str, Any] | None = None, trust_model_code: bool = False,
    classes: str | None = None, preprocessing: str | None = None, channel_order: str | None = None,
    label_map: str | None = None, label_map_options: Mapping[str, Any] | None = None,
) -> ModelBundle:
    """Load a bundle folder (or a `.keras` file with its sidecar), local or remote, in Keras safe mode.

    A legacy Keras 2 `.h5` file loads through a compatibility path; its class
    names come from a `<name>.json` sidecar beside it or from `classes` (a file).
    `preprocessing` and `channel_order`, when given, override what the sidecar
    says (or what a legacy model's loader detected or assumed); they are part of
    the bundle's fingerprint, so a resumed run cannot mix them. `label_map` (a JSON file, `model.label_map`)
    combines the model's classes into the user's; `label_map_options`: its `combine` and `rest`.
    """
    bundle = _load(url, storage_options, trust_model_code, classes)
    if label_map is not None:
        bundle = with_label_map(bundle, label_map, storage_options, **dict(label_map_options or {}))
    changes = {name: value for name, value in (("preprocessing", preprocessing), ("channel_order", channel_order))
               if value is not None}
    if not changes:
        return bundle
    if bundle.encoder is not None:
        raise ModelBundleError(
            f"Invalid `preprocessing`/`channel_order` for {url!r}: this bundle's frames go to its encoder as uint8 RGB, "
            f"which scales them itself; leave these options out. Received: {changes}")
    spec = dataclasses.replace(bundle.spec, **changes)
    fingerprint = hashlib.sha256((bundle.fingerprint + "\0" + spec.to_json()).encode()).hexdigest()
    return dataclasses.replace(bundle, spec=spec, fingerprint=fingerprint,
                               preprocessing_source="option" if preprocessing is not None else bundle.preprocessing_source)


def with_label_map(bundle: ModelBundle, url: str, storage_options: Mapping[str, Any] | None = None,
                   combine: str = "sum", rest: str = "other") -> ModelBundle:
    """The bundle labeling with the classes of the map at `url` (checked against the model's classes)."""
    from vidbatch.model.label_map import LabelMap

    try:
        fs, path = storage.url_to_fs(url, storage_options)
        text = fs.cat_file(path)
    except Exception as exc:
        if storage.is_missing_credentials(exc):
            raise ModelBundleError(storage.credentials_hint("label map", url)) from None
        raise ModelBundleError(f"Invalid `label_map`: cannot read it ({storage.describe_failure(exc)}). "
                               f"Received: label_map={url!r}") from None
    mapping = LabelMap.from_json(text, bundle.spec.classes, source=url, combine=combine, rest=rest)
    fingerprint = hashlib.sha256((bundle.fingerprint + "\0" + mapping.identity).encode()).hexdigest()
    return dataclasses.replace(bundle, label_map=mapping, fingerprint=fingerprint)


def _load(url: str, storage_options: Mapping[str, Any] | None, trust_model_code: bool, classes: str | None) -> ModelBundle:
    fs, path, is_dir = locate_model(url, storage_options)
    if is_dir:
        model_path = storage.join(path, MODEL_NAME)
        sidecar_path = storage.join(path, SIDECAR_NAME)
    else:
        model_path = path
        stem = os.path.splitext(path)[0]
        candidates = [stem + ".json", storage.join(os.path.dirname(path) or ".", SIDECAR_NAME)]
        sidecar_path = next((c for c in candidates if fs.exists(c)), candidates[0])
    if model_path.lower().endswith(PRETRAINED_SUFFIXES):
        return load_pretrained_classifier(fs, model_path, url, classes, storage_options)
    if model_path.endswith((".h5", ".hdf5")):
        return load_legacy_h5(fs, model_path, sidecar_path, url, classes, storage_options, trust_model_code)
    if not model_path.endswith(".keras"):
        raise ModelBundleError(
            f"Cannot load model {url!r}: expected a bundle folder, a .keras file or a legacy .h5 file. "
            f"Received: {os.path.basename(model_path)!r}"
        )
    if not fs.exists(model_path):
        raise ModelBundleError(f"Cannot load model {url!r}: the bundle has no {MODEL_NAME}")
    if not fs.exists(sidecar_path):
        raise ModelBundleError(
            f"Cannot load model {url!r}: missing sidecar {os.path.basename(sidecar_path)!r} "
            "(class names, input size, preprocessing); write one with vidbatch.model.bundle.save_bundle"
        )
    sidecar = fs.cat_file(sidecar_path)
    spec = BundleSpec.from_json(sidecar, source=f"{url} sidecar")
    model_bytes = fs.cat_file(model_path)
    fingerprint = hashlib.sha256(model_bytes + b"\0" + spec.to_json().encode()).hexdigest()
    encoder = _load_encoder(fs, path if is_dir else os.path.dirname(path), spec, url, trust_model_code)
    model = _load_keras(model_bytes, url, trust_model_code)
    check_model_against_spec(model, spec, url)
    prior = None
    if spec.encoder is not None and "prior" in spec.encoder:
        from vidbatch.model.prior import Prior

        prior = Prior.from_record(spec.encoder["prior"], spec.classes, f"{url}/{SIDECAR_NAME}")
    return ModelBundle(spec=spec, model=model, fingerprint=fingerprint, source=url, encoder=encoder, prior=prior)


def _load_encoder(fs, folder: str, spec: BundleSpec, url: str, trust_model_code: bool) -> FrameEncoder | None:
    """The bundle's encoder, checked against the sidecar (its hash is part of the fingerprint through the sidecar)."""
    if spec.encoder is None:
        return None
    record = spec.encoder
    encoder_path = storage.join(folder, record["file"])
    try:
        data = fs.cat_file(encoder_path)
    except FileNotFoundError:
        raise ModelBundleError(f"Cannot load model {url!r}: the sidecar names encoder {record['file']!r}, "
                               "which is not in the bundle folder") from None
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise ModelBundleError(f"Cannot load model {url!r}: {record['file']} does not match the sha256 in its sidecar "
                               "(the file was changed or replaced); save the bundle again")
    encoder = load_encoder(data, record["format"], f"{url}/{record['file']}", trust_model_code,
                           head_input=record.get("head_input", "pooled"))
    if encoder.features != record["features"] or tuple(encoder.input_size) != tuple(spec.input_size):
        raise ModelBundleError(
            f"Cannot load model {url!r}: its encoder gives {encoder.features} features from {list(encoder.input_size)} "
            f"frames, but the sidecar says {record['features']} from {list(spec.input_size)}")
    return encoder


def _load_keras(model_bytes: bytes, url: str, trust_model_code: bool) -> Any:
    with tempfile.TemporaryDirectory(prefix="vidbatch-model-") as tmp:
        local = os.path.join(tmp, MODEL_NAME)
        with open(local, "wb") as handle:
            handle.write(model_bytes)
        try:
            return keras.saving.load_model(local, compile=False, safe_mode=not trust_model_code)
        except Exception as exc:  # Keras raises ValueError, TypeError, OSError, zipfile errors...
            text = str(exc)
            if "safe_mode" in text or "Lambda" in text or "lambda" in text:
                raise ModelBundleError(
                    f"Cannot load model {url!r}: it holds code (a Lambda layer), which Keras safe mode refuses. "
                    "Only if you trust where this file came from, pass --trust-model-code (trust_model_code=True)."
                ) from None
            raise ModelBundleError(f"Cannot load model {url!r}: Keras could not read it ({type(exc).__name__}: {text[:300]})") from None
