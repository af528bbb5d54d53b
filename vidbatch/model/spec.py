"""What a bundle declares (`bundle.json`) and what a loaded bundle is: the value objects of the model layer.

`BundleSpec` is the sidecar, validated on construction; `ModelBundle` is a
loaded model with its spec; `check_model_against_spec` refuses a model that
does not match its sidecar. The loaders (`bundle`, `legacy`) share them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from vidbatch.core.config import (  # noqa: F401  (part of the bundle format)
    CHANNEL_ORDERS,
    FLOW_CHANNELS,
    PREPROCESSING,
    RESIZES,
)
from vidbatch.core.errors import ModelBundleError

BUNDLE_FORMAT = "vidbatch.bundle/1"
SIDECAR_NAME = "bundle.json"
MODEL_NAME = "model.keras"
KINDS = ("frame", "clip")
OUTPUTS = ("probabilities", "logits")


@dataclass(frozen=True)
class BundleSpec:
    """The sidecar: what the labeling job must know about a model."""

    classes: tuple[str, ...]
    input_size: tuple[int, int]
    """(height, width) of one frame."""
    kind: str = "frame"
    clip_len: int | None = None
    preprocessing: str = "unit"
    channel_order: str = "rgb"
    """The channel order the model was trained on; `bgr` flips frames (decoded as RGB) before scaling."""
    outputs: str = "probabilities"
    flow: bool = False
    """A two-stream model: each frame of a clip comes with 2 more channels, its optical flow to the next decoded
    frame, packed as uint8 (`core.config.FLOW_*`); the model unpacks and scales everything itself."""
    resize: str = "stretch"
    """How frames were brought to `input_size` in training: `stretch` or `center_crop` (see `RESIZES`)."""
    name: str = ""
    sample_fps: float | None = None
    """For clip models: the frame rate clips were sampled at in training (a default for --fps)."""
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)
    """Free-form provenance (training data, metrics summary)."""
    encoder: Mapping[str, Any] | None = field(default=None, hash=False)
    """A frozen frame encoder in the bundle folder, run on every frame before `model.keras` (then the head):
    {"file": "encoder.tflite", "format": "tflite" | "keras", "features": F, "sha256": ...}. The head takes
    features: [F] per frame, or [clip_len, F] per clip (a CNN + RNN)."""

    def __post_init__(self) -> None:
        source = "bundle.json"
        classes = self.classes
        if not isinstance(classes, (list, tuple)) or not classes or not all(isinstance(c, str) and c for c in classes):
            raise ModelBundleError(f"{source}: `classes` must be a non-empty list of names. Received: classes={classes!r}")
        if len(set(classes)) != len(classes):
            raise ModelBundleError(f"{source}: `classes` has duplicates. Received: classes={list(classes)!r}")
        object.__setattr__(self, "classes", tuple(classes))
        size = self.input_size
        if (
            not isinstance(size, (list, tuple))
            or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in size)
        ):
            raise ModelBundleError(f"{source}: `input_size` must be [height, width] in pixels. Received: input_size={size!r}")
        object.__setattr__(self, "input_size", tuple(size))
        if self.kind not in KINDS:
            raise ModelBundleError(f"{source}: `kind` must be one of {KINDS}. Received: kind={self.kind!r}")
        if self.kind == "clip":
            if not isinstance(self.clip_len, int) or isinstance(self.clip_len, bool) or self.clip_len < 1:
                raise ModelBundleError(f"{source}: a clip model needs `clip_len` >= 1. Received: clip_len={self.clip_len!r}")
        elif self.clip_len is not None:
            raise ModelBundleError(f"{source}: `clip_len` is only for kind 'clip'. Received: clip_len={self.clip_len!r}")
        if self.preprocessing not in PREPROCESSING:
            raise ModelBundleError(
                f"{source}: `preprocessing` must be one of {PREPROCESSING}. Received: preprocessing={self.preprocessing!r}"
            )
        if self.channel_order not in CHANNEL_ORDERS:
            raise ModelBundleError(
                f"{source}: `channel_order` must be one of {CHANNEL_ORDERS}. Received: channel_order={self.channel_order!r}")
        if self.flow not in (False, True):
            raise ModelBundleError(f"{source}: `flow` must be true or false. Received: flow={self.flow!r}")
        if self.flow and (self.kind != "clip" or self.preprocessing != "none" or self.encoder is not None):
            raise ModelBundleError(
                f"{source}: a flow (two-stream) model must be kind 'clip', preprocessing 'none' (it unpacks its own "
                f"input) and have no encoder. Received: kind={self.kind!r}, preprocessing={self.preprocessing!r}")
        if self.resize not in RESIZES:
            raise ModelBundleError(f"{source}: `resize` must be one of {RESIZES}. Received: resize={self.resize!r}")
        if self.outputs not in OUTPUTS:
            raise ModelBundleError(f"{source}: `outputs` must be one of {OUTPUTS}. Received: outputs={self.outputs!r}")
        if self.sample_fps is not None and not (
            isinstance(self.sample_fps, (int, float)) and math.isfinite(self.sample_fps) and self.sample_fps >= 0
        ):
            raise ModelBundleError(f"{source}: `sample_fps` must be a number >= 0. Received: sample_fps={self.sample_fps!r}")

        if self.encoder is not None:
            _check_encoder_record(self.encoder, source)
            object.__setattr__(self, "encoder", dict(self.encoder))

    @property
    def head_input_shape(self) -> tuple[int, ...]:
        """Shape of one input of `model.keras`: the item shape, or with an encoder its features."""
        if self.encoder is None:
            return self.item_shape
        features = int(self.encoder["features"])
        return (self.clip_len, features) if self.kind == "clip" else (features,)

    @property
    def item_shape(self) -> tuple[int, ...]:
        """Shape of one model input: (H, W, 3) or (T, H, W, 3)."""
        frame = (self.input_size[0], self.input_size[1], 3 + (FLOW_CHANNELS if self.flow else 0))
        return (self.clip_len, *frame) if self.kind == "clip" else frame

    def to_json(self) -> str:
        record = {"format": BUNDLE_FORMAT, **asdict(self)}
        record["classes"] = list(self.classes)
        record["input_size"] = list(self.input_size)
        record["extra"] = dict(self.extra)
        if record["encoder"] is None:
            del record["encoder"]  # left out when absent, like channel_order
        else:
            record["encoder"] = dict(self.encoder)
        for name, default in (("channel_order", "rgb"), ("resize", "stretch"), ("flow", False)):
            if record[name] == default:
                del record[name]  # defaults are left out, so bundles stay readable by earlier versions
        return json.dumps(record, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, source: str = SIDECAR_NAME) -> BundleSpec:
        try:
            record = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelBundleError(f"{source}: not valid JSON ({exc})") from None
        if not isinstance(record, dict):
            raise ModelBundleError(f"{source}: expected a JSON object, found {type(record).__name__}")
        fmt = record.pop("format", BUNDLE_FORMAT)
        if fmt != BUNDLE_FORMAT:
            raise ModelBundleError(f"{source}: unsupported format {fmt!r}; this vidbatch reads {BUNDLE_FORMAT!r}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(record) - known)
        if unknown:
            raise ModelBundleError(f"{source}: unknown field(s) {unknown}; known fields are {sorted(known)}")
        for required in ("classes", "input_size"):
            if required not in record:
                raise ModelBundleError(f"{source}: missing required field `{required}`")
        try:
            return cls(**record)
        except ModelBundleError as exc:
            raise ModelBundleError(str(exc).replace("bundle.json", source, 1)) from None


ENCODER_FIELDS = {"file": str, "format": str, "features": int, "sha256": str}
ENCODER_OPTIONAL_FIELDS = ("head_input", "prior")
"""A streaming video encoder's `head_input` (`pooled` when absent; `logits`; `both`: pooled features then logits),
and `prior`: a label map's zero-shot probabilities mixed with the head's (`model.prior`; needs the logits)."""


def _check_encoder_record(record: Any, source: str) -> None:
    if not isinstance(record, Mapping) or not set(ENCODER_FIELDS) <= set(record) <= {
            *ENCODER_FIELDS, *ENCODER_OPTIONAL_FIELDS} or not all(
        isinstance(record[k], t) and not isinstance(record[k], bool) for k, t in ENCODER_FIELDS.items()
    ):
        raise ModelBundleError(f"{source}: `encoder` must be an object with {sorted(ENCODER_FIELDS)} "
                               f"({', '.join(t.__name__ for t in ENCODER_FIELDS.values())}). Received: encoder={record!r}")
    name = record["file"]
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ModelBundleError(f"{source}: `encoder.file` must be a file name inside the bundle folder. Received: file={name!r}")
    if record["format"] not in ("tflite", "keras") or record["features"] < 1:
        raise ModelBundleError(f"{source}: `encoder.format` must be 'tflite' or 'keras' and `features` >= 1. "
                               f"Received: format={record['format']!r}, features={record['features']!r}")
    head_input = record.get("head_input", "pooled")
    if head_input not in ("pooled", "logits", "both") or ("prior" in record and head_input == "pooled"):
        raise ModelBundleError(f"{source}: `encoder.head_input` must be 'pooled', 'logits' or 'both' (with a `prior`: "
                               f"'logits' or 'both'). Received: head_input={head_input!r}")


@dataclass
class ModelBundle:
    """A loaded, validated model and its sidecar."""

    spec: BundleSpec
    model: Any
    fingerprint: str
    source: str
    preprocessing_source: str = "sidecar"
    encoder: Any = None
    """The loaded `FrameEncoder` when the sidecar names one."""
    renamed_classes: tuple[str, ...] = ()
    """Class names a pretrained classifier's label file repeated, renamed to stay unique (said in a note)."""
    label_map: Any = None
    """A `model.label_map.LabelMap`: the model's classes combined into the user's (`classes`)."""
    prior: Any = None
    """A `model.prior.Prior`: a trained head's probabilities mixed with its video model's zero-shot ones."""
    """Where `spec.preprocessing` and `channel_order` came from: sidecar, option (the user's), detected (a legacy
    model that rescales its own input) or assumed (a legacy model with nothing to go on)."""

    @property
    def notes(self) -> tuple[str, ...]:
        """What loading had to assume or detect: said once when a run starts, and kept in run.json."""
        notes = self._load_notes()
        if self.label_map is not None:
            m = self.label_map
            notes += (f"label map {os.path.basename(m.source)}: {len(m.targets)} classes from "
                      f"{sum(map(len, m.sources))} of the model's {len(m.model_classes)} ({m.combine} of their "
                      "probabilities); " + _rest_note(m),)
        if self.prior is not None:
            p = self.prior
            notes += (f"the head's probabilities are averaged with its video model's own ({1 - p.weight:g} and "
                      f"{p.weight:g}): {len(p.label_map.targets)} classes from {sum(map(len, p.label_map.sources))} of "
                      f"the model's {len(p.label_map.model_classes)} ({p.label_map.combine}), as the bundle says",)
        return notes

    def _load_notes(self) -> tuple[str, ...]:
        name = os.path.basename(self.source.rstrip("/")) or self.source
        if self.preprocessing_source == "assumed":
            return (f"{name} does not say how its input was scaled: assuming preprocessing 'unit' (pixels / 255) in "
                    "RGB order. If it was trained on raw 0-255 pixels, pass --preprocessing none; if on cv2.imread "
                    "(BGR) images, --channel-order bgr",)
        if self.preprocessing_source == "pretrained" and getattr(self.encoder, "stateful", False):
            notes = (f"{name} is a pretrained streaming video classifier: frames reach it centre-cropped to its "
                     f"{self.spec.input_size[0]}x{self.spec.input_size[1]} input, as RGB "
                     + ("scaled to [0, 1] (its float input, as MoViNet expects)" if self.encoder.float_input else
                        "uint8 (its own layers scale them)")
                     + ", and its outputs are taken as logits (softmax) in the order of --classes",)
        elif self.preprocessing_source == "pretrained":
            notes = (f"{name} is a pretrained classifier: frames reach it as uint8 RGB centre-cropped to its "
                     f"{self.spec.input_size[0]}x{self.spec.input_size[1]} input (its own layers scale them), and its "
                     "outputs are taken as class scores in the order of --classes",)
        if self.preprocessing_source == "pretrained":
            if self.renamed_classes:
                notes += (f"--classes repeats {len(self.renamed_classes)} name(s), renamed to stay unique: "
                          f"{', '.join(self.renamed_classes[:5])}",)
            return notes
        if self.preprocessing_source == "detected":
            return (f"{name} scales its own input (its first layer is a Rescaling or Normalization layer): "
                    "preprocessing 'none'; pass --preprocessing to say otherwise",)
        return ()

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes the run labels with: the model's, or with a label map the user's."""
        return self.label_map.classes if self.label_map is not None else self.spec.classes

    @property
    def display_name(self) -> str:
        """The model's name for the summary's `model` column: the sidecar's `name`, else the file or folder name."""
        if self.spec.name:
            return self.spec.name
        return os.path.basename(self.source.rstrip("/")) or self.source


def check_model_against_spec(model: Any, spec: BundleSpec, source: str) -> None:
    try:
        input_shape = tuple(model.input_shape)
        output_shape = tuple(model.output_shape)
    except (AttributeError, ValueError) as exc:
        raise ModelBundleError(f"Model {source!r}: cannot tell its input/output shapes ({exc}); save a built model") from None
    if isinstance(input_shape[0], tuple) or isinstance(output_shape[0], tuple):
        raise ModelBundleError(f"Model {source!r}: expected one input and one output, found {input_shape} -> {output_shape}")
    if len(output_shape) != 2 or output_shape[-1] != len(spec.classes):
        raise ModelBundleError(
            f"Model {source!r}: outputs {output_shape[-1]} scores per item but the sidecar names "
            f"{len(spec.classes)} classes {list(spec.classes)}; they must match"
        )
    expected = spec.head_input_shape
    got = input_shape[1:]
    if len(got) != len(expected) or any(g is not None and g != e for g, e in zip(got, expected)):
        raise ModelBundleError(
            f"Model {source!r}: takes input of shape {got} but the sidecar says kind={spec.kind!r}, "
            f"input_size={list(spec.input_size)}"
            + (f", an encoder of {spec.encoder['features']} features" if spec.encoder else "")
            + f" (expected {expected}); fix the sidecar or the model"
        )


def _rest_note(label_map) -> str:
    """What happens to the model classes a label map does not name, as the run's note says it."""
    if label_map.rest == "other":
        return "the rest are labeled 'other'"
    if label_map.combine == "sum":
        return "the rest are dropped and the mapped classes' sums renormalised"
    return "the rest are dropped (each class keeps its best model class's probability: a low score means the model was unsure)"
