"""Model builders: a small CNN trained from scratch, ImageNet backbones to fine-tune, and a 3D CNN for clips.

Each returns `(model, preprocessing)`: the model takes float pixels and the
preprocessing name says how uint8 RGB is scaled for it (see bundle.PREPROCESSING).
"""

from __future__ import annotations

import os

import keras
from keras import layers

from vidbatch.core.errors import ConfigError

FRAME_BACKBONES = ("small_cnn", "mobilenet_v2", "resnet50", "efficientnet_b0")
_APPLICATIONS = {
    "mobilenet_v2": ("MobileNetV2", "symmetric"),
    "resnet50": ("ResNet50", "caffe"),
    "efficientnet_b0": ("EfficientNetB0", "none"),
}


def small_cnn(input_shape: tuple[int, int, int], num_classes: int, width: int = 32, dropout: float = 0.3):
    """A compact CNN that trains from scratch on a CPU in minutes (no pretrained weights needed)."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, filters in enumerate((width, width * 2, width * 4, width * 8)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}a")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{i}a")(x)
        x = layers.Activation("relu")(x)
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}b")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{i}b")(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def backbone_model(name: str, input_shape: tuple[int, int, int], num_classes: int, weights: str | None):
    """An ImageNet backbone with a new head; returns `(model, base, preprocessing)`.

    `weights`: "imagenet" (Keras downloads and caches them), None, or a local weights file.
    """
    if name not in _APPLICATIONS:
        raise ConfigError(f"Invalid `backbone`: expected one of {FRAME_BACKBONES}. Received: backbone={name!r}")
    class_name, preprocessing = _APPLICATIONS[name]
    constructor = getattr(keras.applications, class_name)
    local_file = weights not in (None, "imagenet")
    if local_file and not os.path.exists(weights):
        raise ConfigError(f"Invalid `weights`: no such file. Received: weights={weights!r}")
    try:
        base = constructor(include_top=False, weights=None if local_file else weights, input_shape=input_shape, pooling="avg")
    except Exception as exc:  # offline: urllib / HTTP / DNS errors surface as several types
        if weights == "imagenet":
            raise ConfigError(
                f"Could not download ImageNet weights for {name} ({type(exc).__name__}: {str(exc)[:160]}). "
                "This machine may be offline: pass --weights none to train from scratch, "
                "or --weights PATH to a local weights file (e.g. a copy of Keras' cached .h5 file)."
            ) from None
        raise
    if local_file:
        base.load_weights(weights)
    inputs = keras.Input(shape=input_shape, name="image")
    x = base(inputs)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name=f"{name}_classifier"), base, preprocessing


def clip_cnn(input_shape: tuple[int, int, int, int], num_classes: int, width: int = 16):
    """A small 3D CNN over clips (T, H, W, 3), after the tutorial's Conv3D model."""
    inputs = keras.Input(shape=input_shape, name="clip")
    x = inputs
    for i, filters in enumerate((width, width * 2, width * 4)):
        x = layers.Conv3D(filters, 3, padding="same", use_bias=False, name=f"conv3d{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn3d{i}")(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling3D((1, 2, 2) if i == 0 else (2, 2, 2), padding="same")(x)
    x = layers.GlobalAveragePooling3D()(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="clip_cnn")
