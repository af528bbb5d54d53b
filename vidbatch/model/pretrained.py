"""A pretrained classifier file as a model: labels with no training.

`vidbatch label MANIFEST --model mobilenet_v2_1.0_224_quant.tflite --classes imagenet_labels.txt` labels an
archive with a frame classifier as it comes (ImageNet objects per frame, smoothed, in segments and shots like
any frame model). The file is run as a frozen encoder (`model.encoder`, LiteRT) whose outputs are the class
scores, under an identity head, so everything downstream is the bundle path that encoder bundles take.

How the file is read comes from its signature: the input size (and uint8 RGB, scaling inside the model) and
the number of scores; the class names from `--classes` (one a line, or a JSON list), which must match that
number. What cannot be read from the file is said once as a note: frames are centre-cropped to its square
input (as ImageNet models were trained), and its output is taken to be scores already (a softmax in the model).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from vidbatch.core.errors import ModelBundleError
from vidbatch.model.encoder import load_encoder
from vidbatch.model.legacy import read_classes
from vidbatch.model.spec import BundleSpec, ModelBundle

PRETRAINED_SUFFIXES = (".tflite",)


STREAMING_FPS = 5.0
"""The rate a streaming video model samples at unless --fps says otherwise: MoViNet-A0 was trained on 5 fps
clips. The file cannot say it, so a run says it assumed it."""


def load_pretrained_classifier(fs, path: str, url: str, classes: str | None,
                               storage_options: Mapping[str, Any] | None = None) -> ModelBundle:
    if not classes:
        raise ModelBundleError(
            f"Cannot load model {url!r}: a .tflite classifier carries no class names; pass --classes FILE (one name "
            "a line, in the model's output order, or a JSON list). Received: classes=None")
    data = fs.cat_file(path)
    encoder = _classifier(data, url)
    names = list(read_classes(classes, storage_options).get("classes") or [])
    if len(names) != encoder.features:
        raise ModelBundleError(
            f"Invalid `classes`: {url!r} outputs {encoder.features} scores per frame but --classes names "
            f"{len(names)}; give one name per output, in the model's order. Received: classes={classes!r}")
    names, renamed = unique_names(names)
    streaming = getattr(encoder, "stateful", False)
    record = {"file": os.path.basename(path), "format": "tflite", "features": encoder.features,
              "sha256": encoder.sha256}
    spec = BundleSpec(classes=tuple(names), input_size=tuple(encoder.input_size), kind="frame", preprocessing="none",
                      channel_order="rgb", resize="center_crop", name=os.path.splitext(os.path.basename(path))[0],
                      encoder=record, outputs="logits" if streaming else "probabilities",
                      sample_fps=STREAMING_FPS if streaming else None)
    fingerprint = hashlib.sha256(data + b"\0" + json.dumps(names).encode()).hexdigest()
    return ModelBundle(spec=spec, model=_identity_head(encoder.features), fingerprint=fingerprint, source=url,
                       preprocessing_source="pretrained", encoder=encoder, renamed_classes=tuple(renamed))


def _classifier(data: bytes, url: str):
    """The file as a frame classifier (LiteRT), or as a streaming video classifier whose scores are its logits."""
    from vidbatch.model.streaming import StreamingModel, is_streaming

    if is_streaming(data):
        return StreamingModel(data, url, head_input="logits")
    return load_encoder(data, "tflite", url, role="model")


def unique_names(names: list[str]) -> tuple[list[str], list[str]]:
    """Class names made unique (ImageNet's labels list 'crane' twice, the bird and the machine): a repeat gets
    ' (2)', ' (3)'...; returns the names and the renamed ones, for a note."""
    seen: dict[str, int] = {}
    out, renamed = [], []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            out.append(f"{name} ({seen[name]})")
            renamed.append(out[-1])
        else:
            out.append(name)
    return out, renamed


def _identity_head(features: int):
    """The scores pass through unchanged (a Keras model, so the Predictor treats this bundle like any other)."""
    import keras

    inputs = keras.Input(shape=(features,), name="scores")
    return keras.Model(inputs, keras.layers.Identity(name="classes")(inputs), name="pretrained_classifier")
