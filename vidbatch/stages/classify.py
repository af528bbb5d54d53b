"""Batched classification of frames or clips with a model bundle.

`Predictor` follows Ray Data's callable-class shape: the model is loaded once
in `__init__`, and `__call__` maps a dict of arrays (`frames`: uint8) to the
same dict with `probs` in place of the pixels. Frames travel as uint8 and are preprocessed inside
the compiled predict function; every call uses one fixed batch shape (the
last batch is padded), so the compiled function is traced once.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

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
    """Loads a bundle once; predicts class probabilities for batches of uint8 items."""

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
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"Invalid `precision`: expected one of {PRECISIONS}. Received: precision={precision!r}")
        if isinstance(bundle, str):
            bundle = load_bundle(bundle, storage_options, trust_model_code, classes=classes,
                                 preprocessing=preprocessing, channel_order=channel_order)
        self.bundle = bundle
        self.spec = bundle.spec
        self.batch_size = batch_size
        self.precision = precision
        self._model = self._inference_model(bundle, precision)
        self.items_predicted = 0

    @staticmethod
    def _inference_model(bundle: ModelBundle, precision: str):
        spec = bundle.spec
        inputs = keras.Input(shape=spec.item_shape, dtype="uint8", name="pixels")
        model = _at_precision(bundle.model, precision)
        outputs = model(preprocessing_layer(spec.preprocessing, spec.channel_order)(inputs), training=False)
        if spec.outputs == "logits":
            outputs = keras.layers.Softmax(name="vidbatch_softmax", dtype="float32")(outputs)
        return keras.Model(inputs, outputs, name="vidbatch_inference")

    def warm_up(self) -> float:
        """Trace the predict function on one blank batch, then time a second: items/s this model sustains here."""
        blank = np.zeros((self.batch_size, *self.spec.item_shape), np.uint8)
        self.predict(blank)
        started = time.perf_counter()
        self.predict(blank)
        self.items_predicted -= 2 * self.batch_size
        return self.batch_size / max(time.perf_counter() - started, 1e-9)

    def predict(self, items: np.ndarray) -> np.ndarray:
        """Probabilities (float32, [N, classes]) for uint8 items of the bundle's item shape."""
        items = np.asarray(items)
        expected = self.spec.item_shape
        if items.ndim != len(expected) + 1 or tuple(items.shape[1:]) != expected:
            raise ValueError(f"Predictor.predict: expected items of shape (N, *{expected}). Received: shape={items.shape}")
        if items.dtype != np.uint8:
            items = np.clip(items, 0, 255).astype(np.uint8)
        n = len(items)
        out = np.empty((n, len(self.spec.classes)), dtype=np.float32)
        size = self.batch_size
        for start in range(0, n, size):
            batch = items[start : start + size]
            count = len(batch)
            if count < size:
                pad = np.zeros((size - count, *expected), dtype=np.uint8)
                batch = np.concatenate([batch, pad])
            probs = self._model.predict_on_batch(batch)
            out[start : start + count] = np.asarray(probs, dtype=np.float32)[:count]
        self.items_predicted += n
        return out

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Ray Data shape: the batch's columns, with `frames` replaced by `probs` (pixels are not needed downstream)."""
        result = {name: value for name, value in batch.items() if name != "frames"}
        result["probs"] = self.predict(batch["frames"])
        return result
