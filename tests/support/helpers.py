"""Test helpers: a deterministic colour-keyed model bundle, and small utilities."""

from __future__ import annotations

import os

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
SHARED_VIDEOS = os.path.join(SHARED_DATA, "videos")
SHARED_SPORTS = os.path.join(SHARED_DATA, "sports")


def colour_model(size: int = 32, kind: str = "frame", clip_len: int = 4):
    """A real Keras model with hand-set weights: ball (red), box (blue), waves (green).

    1x1 convolution computes per-pixel 'redness', 'blueness', 'greenness'; global
    max pooling finds the strongest; a scaled softmax decides. Deterministic,
    no training needed, and it labels the synthetic classes correctly.
    """
    import keras
    from keras import layers

    shape = (size, size, 3) if kind == "frame" else (clip_len, size, size, 3)
    inputs = keras.Input(shape=shape)
    conv = layers.Conv2D(3, 1, name="colour") if kind == "frame" else layers.Conv3D(3, 1, name="colour")
    x = layers.ReLU()(conv(inputs))
    x = (layers.GlobalMaxPooling2D() if kind == "frame" else layers.GlobalMaxPooling3D())(x)
    dense = layers.Dense(3, name="scale")
    outputs = layers.Softmax()(dense(x))
    model = keras.Model(inputs, outputs)
    # output channels: ball=R-(G+B)/2, box=B-(R+G)/2, waves=G-(R+B)/2 (inputs are RGB in 0..1)
    kernel = np.array([[1.0, -0.5, -0.5], [-0.5, -0.5, 1.0], [-0.5, 1.0, -0.5]], dtype="float32").T
    conv.set_weights([kernel.reshape((1,) * (len(shape) - 1) + (3, 3)), np.zeros(3, "float32")])
    dense.set_weights([np.eye(3, dtype="float32") * 20.0, np.zeros(3, "float32")])
    return model


def make_colour_bundle(folder: str, size: int = 32, kind: str = "frame", clip_len: int = 4) -> str:
    from vidbatch.model.bundle import BundleSpec, save_bundle

    spec = BundleSpec(
        classes=("ball", "box", "waves"), input_size=(size, size), kind=kind,
        clip_len=clip_len if kind == "clip" else None, preprocessing="unit", name="colour",
    )
    save_bundle(colour_model(size, kind, clip_len), spec, folder)
    return folder


def shared_videos() -> list[str]:
    if not os.path.isdir(SHARED_VIDEOS):
        return []
    return sorted(os.path.join(SHARED_VIDEOS, f) for f in os.listdir(SHARED_VIDEOS) if not f.startswith("."))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for servers the tests start)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
