"""Train a frame CNN or a 3D clip CNN and write a model bundle with its metrics and plots.

The saved model takes float pixels 0..255; the bundle's `preprocessing`
says how to scale them, and training applies the very same preprocessing
layer the labeling job uses, so train and serve cannot drift apart.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

import keras
import numpy as np
from keras import layers

from vidbatch.apps.metrics import classification_report, plot_confusion, plot_history
from vidbatch.apps.train.data import (
    Samples,
    load_image_folder,
    load_video_manifest,
    split_by_group,
)
from vidbatch.core.errors import ConfigError
from vidbatch.model import architectures
from vidbatch.model.architectures import FRAME_BACKBONES
from vidbatch.model.bundle import BundleSpec, save_bundle
from vidbatch.model.preprocessing import preprocessing_layer


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
    fps: float = 5.0
    """Video manifests: frames sampled per second for training items."""
    clip_len: int = 10
    seed: int = 0
    width: int = 32
    """Channels of the first layer of the small models."""
    max_items_per_video: int | None = None
    augment: bool = True
    verbose: int = 0
    storage_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("frame", "clip"):
            raise ConfigError(f"Invalid `kind`: expected 'frame' or 'clip'. Received: kind={self.kind!r}")
        if self.kind == "frame" and self.backbone not in FRAME_BACKBONES:
            raise ConfigError(f"Invalid `backbone`: expected one of {FRAME_BACKBONES}. Received: backbone={self.backbone!r}")
        for name in ("image_size", "epochs", "batch_size", "clip_len", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"Invalid `{name}`: expected an integer >= 1. Received: {name}={value!r}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"Invalid `test_fraction`: expected 0 < f < 1. Received: test_fraction={self.test_fraction!r}")


def load_samples(config: TrainConfig) -> Samples:
    size = (config.image_size, config.image_size)
    is_folder = os.path.isdir(config.data)
    if config.kind == "clip":
        if is_folder:
            raise ConfigError(f"Clip models train on a labeled video manifest, not an image folder. Received: data={config.data!r}")
        return load_video_manifest(config.data, size, config.fps, clip_len=config.clip_len,
                                   storage_options=config.storage_options, max_items_per_video=config.max_items_per_video)
    if is_folder:
        return load_image_folder(config.data, size)
    return load_video_manifest(config.data, size, config.fps, storage_options=config.storage_options,
                               max_items_per_video=config.max_items_per_video)


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

    base = None
    if config.kind == "clip":
        core = architectures.clip_cnn(item_shape, num_classes, width=max(8, config.width // 2))
        preprocessing = "unit"
    elif config.backbone == "small_cnn":
        core = architectures.small_cnn(item_shape, num_classes, width=config.width)
        preprocessing = "unit"
    else:
        core, base, preprocessing = architectures.backbone_model(config.backbone, item_shape, num_classes, config.weights)
        base.trainable = config.weights is None  # a pretrained base is frozen first, then optionally fine-tuned

    inputs = keras.Input(shape=item_shape, name="pixels")
    x = _augmentation(config.kind, config.seed)(inputs) if config.augment else inputs
    x = preprocessing_layer(preprocessing)(x)
    trainer = keras.Model(inputs, core(x), name="trainer")
    steps = max(1, -(-len(x_train) // config.batch_size)) * config.epochs
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps, alpha=0.05)
    trainer.compile(optimizer=keras.optimizers.Adam(schedule),
                    loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    validation = (x_test.astype("float32"), y_test) if len(x_test) else None
    fit = trainer.fit(x_train.astype("float32"), y_train, batch_size=config.batch_size, epochs=config.epochs,
                      validation_data=validation, shuffle=True, verbose=config.verbose)
    history = {k: [float(v) for v in vals] for k, vals in fit.history.items()}
    if base is not None and config.fine_tune_epochs > 0:
        base.trainable = True
        trainer.compile(optimizer=keras.optimizers.Adam(config.learning_rate / 10),
                        loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        more = trainer.fit(x_train.astype("float32"), y_train, batch_size=config.batch_size,
                           epochs=config.fine_tune_epochs, validation_data=validation, shuffle=True, verbose=config.verbose)
        for k, vals in more.history.items():
            history.setdefault(k, []).extend(float(v) for v in vals)

    if len(x_test):
        probs = core.predict(_preprocess_numpy(x_test, preprocessing), batch_size=64, verbose=0)
        report = classification_report(y_test, probs.argmax(axis=1), samples.classes)
    else:
        report = {"accuracy": float("nan"), "count": 0, "per_class": {}, "confusion": [], "classes": samples.classes}

    spec = BundleSpec(
        classes=tuple(samples.classes),
        input_size=(config.image_size, config.image_size),
        kind=config.kind,
        clip_len=config.clip_len if config.kind == "clip" else None,
        preprocessing=preprocessing,
        name=f"{config.backbone if config.kind == 'frame' else 'clip_cnn'}-{os.path.basename(config.out.rstrip('/'))}",
        sample_fps=config.fps if config.kind == "clip" else None,
        extra={"trained_on": config.data, "test_accuracy": report["accuracy"]},
    )
    os.makedirs(config.out, exist_ok=True)
    save_bundle(core, spec, config.out)
    metrics = {
        "test_accuracy": report["accuracy"],
        "report": report,
        "epochs": config.epochs,
        "fine_tune_epochs": config.fine_tune_epochs if base is not None else 0,
        "data": {
            "source": config.data,
            "sources_seen": samples.sources,
            "items": int(len(samples.x)),
            "train_items": int(train_mask.sum()),
            "test_items": int(test_mask.sum()),
            "train_groups": int(len(np.unique(samples.groups[train_mask]))),
            "test_groups": int(len(np.unique(samples.groups[test_mask]))),
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
    with open(os.path.join(config.out, "metrics.json"), "w") as handle:
        json.dump(metrics, handle, indent=2, default=str)
    plot_history(history, os.path.join(config.out, "history.png"))
    if report["confusion"]:
        plot_confusion(report["confusion"], samples.classes, os.path.join(config.out, "confusion.png"),
                       title=f"Test split: accuracy {report['accuracy']:.3f}")
    return metrics


def _preprocess_numpy(x: np.ndarray, mode: str) -> np.ndarray:
    return np.asarray(preprocessing_layer(mode)(x.astype("float32")))
