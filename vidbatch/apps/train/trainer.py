"""Train a frame CNN or a 3D clip CNN and write a model bundle with its metrics and plots.

The saved model takes float pixels 0..255; the bundle's `preprocessing`
says how to scale them, and training applies the very same preprocessing
layer the labeling job uses, so train and serve cannot drift apart.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import layers

from vidbatch.apps.metrics import classification_report, plot_confusion, plot_history
from vidbatch.apps.train.data import (
    Samples,
    keras_verbose,
    load_image_folder,
    load_video_manifest,
    split_by_group,
)
from vidbatch.apps.train.encoded import HEAD_INPUT, HEADS, STATE_WEIGHTS, train_encoded
from vidbatch.apps.train.features import DEFAULT_CACHE, RESIZE
from vidbatch.core.config import CLIP_ARCHITECTURES
from vidbatch.core.errors import ConfigError
from vidbatch.model import architectures
from vidbatch.model.architectures import FRAME_BACKBONES
from vidbatch.model.bundle import BundleSpec, save_bundle
from vidbatch.model.prior import DEFAULT_WEIGHT as PRIOR_WEIGHT
from vidbatch.model.preprocessing import preprocessing_layer

KINDS = ("frame", "clip", "sequence")
"""frame: a CNN on single frames (or a head on an encoder's features); clip: a 3D CNN on pixels;
sequence: a recurrent head over an encoder's features of consecutive sampled frames (CNN + RNN)."""
HELDOUT_MANIFEST = "heldout.csv"
"""Written beside the bundle: the held-out videos, ready for `vidbatch label` or `vidbatch eval`."""


@dataclass(frozen=True)
class TrainConfig:
    data: str
    out: str
    kind: str = "frame"
    backbone: str = "small_cnn"
    weights: str | None = None
    """"imagenet", None (from scratch) or a local weights file; ignored by small_cnn and clip models."""
    image_size: int = 64
    epochs: int = 10
    fine_tune_epochs: int = 0
    batch_size: int = 32
    learning_rate: float = 1e-3
    test_fraction: float = 0.25
    fps: float | None = None
    """Video manifests: frames sampled per second for training items (default 5; sequence models over a frame
    encoder 8; over a streaming video encoder 5, the rate MoViNet-A0 was trained at)."""
    clip_len: int = 10
    seed: int = 0
    width: int = 32
    """Channels of the first layer of the small models."""
    max_items_per_video: int | None = None
    augment: bool = True
    verbose: int = 0
    storage_options: Mapping[str, Any] | None = None
    encoder: str | None = None
    """A frozen frame encoder (.tflite or .keras file): train only a head on its features (kinds frame, sequence)."""
    arch: str = "3d_cnn"
    """Clip models: the family (see `CLIP_ARCHITECTURES`)."""
    head: str = "gru"
    """Sequence models: gru, lstm, attention or mean (see `encoded.HEADS`)."""
    clip_stride: int | None = None
    """Sequence models: sampled frames between training windows (default: half the window)."""
    holdout_groups: tuple[str, ...] | None = None
    """Hold out these values of the manifest's `group` column (else a stratified `test_fraction` of groups)."""
    feature_cache: str | None = DEFAULT_CACHE
    """Where encoder features are cached between runs; None turns the cache off."""
    prior_map: str | None = None
    """A streaming video encoder: a label map (JSON: each training class -> the video model's classes) whose zero-shot
    probabilities the bundle mixes with the head's (`model.prior`); needs `prior_classes`."""
    prior_classes: str | None = None
    """The video model's class names (`kinetics600_labels.txt`), for `prior_map`."""
    prior_weight: float = PRIOR_WEIGHT
    """The prior's share of the mixed probabilities (`model.prior.DEFAULT_WEIGHT`)."""
    prior_combine: str = "max"
    """How the prior's label map combines a class's model classes (`max` or `sum`)."""
    head_input: str = HEAD_INPUT
    """A streaming video encoder: what its head reads per sampled frame: the model's logits (default), its pooled
    features, or both (`model.streaming.HEAD_INPUTS`; `apps.train.encoded.HEAD_INPUT` says what was measured)."""
    refit: bool | None = None
    """After measuring on the held-out split, train again on every video and ship that model (the metrics stay
    the held-out estimate; no `heldout.csv`, since the shipped model has seen those videos). None: on for heads on
    an encoder (seconds, once the features are encoded) unless `holdout_groups` names a test set; off otherwise
    (a model from pixels would train a second time from the start)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"Invalid `kind`: expected one of {KINDS}. Received: kind={self.kind!r}")
        if self.kind == "sequence" and not self.encoder:
            raise ConfigError("Invalid `encoder`: a sequence model runs on a frame encoder's features; pass one "
                              "(e.g. --encoder mobilenet_v1_1.0_224_quant_embedding_extractor.tflite). Received: encoder=None")
        if self.encoder and self.kind == "clip":
            raise ConfigError("Invalid `encoder`: a 3D CNN learns from pixels; for a model over encoded frames, use "
                              f"kind 'sequence'. Received: kind='clip', encoder={self.encoder!r}")
        if self.kind == "clip" and self.arch not in CLIP_ARCHITECTURES:
            raise ConfigError(f"Invalid `arch`: expected one of {CLIP_ARCHITECTURES}. Received: arch={self.arch!r}")
        if self.encoder and self.head not in HEADS:
            raise ConfigError(f"Invalid `head`: expected one of {HEADS}. Received: head={self.head!r}")
        if self.kind == "frame" and self.backbone not in FRAME_BACKBONES:
            raise ConfigError(f"Invalid `backbone`: expected one of {FRAME_BACKBONES}. Received: backbone={self.backbone!r}")
        if self.fps is None:
            from vidbatch.model.streaming import is_streaming_file

            frame_encoder = self.encoder and not is_streaming_file(self.encoder)
            object.__setattr__(self, "fps", 8.0 if self.kind == "sequence" and frame_encoder else 5.0)
        for name in ("image_size", "epochs", "batch_size", "clip_len", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"Invalid `{name}`: expected an integer >= 1. Received: {name}={value!r}")
        if (self.prior_map is None) != (self.prior_classes is None):
            raise ConfigError("Invalid `prior_map`/`prior_classes`: a prior needs both (the label map, and the video "
                              f"model's class names). Received: prior_map={self.prior_map!r}, "
                              f"prior_classes={self.prior_classes!r}")
        if self.prior_map is not None and not (isinstance(self.prior_weight, (int, float)) and 0 < self.prior_weight < 1):
            raise ConfigError(f"Invalid `prior_weight`: expected 0 < w < 1. Received: prior_weight={self.prior_weight!r}")
        from vidbatch.model.streaming import HEAD_INPUTS

        if self.head_input not in HEAD_INPUTS:
            raise ConfigError(f"Invalid `head_input`: expected one of {HEAD_INPUTS}. Received: head_input={self.head_input!r}")
        if self.refit is None:
            object.__setattr__(self, "refit", bool(self.encoder) and not self.holdout_groups)
        elif not isinstance(self.refit, bool):
            raise ConfigError(f"Invalid `refit`: expected True, False or None. Received: refit={self.refit!r}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"Invalid `test_fraction`: expected 0 < f < 1. Received: test_fraction={self.test_fraction!r}")


def load_samples(config: TrainConfig) -> Samples:
    size = (config.image_size, config.image_size)
    is_folder = os.path.isdir(config.data)
    if config.kind == "clip":
        if is_folder:
            raise ConfigError(f"Clip models train on a labeled video manifest, not an image folder. Received: data={config.data!r}")
        return load_video_manifest(config.data, size, config.fps, clip_len=config.clip_len,
                                   storage_options=config.storage_options, max_items_per_video=config.max_items_per_video,
                                   flow=config.arch == "two_stream", show_progress=bool(config.verbose))
    if is_folder:
        return load_image_folder(config.data, size)
    return load_video_manifest(config.data, size, config.fps, storage_options=config.storage_options,
                               max_items_per_video=config.max_items_per_video, show_progress=bool(config.verbose))


def _augmentation(kind: str, seed: int):
    if kind == "clip":
        # geometric augmentation applied to whole clips would need per-clip consistency; flips only
        return keras.Sequential([layers.Identity()], name="augment")
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.05, seed=seed),
            layers.RandomZoom(0.1, seed=seed),
            layers.RandomTranslation(0.05, 0.05, seed=seed),
        ],
        name="augment",
    )


def train(config: TrainConfig) -> dict[str, Any]:
    """Train, evaluate on a held-out split, and write the bundle; returns the metrics."""
    if config.encoder:
        return _train_head(config)
    started = time.monotonic()
    keras.utils.set_random_seed(config.seed)
    samples = load_samples(config)
    if len(samples.x) == 0:
        raise ConfigError(f"No usable training items in {config.data!r} (skipped: {samples.skipped})")
    train_mask, test_mask = split_by_group(samples.y, samples.groups, config.test_fraction, config.seed)
    x_train, y_train = samples.x[train_mask], samples.y[train_mask]
    x_test, y_test = samples.x[test_mask], samples.y[test_mask]
    num_classes = len(samples.classes)
    item_shape = samples.x.shape[1:]

    def fit_model(x: np.ndarray, y: np.ndarray, validation: tuple[np.ndarray, np.ndarray] | None):
        """Build and train the model on (x, y); returns the model that ships (no augmentation) and the history."""
        keras.utils.set_random_seed(config.seed)  # a refit starts as the measured fit started
        base = None
        if config.kind == "clip":
            core = architectures.clip_model(config.arch, item_shape, num_classes, width=max(8, config.width // 2))
            preprocessing = "none" if config.arch == "two_stream" else "unit"  # two_stream unpacks its own input
        elif config.backbone == "small_cnn":
            core = architectures.small_cnn(item_shape, num_classes, width=config.width)
            preprocessing = "unit"
        else:
            core, base, preprocessing = architectures.backbone_model(config.backbone, item_shape, num_classes, config.weights)
            base.trainable = config.weights is None  # a pretrained base is frozen first, then optionally fine-tuned
        inputs = keras.Input(shape=item_shape, name="pixels")
        x_in = _augmentation(config.kind, config.seed)(inputs) if config.augment else inputs
        x_in = preprocessing_layer(preprocessing)(x_in)
        trainer = keras.Model(inputs, core(x_in), name="trainer")
        steps = max(1, -(-len(x) // config.batch_size)) * config.epochs
        schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps, alpha=0.05)
        trainer.compile(optimizer=keras.optimizers.Adam(schedule),
                        loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        fit = trainer.fit(x.astype("float32"), y, batch_size=config.batch_size, epochs=config.epochs,
                          validation_data=validation, shuffle=True, verbose=keras_verbose(config.verbose))
        history = {k: [float(v) for v in vals] for k, vals in fit.history.items()}
        if base is not None and config.fine_tune_epochs > 0:
            base.trainable = True
            trainer.compile(optimizer=keras.optimizers.Adam(config.learning_rate / 10),
                            loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            more = trainer.fit(x.astype("float32"), y, batch_size=config.batch_size,
                               epochs=config.fine_tune_epochs, validation_data=validation, shuffle=True,
                               verbose=keras_verbose(config.verbose))
            for k, vals in more.history.items():
                history.setdefault(k, []).extend(float(v) for v in vals)
        return core, history, base is not None, preprocessing

    validation = (x_test.astype("float32"), y_test) if len(x_test) else None
    core, history, pretrained, preprocessing = fit_model(x_train, y_train, validation)

    if len(x_test):
        probs = core.predict(_preprocess_numpy(x_test, preprocessing), batch_size=64, verbose=0)
        report = classification_report(y_test, probs.argmax(axis=1), samples.classes)
    else:
        report = {"accuracy": float("nan"), "count": 0, "per_class": {}, "confusion": [], "classes": samples.classes}
    refit = None
    if config.refit and len(x_test):  # measured; the model that ships trains again on every item
        refit_started = time.monotonic()
        core, _, _, _ = fit_model(samples.x, samples.y, None)
        refit = {"items": int(len(samples.x)), "groups": len(np.unique(samples.groups)),
                 "fit_seconds": round(time.monotonic() - refit_started, 1),
                 "trained_on": f"all {len(samples.x)} items"}

    spec = BundleSpec(
        classes=tuple(samples.classes),
        input_size=(config.image_size, config.image_size),
        kind=config.kind,
        clip_len=config.clip_len if config.kind == "clip" else None,
        preprocessing=preprocessing,
        flow=config.kind == "clip" and config.arch == "two_stream",
        name=f"{config.backbone if config.kind == 'frame' else config.arch}-{os.path.basename(config.out.rstrip('/'))}",
        sample_fps=config.fps if config.kind == "clip" else None,
        extra={"trained_on": config.data, "test_accuracy": report["accuracy"], "refit": refit is not None},
    )
    os.makedirs(config.out, exist_ok=True)
    save_bundle(core, spec, config.out)
    metrics = {
        "test_accuracy": report["accuracy"],
        "report": report,
        "epochs": config.epochs,
        "fine_tune_epochs": config.fine_tune_epochs if pretrained else 0,
        "refit": refit,
        "data": {
            "source": config.data,
            "sources_seen": samples.sources,
            "items": len(samples.x),
            "train_items": int(train_mask.sum()),
            "test_items": int(test_mask.sum()),
            "train_groups": len(np.unique(samples.groups[train_mask])),
            "test_groups": len(np.unique(samples.groups[test_mask])),
            "test_sources": sorted({samples.group_names[g] for g in np.unique(samples.groups[test_mask]) if g in samples.group_names}),
            "train_sources": sorted({samples.group_names[g] for g in np.unique(samples.groups[train_mask]) if g in samples.group_names}),
            "skipped": samples.skipped,
            "skipped_examples": samples.skipped_examples,
            "classes": samples.classes,
        },
        "config": {k: v for k, v in config.__dict__.items() if k != "storage_options"},
        "history": history,
        "train_seconds": round(time.monotonic() - started, 1),
    }
    _write_reports(config.out, metrics, report, samples.classes)
    return metrics


def _train_head(config: TrainConfig) -> dict[str, Any]:
    """A head on a frozen encoder's features (frame or sequence); the bundle holds both."""
    head, encoder, metrics, data = train_encoded(config)
    streaming = getattr(encoder, "stateful", False)
    kind = "clip" if config.kind == "sequence" and not streaming else "frame"
    spec = BundleSpec(
        classes=tuple(data.classes),
        input_size=tuple(encoder.input_size),
        kind=kind,
        clip_len=config.clip_len if kind == "clip" else None,
        name=f"{config.head + '-sequence' if kind == 'clip' else 'frame-head'}-{os.path.basename(config.out.rstrip('/'))}",
        sample_fps=config.fps if kind == "clip" or streaming else None,
        resize=RESIZE,
        extra={"trained_on": config.data, "test_accuracy": metrics["test_accuracy"], "refit": metrics["refit"] is not None,
               "video_accuracy": metrics["video_accuracy"], "encoder": os.path.basename(config.encoder),
               # a streaming encoder's features depend on when its state starts over: labeling starts it over alike
               **({"state_reset_s": encoder.reset.period / config.fps, "state_weights": STATE_WEIGHTS}
                  if streaming else {})},
    )
    os.makedirs(config.out, exist_ok=True)
    save_bundle(head, spec, config.out, encoder=encoder, prior=metrics.pop("_prior", None))
    metrics["config"] = {k: v for k, v in config.__dict__.items() if k != "storage_options"}
    if metrics["data"]["test_sources"] and not os.path.isdir(config.data) and metrics["refit"] is None:
        # the held-out videos as a manifest: `vidbatch label` or `vidbatch eval` on what the head never saw (after
        # a refit the head has seen them: no such file)
        import pandas as pd

        held = pd.DataFrame({"uri": metrics["data"]["test_sources"], "label": metrics["data"]["test_labels"]})
        held.to_csv(os.path.join(config.out, HELDOUT_MANIFEST), index=False)
    _write_reports(config.out, metrics, metrics["report"], data.classes)
    return metrics


def _write_reports(out: str, metrics: dict[str, Any], report: dict[str, Any], classes: list[str]) -> None:
    with open(os.path.join(out, "metrics.json"), "w") as handle:
        json.dump(metrics, handle, indent=2, default=str)
    plot_history(metrics["history"], os.path.join(out, "history.png"))
    if report["confusion"]:
        plot_confusion(report["confusion"], classes, os.path.join(out, "confusion.png"),
                       title=f"Test split: accuracy {report['accuracy']:.3f}")


def _preprocess_numpy(x: np.ndarray, mode: str) -> np.ndarray:
    return np.asarray(preprocessing_layer(mode)(x.astype("float32")))
