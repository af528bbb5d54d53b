"""Batched classification of frames or clips with a model bundle.

`Predictor` follows Ray Data's callable-class shape: the model is loaded once
in `__init__`, and `__call__` maps a dict of arrays (`frames`: uint8) to the
same dict with `probs` in place of the pixels. Frames travel as uint8 and are preprocessed inside
the compiled predict function; every call uses one fixed batch shape (the
last batch is padded), so the compiled function is traced once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from vidbatch.core.config import PRECISIONS
from vidbatch.core.errors import ModelBundleError
from vidbatch.model.bundle import ModelBundle, load_bundle
from vidbatch.model.preprocessing import preprocessing_layer


def accelerator_available() -> bool:
    """Whether the Keras backend computes on a GPU/TPU (then inference leaves the CPUs to decoding)."""
    return any(not device.lower().startswith("cpu") for device in keras.distribution.list_devices())


def _at_precision(model, precision: str):
    """The same model (same weights) computing under Keras' `mixed_<precision>` policy."""
    if precision == "float32":
        return model
    policy = keras.DTypePolicy(f"mixed_{precision}")
    outputs = {tensor._keras_history.operation.name for tensor in getattr(model, "outputs", None) or []}

    def cast(layer):
        config = layer.get_config()
        if not isinstance(layer, keras.layers.InputLayer) and layer.name not in outputs:
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    try:
        twin = keras.models.clone_model(model, clone_function=cast, recursive=True)
        twin.set_weights(model.get_weights())
    except Exception as exc:
        raise ModelBundleError(
            f"Invalid `precision`: {precision} inference rebuilds the model layer by layer, which failed for "
            f"{type(model).__name__} {model.name!r} ({type(exc).__name__}: {str(exc)[:200]}). "
            f"Received: precision={precision!r}; use precision='float32' for this model."
        ) from None
    return twin


class Predictor:
    """Loads a bundle once; predicts class probabilities for batches of uint8 items.

    With `embeddings`, it also returns one feature vector per item: the bundle's encoder output (for a clip,
    the mean over its frames), or for a bundle without an encoder the input of the model's last layer. With
    `model_probs` and a label map, also the model's own probabilities before the map (`--model-top-k`, for audit).
    """

    def __init__(
        self,
        bundle: ModelBundle | str,
        batch_size: int = 32,
        storage_options: Mapping[str, Any] | None = None,
        trust_model_code: bool = False,
        classes: str | None = None,
        precision: str = "float32",
        preprocessing: str | None = None,
        channel_order: str | None = None,
        embeddings: bool = False,
        reset_every: int = 0,
        label_map: str | None = None,
        label_map_options: Mapping[str, Any] | None = None,
        model_probs: bool = False,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"Invalid `precision`: expected one of {PRECISIONS}. Received: precision={precision!r}")
        if isinstance(bundle, str):
            bundle = load_bundle(bundle, storage_options, trust_model_code, classes=classes,
                                 preprocessing=preprocessing, channel_order=channel_order, label_map=label_map,
                                 label_map_options=label_map_options)
        self.bundle = bundle
        self.spec = bundle.spec
        self.encoder = bundle.encoder
        self.stateful = bool(getattr(self.encoder, "stateful", False))
        if self.stateful:
            from vidbatch.model.streaming import ResetRule

            self.encoder.reset = ResetRule(reset_every)
        self.batch_size = batch_size
        self.precision = precision
        self.embeddings = embeddings
        self.model_probs = model_probs and bundle.label_map is not None
        self._model = self._inference_model(bundle, precision, embeddings and self.encoder is None)
        self.items_predicted = 0
        self.frames_encoded = 0
        self.encode_s = 0.0

    @staticmethod
    def _inference_model(bundle: ModelBundle, precision: str, penultimate: bool):
        spec = bundle.spec
        model = _at_precision(bundle.model, precision)
        if bundle.encoder is not None:  # the head runs on the encoder's features
            inputs = keras.Input(shape=spec.head_input_shape, dtype="float32", name="features")
            x = inputs
        else:
            inputs = keras.Input(shape=spec.item_shape, dtype="uint8", name="pixels")
            x = preprocessing_layer(spec.preprocessing, spec.channel_order)(inputs)
        features = None
        if penultimate:
            try:
                twin = keras.Model(model.inputs, [model.layers[-1].input, model.outputs[0]])
            except Exception as exc:
                raise ModelBundleError(
                    f"Invalid `embeddings` for model {bundle.source!r}: cannot reach the input of its last layer "
                    f"({type(exc).__name__}: {str(exc)[:200]}); save it as a functional or Sequential Keras model"
                ) from None
            features, outputs = twin(x, training=False)
            features = keras.layers.Flatten(name="vidbatch_embedding", dtype="float32")(features)
        else:
            outputs = model(x, training=False)
        if spec.outputs == "logits":
            outputs = keras.layers.Softmax(name="vidbatch_softmax", dtype="float32")(outputs)
        return keras.Model(inputs, outputs if features is None else [outputs, features], name="vidbatch_inference")

    def warm_up(self) -> float:
        """Trace the predict function on one blank batch, then time a second: items/s this model sustains here."""
        blank = np.zeros((self.batch_size, *self.spec.item_shape), np.uint8)
        frames = blank.reshape(-1, *blank.shape[-3:])  # every frame distinct, so an encoder cannot skip repeats
        frames[:, 0, 0, 0], frames[:, 0, 0, 1] = np.arange(len(frames)) % 256, np.arange(len(frames)) // 256 % 256
        lanes = getattr(self.encoder, "lanes", 1) if self.stateful else 1
        keys = [("warm-up", i % lanes) for i in range(len(blank))] if self.stateful else None
        self.predict_all(blank, keys)
        started = time.perf_counter()
        self.predict_all(blank, keys)
        self.forget(set(keys or ()))
        self.items_predicted -= 2 * self.batch_size
        self.frames_encoded, self.encode_s = 0, 0.0
        return self.batch_size / max(time.perf_counter() - started, 1e-9)

    def predict(self, items: np.ndarray) -> np.ndarray:
        """Probabilities (float32, [N, classes]) for uint8 items of the bundle's item shape (for a streaming
        model: the items of one video, in order, from its start)."""
        if not self.stateful:
            return self.predict_all(items)["probs"]
        key = object()
        try:
            return self.predict_all(items, [key] * len(items))["probs"]
        finally:
            self.forget([key])

    def predict_all(self, items: np.ndarray, keys=None, cuts: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """`probs` [N, classes], with `embeddings` also `embedding` [N, features] (float32), and with
        `model_probs` (a label map's run) `model_probs` [N, the model's classes].

        A streaming (stateful) model also needs `keys` (the video of each item; a video's items in order, after
        its items of earlier calls) and `cuts` (a shot cut before the item); `forget(keys)` when videos end.
        """
        items = np.asarray(items)
        expected = self.spec.item_shape
        if items.ndim != len(expected) + 1 or tuple(items.shape[1:]) != expected:
            raise ValueError(f"Predictor.predict: expected items of shape (N, *{expected}). Received: shape={items.shape}")
        if items.dtype != np.uint8:
            items = np.clip(items, 0, 255).astype(np.uint8)
        embedding = None
        if self.stateful:
            if keys is None:
                raise ValueError("Predictor.predict_all: a streaming model carries each video's state from frame to "
                                 "frame, so it needs `keys` (the video of each item). Received: keys=None")
            started = time.perf_counter()
            items, embedding = self.encoder.head_inputs(items, keys, cuts)
            self.frames_encoded += len(items)
            self.encode_s += time.perf_counter() - started
        elif self.encoder is not None:
            features = self._encode(items)
            embedding = features.mean(axis=1) if features.ndim == 3 else features
            items = features
        n = len(items)
        out = np.empty((n, len(self.spec.classes)), dtype=np.float32)  # the model's classes
        tail = tuple(items.shape[1:])
        size = self.batch_size
        for start in range(0, n, size):
            batch = items[start : start + size]
            count = len(batch)
            if count < size:
                batch = np.concatenate([batch, np.zeros((size - count, *tail), dtype=items.dtype)])
            result = self._model.predict_on_batch(batch)
            if isinstance(result, (list, tuple)):  # [probs, penultimate features]
                result, feats = result
                if embedding is None:
                    embedding = np.empty((n, np.shape(feats)[-1]), np.float32)
                embedding[start : start + count] = np.asarray(feats, dtype=np.float32)[:count]
            out[start : start + count] = np.asarray(result, dtype=np.float32)[:count]
        if self.bundle.prior is not None:  # the head mixed with its video model's zero-shot probabilities
            out = self.bundle.prior.mix(out, items)
        result = {}
        if self.model_probs:
            result["model_probs"] = out
        if self.bundle.label_map is not None:  # the model's classes combined into the user's, before smoothing
            out = self.bundle.label_map.apply(out)
        self.items_predicted += n
        result["probs"] = out
        if self.embeddings:
            result["embedding"] = embedding
        return result

    def forget(self, keys) -> None:
        """A streaming model drops the state of finished videos (nothing to do for other models)."""
        if self.stateful:
            self.encoder.forget(keys)

    def _encode(self, items: np.ndarray) -> np.ndarray:
        """Encoder features of every frame; a clip's frames shared with the previous clip are encoded once."""
        started = time.perf_counter()
        if items.ndim == 4:
            features = self.encoder.encode(items)
            self.frames_encoded += len(items)
        else:
            n, t = items.shape[:2]
            flat = items.reshape(n * t, *items.shape[2:])
            keys = [hashlib.blake2b(frame.tobytes(), digest_size=16).digest() for frame in flat]
            first = {}
            for i, key in enumerate(keys):
                first.setdefault(key, i)
            unique = np.fromiter(first.values(), dtype=np.int64)
            slot = {key: j for j, key in enumerate(first)}
            encoded = self.encoder.encode(flat[unique])
            features = encoded[[slot[key] for key in keys]].reshape(n, t, -1)
            self.frames_encoded += len(unique)
        self.encode_s += time.perf_counter() - started
        return features

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Ray Data shape: the batch's columns, with `frames` replaced by `probs` (pixels are not needed downstream)."""
        result = {name: value for name, value in batch.items() if name != "frames"}
        result.update(self.predict_all(batch["frames"]))
        return result
