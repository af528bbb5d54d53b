"""Model builders: a small CNN trained from scratch, ImageNet backbones to fine-tune, and a 3D CNN for clips.

Each returns `(model, preprocessing)`: the model takes float pixels and the
preprocessing name says how uint8 RGB is scaled for it (see bundle.PREPROCESSING).
"""

from __future__ import annotations

import os

import keras
import numpy as np
from keras import layers

from vidbatch.core.config import (
    CLIP_ARCHITECTURES,
    FLOW_CHANNELS,
    FLOW_STEPS_PER_PIXEL,
    FLOW_ZERO,
)
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


def _conv_block(x, filters: int, kernel, name: str, strides=1):
    conv = layers.Conv3D if len(kernel) == 3 else layers.Conv2D
    x = conv(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _head(x, num_classes: int, dropout: float = 0.3):
    x = layers.Dropout(dropout)(x)
    return layers.Dense(num_classes, activation="softmax", name="probs")(x)


def early_fusion(input_shape: tuple[int, int, int, int], num_classes: int, width: int = 16):
    """Frames stacked along the channels: (T, H, W, 3) -> (H, W, 3T), then a 2D CNN."""
    t, h, w, c = input_shape
    inputs = keras.Input(shape=input_shape, name="clip")
    x = layers.Reshape((h, w, t * c))(layers.Permute((2, 3, 1, 4))(inputs))
    for i, filters in enumerate((width * 2, width * 4, width * 8)):
        x = _conv_block(x, filters, (3, 3), f"conv{i}")
        x = layers.MaxPooling2D(2)(x)
    return keras.Model(inputs, _head(layers.GlobalAveragePooling2D()(x), num_classes), name="early_fusion")


def late_fusion(input_shape: tuple[int, int, int, int], num_classes: int, width: int = 16):
    """One 2D CNN, shared, on two frames half a clip apart (the first and the middle one); the two feature maps
    meet only at the top."""
    t, h, w, c = input_shape
    inputs = keras.Input(shape=input_shape, name="clip")
    frame = keras.Input(shape=(h, w, c))
    x = frame
    for i, filters in enumerate((width * 2, width * 4, width * 8)):
        x = _conv_block(x, filters, (3, 3), f"conv{i}")
        x = layers.MaxPooling2D(2)(x)
    tower = keras.Model(frame, x, name="tower")  # a feature map: where things are is what the top compares
    first = layers.Reshape((h, w, c))(layers.Cropping3D(((0, t - 1), (0, 0), (0, 0)), name="first")(inputs))
    gap = max(1, t // 2)  # frames half a clip apart: far enough to move, near enough not to pass a scene's cycle
    last = layers.Reshape((h, w, c))(layers.Cropping3D(((gap, t - 1 - gap), (0, 0), (0, 0)), name="later")(inputs))
    # the towers meet only at the top: one convolution over both maps side by side, so what moved where is
    # read the same way anywhere in the frame (Karpathy et al. fuse with fully connected layers; on small data
    # those learnt each position separately and stayed near chance on the temporal pair)
    x = layers.Concatenate(name="fuse_maps")([tower(first), tower(last)])
    x = _conv_block(x, width * 8, (3, 3), "fuse")
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, _head(x, num_classes), name="late_fusion")


def r2plus1d(input_shape: tuple[int, int, int, int], num_classes: int, width: int = 16):
    """(2+1)D: every 3x3x3 convolution factored into a spatial 1x3x3 and a temporal 3x1x1 one."""
    inputs = keras.Input(shape=input_shape, name="clip")
    x = inputs
    for i, filters in enumerate((width, width * 2, width * 4)):
        x = _conv_block(x, filters, (1, 3, 3), f"conv{i}_space")
        x = _conv_block(x, filters, (3, 1, 1), f"conv{i}_time")
        x = layers.MaxPooling3D((1, 2, 2) if i == 0 else (2, 2, 2), padding="same")(x)
    return keras.Model(inputs, _head(layers.GlobalAveragePooling3D()(x), num_classes), name="r2plus1d")


def slowfast(input_shape: tuple[int, int, int, int], num_classes: int, width: int = 16):
    """A slow pathway (every `alpha`-th frame, wide) and a fast one (every frame, `beta` of the channels), with
    lateral connections from fast to slow after each stage (Feichtenhofer et al., 2019), scaled down."""
    t = input_shape[0]
    alpha = 4 if t % 4 == 0 and t >= 8 else 2 if t % 2 == 0 else 1
    thin = max(4, width // 4)
    inputs = keras.Input(shape=input_shape, name="clip")
    slow = _conv_block(inputs, width, (1, 3, 3), "slow_stem", strides=(alpha, 2, 2))  # every alpha-th frame
    fast = _conv_block(inputs, thin, (3, 3, 3), "fast_stem", strides=(1, 2, 2))
    for i, factor in enumerate((1, 2, 4)):
        lateral = layers.Conv3D(2 * thin * factor, (5, 1, 1), strides=(alpha, 1, 1), padding="same",
                                name=f"lateral{i}")(fast)
        slow = layers.Concatenate(name=f"join{i}")([slow, lateral])
        slow = _conv_block(slow, width * factor * 2, (1, 3, 3) if i == 0 else (3, 3, 3), f"slow{i}")
        fast = _conv_block(fast, thin * factor * 2, (3, 3, 3), f"fast{i}")
        if i < 2:
            slow = layers.MaxPooling3D((1, 2, 2), padding="same")(slow)
            fast = layers.MaxPooling3D((1, 2, 2), padding="same")(fast)
    x = layers.Concatenate()([layers.GlobalAveragePooling3D()(slow), layers.GlobalAveragePooling3D()(fast)])
    return keras.Model(inputs, _head(x, num_classes), name="slowfast")


def two_stream(input_shape: tuple[int, int, int, int], num_classes: int, width: int = 16):
    """Two streams (Simonyan and Zisserman, 2014), scaled down: a 2D CNN on the clip's middle RGB frame, and one
    on the optical flow of all its frames stacked along the channels, fused at the top.

    The input is what the decode stage sends (`flow` bundles): uint8 RGB plus 2 packed flow channels per frame.
    Two fixed 1x1x1 convolutions unpack them (RGB / 255; flow in pixels), so the saved model needs no code."""
    t, h, w, c = input_shape
    if c != 3 + FLOW_CHANNELS:
        raise ConfigError(f"Invalid input for two_stream: expected {3 + FLOW_CHANNELS} channels (RGB and flow). "
                          f"Received: input_shape={input_shape}")
    inputs = keras.Input(shape=input_shape, name="clip")
    unpack_rgb = layers.Conv3D(3, 1, use_bias=False, trainable=False, name="unpack_rgb")
    unpack_flow = layers.Conv3D(FLOW_CHANNELS, 1, trainable=False, name="unpack_flow")
    rgb, flow = unpack_rgb(inputs), unpack_flow(inputs)
    middle = t // 2
    x = layers.Reshape((h, w, 3))(layers.Cropping3D(((middle, t - 1 - middle), (0, 0), (0, 0)), name="middle")(rgb))
    y = layers.Reshape((h, w, t * FLOW_CHANNELS))(layers.Permute((2, 3, 1, 4))(flow))
    for i, filters in enumerate((width * 2, width * 4, width * 8)):
        x = layers.MaxPooling2D(2)(_conv_block(x, filters, (3, 3), f"rgb{i}"))
        y = layers.MaxPooling2D(2)(_conv_block(y, filters, (3, 3), f"flow{i}"))
    x = layers.Concatenate()([layers.GlobalAveragePooling2D()(x), layers.GlobalAveragePooling2D()(y)])
    model = keras.Model(inputs, _head(x, num_classes), name="two_stream")
    pick_rgb = np.zeros((1, 1, 1, c, 3), "float32")
    pick_flow = np.zeros((1, 1, 1, c, FLOW_CHANNELS), "float32")
    for i in range(3):
        pick_rgb[..., i, i] = 1 / 255
    for j in range(FLOW_CHANNELS):
        pick_flow[..., 3 + j, j] = 1 / FLOW_STEPS_PER_PIXEL
    unpack_rgb.set_weights([pick_rgb])
    unpack_flow.set_weights([pick_flow, np.full(FLOW_CHANNELS, -FLOW_ZERO / FLOW_STEPS_PER_PIXEL, "float32")])
    return model


def clip_model(arch: str, input_shape: tuple[int, int, int, int], num_classes: int, width: int = 16):
    """The clip model of family `arch` (see `CLIP_ARCHITECTURES`)."""
    builders = {"3d_cnn": clip_cnn, "early_fusion": early_fusion, "late_fusion": late_fusion, "r2plus1d": r2plus1d,
                "slowfast": slowfast, "two_stream": two_stream}
    if arch not in builders:
        raise ConfigError(f"Invalid `arch`: expected one of {CLIP_ARCHITECTURES}. Received: arch={arch!r}")
    return builders[arch](input_shape, num_classes, width=width)
