"""Where a model is, checked without Keras: the URL, the credentials, that a bundle or model file is there.

Why apart from `bundle`: the command line checks `--model` before TensorFlow starts (seconds of start-up) and
before `--out` is created, so a typo costs a second and leaves nothing behind.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from vidbatch.core.errors import ModelBundleError
from vidbatch.io import storage

MODEL_FILE_SUFFIXES = (".keras", ".h5", ".hdf5", ".tflite")
"""What a `--model` file may be: a Keras 3 file (beside its sidecar), a legacy Keras 2 `.h5` file, or a pretrained
`.tflite` classifier (with `--classes`)."""


class ModelLocation(NamedTuple):
    fs: Any
    path: str
    is_dir: bool


def locate_model(url: str, storage_options: Mapping[str, Any] | None = None) -> ModelLocation:
    """The filesystem and path of `url`, which must name a bundle folder or a model file; one clear
    `ModelBundleError` otherwise (an unknown scheme, no credentials, nothing there, the wrong kind of file)."""
    try:
        fs, path = storage.url_to_fs(url, storage_options)
    except ValueError as exc:
        raise ModelBundleError(f"Cannot load model {url!r}: {exc}") from None
    try:
        is_dir = fs.isdir(path)
        exists = is_dir or fs.exists(path)
    except Exception as exc:  # object-store clients raise their own types (botocore: NoCredentialsError, ...)
        if storage.is_missing_credentials(exc):
            raise ModelBundleError(f"Cannot load the model: {storage.credentials_hint('--model', url)}") from None
        raise ModelBundleError(f"Cannot load model {url!r}: {storage.describe_failure(exc)}") from None
    if not exists:
        shown = path if storage.is_local(fs) and os.path.abspath(path) != url else None
        raise ModelBundleError(f"Cannot load model {url!r}: no such file or folder"
                               + (f" (looked for {shown})" if shown else ""))
    if not is_dir and not path.lower().endswith(MODEL_FILE_SUFFIXES):
        raise ModelBundleError(
            f"Cannot load model {url!r}: expected a bundle folder, a .keras file, a legacy .h5 file or a .tflite "
            "classifier. "
            f"Received: {os.path.basename(path)!r}")
    return ModelLocation(fs, path, is_dir)
