"""Heads trained on a frozen encoder's features: the tutorial's transfer learning, and the seeds' CNN + RNN.

`train frames --encoder` trains a small dense head on one feature vector per
image or sampled frame. `train sequence --encoder` trains a recurrent (or
pooling) head on windows of `clip_len` consecutive sampled frames' features,
the same windows `vidbatch label` makes from a video of any length. Both
write one bundle: the encoder file plus the head (see `model.encoder`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import keras
import numpy as np
from keras import layers

from vidbatch.apps.metrics import classification_report
from vidbatch.apps.train.data import keras_verbose, split_by_group
from vidbatch.apps.train.features import (
    FeatureSet,
    encode_image_folder,
    encode_manifest,
)
from vidbatch.core.config import SEQUENCE_HEADS
from vidbatch.core.errors import ConfigError
from vidbatch.model.encoder import FrameEncoder, open_encoder

HEADS = SEQUENCE_HEADS
TRAINED_STATE_RESET_S = 10.0
"""A streaming encoder's reset period inside a shot, for a head trained on it (the bundle records it, and
`vidbatch label` starts the state over alike): longer than the zero-shot default (`DEFAULT_STATE_RESET_S`), as
the head reads the pooled features of a whole action (a UCF101 clip is 2-13 s). Measured with MoViNet-A0 on the
shared UCF101 group folds, with the prior: 98.2% of held-out clips at 4 s, 98.9% with no period inside a clip
(benchmarks/README.md)."""
LINEAR_C = 0.01
"""The linear head's inverse L2 strength: 0.003, 0.01 and 0.03 measured within 0.3 points of each other."""
LINEAR_MIN_STEPS = 1000
"""The linear head trains for at least this many steps (each epoch repeats the items where they are few): a few
hundred window ends make ~15 steps an epoch, and 10 epochs left it short of its optimum (on the UCF101 folds,
offline, 98.9% of held-out clips after 10 epochs against 99.3% after 1,000 steps, 99.1% after 3,000)."""
MIN_CONTEXT_S = 1.0
"""A streaming encoder's training items: window ends whose state has seen at least this much video since its
reset (a clip's last few frames after a periodic reset teach the head noise)."""
HEAD_INPUT = "logits"
"""What a head on a streaming encoder reads by default: the model's logits. With window ends (`STATE_WEIGHTS`), on
the shared UCF101 clips offline, logits alone gave 99.1-99.3% of held-out clips on four group folds and 98.2-98.6%
holding out one group at a time (C from 0.003 to 0.1), the pooled features and the logits 98.2-99.1% and
97.5-97.9%, the pooled features alone 97.0% and 96.4%: the 480 pooled features let a head learn a group's person
and room, the logits carry what Kinetics taught the model (`--head-input`)."""
STATE_WEIGHTS = "window_end"
"""A head on a streaming encoder trains on the last frame of each reset window, whose state has seen the whole
window (`ResetRule.window_ends`), and its bundle tells `vidbatch label` to weigh a video's frames alike
(`core.config.STATE_WEIGHTS`). On the shared UCF101 group folds, offline: 99.1% of held-out clips (97.9% one group
out) against 97.3% (95.9%) for a head trained on every frame with a second of context, weighed by context."""


def frame_head(features: int, num_classes: int, units: int = 256, dropout: float = 0.4) -> keras.Model:
    """Features of one frame -> class probabilities."""
    inputs = keras.Input(shape=(features,), name="features")
    x = layers.LayerNormalization(name="norm")(inputs)
    x = layers.Dropout(dropout / 2)(x)
    x = layers.Dense(units, activation="relu", name="hidden")(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="frame_head")


def linear_head(x_train: np.ndarray, num_classes: int, c: float | None = None) -> keras.Model:
    """Features of one frame -> class probabilities, linearly: standardised on `x_train` (the statistics are
    weights of the head, so labeling standardises alike), then a softmax layer under an L2 penalty of
    1 / (2 c n), the penalty of a logistic regression of inverse strength `c` over n items, starting at zero as a
    logistic regression's solver does (from random weights under a strong penalty a few items had not converged).

    Why, for a streaming video encoder: its pooled features and logits already summarise the video since the
    reset, and a few hundred clips give thousands of near-repeated frames, which the dense head (`frame_head`)
    learns by heart. On the shared UCF101 group folds, both heads on the same features with the label map's
    prior: 98.6% of held-out clips against the dense head's 97.7% (benchmarks/README.md)."""
    c = LINEAR_C if c is None else c
    inputs = keras.Input(shape=(x_train.shape[1],), name="features")
    norm = layers.Normalization(name="standardise")
    norm.adapt(x_train)
    outputs = layers.Dense(num_classes, activation="softmax", name="probs", kernel_initializer="zeros",
                           kernel_regularizer=keras.regularizers.L2(1.0 / (2.0 * c * max(1, len(x_train)))))(norm(inputs))
    return keras.Model(inputs, outputs, name="linear_head")


def sequence_head(clip_len: int, features: int, num_classes: int, head: str = "gru", units: int = 128,
                  dropout: float = 0.4) -> keras.Model:
    """Features of `clip_len` consecutive sampled frames -> class probabilities."""
    if head not in HEADS:
        raise ConfigError(f"Invalid `head`: expected one of {HEADS}. Received: head={head!r}")
    inputs = keras.Input(shape=(clip_len, features), name="features")
    x = layers.LayerNormalization(name="norm")(inputs)
    x = layers.Dropout(dropout / 2)(x)
    x = layers.Dense(units, activation="relu", name="project")(x)
    if head == "gru":
        x = layers.GRU(units, name="gru")(x)
    elif head == "lstm":
        x = layers.LSTM(units, name="lstm")(x)
    elif head == "late_fusion":  # the seeds' late fusion over a pretrained encoder: two frames, fused at the top
        gap = max(1, clip_len // 2)
        first = layers.Flatten()(layers.Cropping1D((0, clip_len - 1), name="first")(x))
        later = layers.Flatten()(layers.Cropping1D((gap, clip_len - 1 - gap), name="later")(x))
        x = layers.Concatenate()([first, later, layers.Subtract(name="change")([later, first])])
        x = layers.Dense(units, activation="relu", name="fuse")(x)
    elif head == "attention":
        weights = layers.Softmax(axis=1, name="frame_weights")(layers.Dense(1, name="frame_score")(x))
        x = layers.Dot(axes=1, name="attend")([weights, x])
        x = layers.Flatten()(x)
    else:
        x = layers.GlobalAveragePooling1D(name="mean")(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name=f"{head}_head")


def windows(features: np.ndarray, clip_len: int, stride: int) -> np.ndarray:
    """Windows [n, clip_len, F] of consecutive frames, a new one every `stride`; a short video gives one window,
    padded by repeating its last frame (training only: labeling reports such a video as too short)."""
    if len(features) < clip_len:
        pad = np.repeat(features[-1:], clip_len - len(features), axis=0)
        return np.concatenate([features, pad])[None]
    starts = range(0, len(features) - clip_len + 1, stride)
    return np.stack([features[s : s + clip_len] for s in starts])


def load_features(config: Any, encoder: FrameEncoder) -> FeatureSet:
    if os.path.isdir(config.data):
        if config.kind == "sequence":
            raise ConfigError(f"Sequence models train on a labeled video manifest, not an image folder. "
                              f"Received: data={config.data!r}")
        return encode_image_folder(config.data, encoder, cache_dir=config.feature_cache)
    return encode_manifest(config.data, encoder, config.fps, config.storage_options, cache_dir=config.feature_cache,
                           show_progress=bool(config.verbose))


def split(data: FeatureSet, config: Any) -> tuple[np.ndarray, np.ndarray]:
    """Train/test masks over sources, never splitting a group: the named `holdout_groups`, or a stratified share."""
    if config.holdout_groups:
        held = np.isin(np.asarray(data.group_names, dtype=str), [str(g) for g in config.holdout_groups])
        if not held.any() or held.all():
            raise ConfigError(f"Invalid `holdout_groups`: they must name some groups of the data but not all. "
                              f"Received: holdout_groups={list(config.holdout_groups)!r}; groups include "
                              f"{sorted(set(data.group_names))[:10]}")
        return ~held, held
    return split_by_group(data.y, data.groups, config.test_fraction, config.seed)


def items(data: FeatureSet, mask: np.ndarray, config: Any, windowed: bool | None = None,
          min_context: tuple[Any, int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training items (frames, or windows), their labels, and the source each came from.

    `min_context` (a streaming encoder's `ResetRule` and a count): only the last frame of each reset window
    (`ResetRule.window_ends`) whose state has seen at least that many frames (a video too short for any keeps its
    longest window's end)."""
    windowed = config.kind == "sequence" if windowed is None else windowed
    xs, ys, sources = [], [], []
    for index in np.flatnonzero(mask):
        feats = np.asarray(data.features[index], np.float32)
        if min_context is not None and len(feats):
            seen = min_context[0].weights(np.zeros(len(feats), bool), STATE_WEIGHTS)
            feats = feats[seen >= max(1.0, min(min_context[1], seen.max()))]
        if windowed:
            feats = windows(feats, config.clip_len, config.clip_stride or max(1, config.clip_len // 2))
        xs.append(feats)
        ys.append(np.full(len(feats), data.y[index], np.int64))
        sources.append(np.full(len(feats), index, np.int64))
    if not xs:
        return np.zeros((0,)), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(sources)


def train_encoded(config: Any) -> tuple[keras.Model, FrameEncoder, dict[str, Any], FeatureSet]:
    """Encode the data once, train the head, evaluate on the held-out groups; returns the head, the encoder,
    the metrics and the feature set (the caller writes the bundle)."""
    started = time.monotonic()
    keras.utils.set_random_seed(config.seed)
    prior_map = getattr(config, "prior_map", None)
    # a streaming video encoder's head reads what `head_input` says (the logits last: a prior's input)
    encoder = open_encoder(config.encoder, head_input=getattr(config, "head_input", HEAD_INPUT))
    streaming = getattr(encoder, "stateful", False)
    if prior_map and not streaming:
        raise ConfigError(f"Invalid `prior_map`: a prior comes from a streaming video model's own classes; "
                          f"{config.encoder!r} is a frame encoder. Received: prior_map={prior_map!r}")
    if prior_map and encoder.head_input == "pooled":
        raise ConfigError("Invalid `head_input`: a prior is computed from the video model's logits, so the head must "
                          "read them ('logits' or 'both'). Received: head_input='pooled' with prior_map="
                          f"{prior_map!r}")
    prior_record = _prior_record(config, encoder) if prior_map else None  # a bad map fails before minutes of encoding
    if streaming:
        # a streaming video encoder: its pooled features at a frame are the mean over the video since the last
        # reset, a window already; the head reads one frame's (a frame head), trained on each window's last frame
        # (`items`, `STATE_WEIGHTS`), and the state starts over
        # as `vidbatch label` will start it over with this bundle (every TRAINED_STATE_RESET_S at this rate; the
        # clips have no cuts to speak of)
        from vidbatch.model.streaming import ResetRule

        if os.path.isdir(config.data):
            raise ConfigError(f"Invalid `encoder`: a streaming video encoder reads videos, not an image folder. "
                              f"Received: data={config.data!r}, encoder={config.encoder!r}")
        encoder.reset = ResetRule(max(1, round(TRAINED_STATE_RESET_S * config.fps)))
        if config.kind == "sequence":
            logging.getLogger("vidbatch").warning(
                "%s is a streaming video encoder: its state already spans the video since it last started over, "
                "so a linear head reads its %s at the last sampled frame before each restart (a frame bundle); "
                "--head and --clip-len do not apply", os.path.basename(config.encoder),
                {"logits": "logits", "pooled": "pooled features", "both": "pooled features and logits"}[
                    encoder.head_input])
    data = load_features(config, encoder)
    if len(data.features) == 0:
        raise ConfigError(f"No usable training items in {config.data!r} (skipped: {data.skipped})")
    encode_s = time.monotonic() - started
    train_mask, test_mask = split(data, config)
    windowed = config.kind == "sequence" and not streaming
    context = _context(encoder, config) if streaming else None
    x_train, y_train, _ = items(data, train_mask, config, windowed, min_context=context)
    x_test, y_test, test_sources = items(data, test_mask, config, windowed)
    num_classes = len(data.classes)
    prior = _prior(prior_record, data.classes, config.prior_map) if prior_map else None

    def fit_head(x: np.ndarray, y: np.ndarray, validation: tuple[np.ndarray, np.ndarray] | None):
        keras.utils.set_random_seed(config.seed)  # the refit starts as the measured fit started
        if windowed:
            model = sequence_head(config.clip_len, encoder.features, num_classes, config.head)
        elif streaming:
            model = linear_head(x, num_classes)
        else:
            model = frame_head(encoder.features, num_classes)
        if streaming and not windowed:  # few items (window ends): each epoch passes over them several times
            repeat = -(-LINEAR_MIN_STEPS // (config.epochs * max(1, -(-len(x) // config.batch_size))))
            x, y = np.tile(x, (repeat, 1)), np.tile(y, repeat)  # after the head's statistics and penalty are set
        steps = max(1, -(-len(x) // config.batch_size)) * config.epochs
        schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps, alpha=0.05)
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        history = model.fit(x, y, batch_size=config.batch_size, epochs=config.epochs, shuffle=True,
                            validation_data=validation, verbose=keras_verbose(config.verbose))
        return model, history

    fit_started = time.monotonic()
    head, fit = fit_head(x_train, y_train, (x_test, y_test) if len(x_test) else None)
    fit_s = time.monotonic() - fit_started
    history = {k: [float(v) for v in vals] for k, vals in fit.history.items()}
    report = {"accuracy": float("nan"), "count": 0, "per_class": {}, "confusion": [], "classes": data.classes}
    video_report = None
    if len(x_test):
        probs = head.predict(x_test, batch_size=256, verbose=0)
        if prior is not None:  # as `vidbatch label` will: the head mixed with the video model's own classes
            probs = prior.mix(probs, x_test)
        report = classification_report(y_test, probs.argmax(axis=1), data.classes)
        if not os.path.isdir(config.data):  # per video: the mean of its items' probabilities, as `label` does
            from vidbatch.stages.smooth import weighted_mean

            videos = np.unique(test_sources)
            reset = getattr(encoder, "reset", None) if streaming else None  # weighed as `stages.assemble` weighs
            mean = np.stack([weighted_mean(probs[test_sources == v], None if reset is None else
                                           reset.weights(np.zeros(int((test_sources == v).sum()), bool),
                                                         STATE_WEIGHTS))
                             for v in videos])
            video_report = classification_report(data.y[videos], mean.argmax(axis=1), data.classes)
    refit = None
    if getattr(config, "refit", False) and test_mask.any():
        # measured, now the head that ships: trained again on every video, the held-out groups too (the figure
        # above is the estimate). On the UCF101 group folds, the MoViNet head on all of a fold's other groups
        # against one on 75% of them: 99.5% against 98.9% of the folds' clips through `vidbatch label` (97.7%
        # against 97.5% for the previous head, on every frame's pooled features and logits; benchmarks/README.md)
        refit_started = time.monotonic()
        x_all, y_all, _ = items(data, train_mask | test_mask, config, windowed, min_context=context)
        head, _ = fit_head(x_all, y_all, None)
        every = train_mask | test_mask
        refit = {"videos": int(every.sum()), "items": int(len(x_all)), "groups": len(np.unique(data.groups[every])),
                 "fit_seconds": round(time.monotonic() - refit_started, 1),
                 "trained_on": f"all {int(every.sum())} {'images' if os.path.isdir(config.data) else 'videos'} "
                                 f"({len(x_all)} items)"}
    metrics = {
        "test_accuracy": report["accuracy"],
        "refit": refit,
        "report": report,
        "video_accuracy": video_report["accuracy"] if video_report else None,
        "video_report": video_report,
        "epochs": config.epochs,
        "parameters": {"head": int(head.count_params()), "encoder_file_bytes": len(encoder.data)},
        "encoder": {"file": config.encoder, "runtime": encoder.runtime, "features": encoder.features,
                    "input_size": list(encoder.input_size), "sources_from_cache": data.cached,
                    "streaming": bool(streaming),
                    "encode_seconds": round(encode_s, 1)},
        "data": {
            "source": config.data,
            "sources_seen": data.sources,
            "items": int(len(x_train) + len(x_test)),
            "train_items": len(x_train),
            "test_items": len(x_test),
            "train_groups": len(np.unique(data.groups[train_mask])),
            "test_groups": len(np.unique(data.groups[test_mask])),
            "test_sources": [data.names[i] for i in np.flatnonzero(test_mask)],
            "test_labels": [data.classes[data.y[i]] for i in np.flatnonzero(test_mask)],
            "skipped": data.skipped,
            "skipped_examples": data.skipped_examples,
            "classes": data.classes,
        },
        "history": history,
        "fit_seconds": round(fit_s, 1),
        "train_seconds": round(time.monotonic() - started, 1),
        "prior": prior.record() | {"source": prior_map} if prior is not None else None,
        "_prior": prior,
    }
    return head, encoder, metrics, data


def _context(encoder: FrameEncoder, config: Any) -> tuple[Any, int]:
    """A streaming encoder's frames that train the head: those whose state has seen `MIN_CONTEXT_S` of sampled
    frames (the first frames after a reset rest on a frame or two, and taught the head noise)."""
    return encoder.reset, max(1, round(MIN_CONTEXT_S * config.fps))


def _prior_record(config: Any, encoder: FrameEncoder) -> dict[str, Any]:
    """The zero-shot prior's sidecar record (`model.prior`), its map checked against the video model's classes."""
    from vidbatch.model.label_map import LabelMap
    from vidbatch.model.prior import read_prior_classes

    model_classes = read_prior_classes(config.prior_classes)
    if len(model_classes) != encoder.classes:
        raise ConfigError(f"Invalid `prior_classes`: {len(model_classes)} names for a model of {encoder.classes} "
                          f"classes. Received: prior_classes={config.prior_classes!r}")
    try:
        with open(config.prior_map, "rb") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"Invalid `prior_map`: cannot read it ({exc.strerror}). Received: prior_map={config.prior_map!r}") from None
    LabelMap.from_json(text, tuple(model_classes), source=config.prior_map, combine=config.prior_combine, rest="drop",
                       option="prior_map")
    mapping = json.loads(text)  # checked: JSON, each class once, every name one of the model's
    return {"classes": model_classes, "map": mapping, "combine": config.prior_combine, "weight": config.prior_weight}


def _prior(record: dict[str, Any], classes: list[str], source: str):
    """The prior for the head's classes (its map must name exactly them)."""
    from vidbatch.model.prior import Prior

    return Prior.from_record(record, classes, source)
