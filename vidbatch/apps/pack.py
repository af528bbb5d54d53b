"""`vidbatch pack`: a pretrained classifier file, its classes and its settings packed into a bundle folder.

Why: `vidbatch label --model FILE.tflite --classes LABELS.txt` needs the class file beside the model on every
run, and says each time what it assumed (centre crop, logits, the streaming model's 5 fps). A packed folder is
a bundle like a trained one: the file (sha256-checked), its class names, the rate and reset period of a
streaming model, and what was assumed, written down once; `vidbatch label --model DIR` needs nothing else, and
a team shares one folder (local or `s3://`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

from vidbatch.core.errors import ConfigError
from vidbatch.model.bundle import load_bundle, save_bundle
from vidbatch.model.pretrained import PRETRAINED_SUFFIXES


def pack(model: str, classes: str, out: str, fps: float | None = None, state_reset_s: float | None = None,
         storage_options: Mapping[str, Any] | None = None) -> str:
    """Write `out` (a new or empty folder) as a bundle of the pretrained `.tflite` classifier `model` with the
    class names in `classes`; a streaming video model also records its sampling rate (`fps`, default its
    training rate) and its reset period (`state_reset_s`, default 4 s). Returns `out`."""
    from vidbatch.core.config import DEFAULT_STATE_RESET_S
    from vidbatch.io import storage

    if not str(model).lower().endswith(PRETRAINED_SUFFIXES):
        raise ConfigError(f"Invalid `model`: pack takes a pretrained classifier file ({', '.join(PRETRAINED_SUFFIXES)}); "
                          f"a trained bundle is a bundle already. Received: model={model!r}")
    for name, value in (("fps", fps), ("state_reset_s", state_reset_s)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
                                  or (name == "fps" and value == 0)):
            raise ConfigError(f"Invalid `{name}`: expected a number > 0{' or 0' if name != 'fps' else ''}. "
                              f"Received: {name}={value!r}")
    fs, path = storage.url_to_fs(out, storage_options)
    if fs.exists(path) and (not fs.isdir(path) or fs.ls(path)):
        raise ConfigError(f"Invalid `out`: {out!r} exists and is not an empty folder; pack writes a new bundle. "
                          f"Received: out={out!r}")
    bundle = load_bundle(model, storage_options, classes=classes)
    streaming = bool(getattr(bundle.encoder, "stateful", False))
    if not streaming and (fps is not None or state_reset_s is not None):
        raise ConfigError("Invalid `fps`/`state_reset_s`: they are a streaming video model's settings; a frame "
                          f"classifier labels at `vidbatch label --fps`. Received: fps={fps!r}, "
                          f"state_reset_s={state_reset_s!r}")
    extra = {"packed_from": os.path.basename(model), "assumed": list(bundle.notes),
             **({"state_reset_s": float(DEFAULT_STATE_RESET_S if state_reset_s is None else state_reset_s)}
                if streaming else {})}
    spec = dataclasses.replace(bundle.spec, extra={**bundle.spec.extra, **extra},
                               **({"sample_fps": float(fps)} if streaming and fps is not None else {}))
    save_bundle(bundle.model, spec, out, storage_options, encoder=bundle.encoder)
    packed = load_bundle(out, storage_options)  # what `vidbatch label --model OUT` will load
    if list(packed.spec.classes) != list(spec.classes) or packed.encoder.sha256 != bundle.encoder.sha256:
        raise ConfigError(f"pack: {out!r} did not read back as written (classes or file differ); remove it and retry")
    return out
