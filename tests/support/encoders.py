"""Tiny real frame encoders for tests: an int8 .tflite (made by TensorFlow's converter) and a .keras one.

Both keep where things are in the frame (colour strengths on a 4x4 grid, no global pooling), so a sequence
head can tell a ball moving left from one moving right.
"""

from __future__ import annotations

import os

import numpy as np

SHARED_WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), "shared", "data", "weights")
SHARED_EMBEDDER = os.path.join(SHARED_WEIGHTS, "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")


def tiny_encoder_model(size: int = 32, seed: int = 0):
    """Hand-set weights, like the colour model: per-pixel redness, blueness and greenness (the synthetic classes'
    colours), averaged over an 8x8 grid of cells, and their maxima over the frame: 195 features that say what is
    where, and what is there at all."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    colour = layers.Conv2D(3, 1, activation="relu", name="colour")
    x = colour(x)
    grid = layers.Flatten()(layers.AveragePooling2D(size // 8)(x))
    model = keras.Model(inputs, layers.Concatenate()([grid, layers.GlobalMaxPooling2D()(x)]))
    kernel = np.array([[1.0, -0.5, -0.5], [-0.5, -0.5, 1.0], [-0.5, 1.0, -0.5]], dtype="float32").T
    colour.set_weights([kernel.reshape(1, 1, 3, 3), np.full(3, -0.2, "float32")])  # greyish backgrounds: 0
    return model


def make_keras_encoder(path: str, size: int = 32, seed: int = 0) -> str:
    tiny_encoder_model(size, seed).save(path)
    return path


def make_tflite_encoder(path: str, size: int = 32, seed: int = 0) -> str:
    """An int8 model with uint8 input and output, like the shared MobileNet embedder (only much smaller)."""
    rng = np.random.default_rng(seed)
    # calibration pictures: solid random colours (the full range of every feature) and noise
    return int8_tflite(tiny_encoder_model(size, seed), path, lambda i: (
        np.ones((1, size, size, 3)) * rng.integers(0, 256, 3) if i % 2 else rng.integers(0, 256, (1, size, size, 3))))


def int8_tflite(model, path: str, calibration) -> str:
    """`model` converted to an int8 .tflite with uint8 input and output; `calibration(i)`: its i-th calibration
    picture (1, H, W, 3) in 0-255."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([calibration(i).astype("float32")] for i in range(32))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    with open(path, "wb") as handle:
        handle.write(converter.convert())
    return path


def make_tflite_classifier(path: str, size: int = 32) -> str:
    """The colour model (ball red, box blue, waves green) as an int8 .tflite classifier taking uint8 RGB 0-255, with
    its softmax inside: what a pretrained classifier file such as the shared ImageNet MobileNet looks like."""
    import keras

    from tests.support.helpers import colour_model

    inputs = keras.Input(shape=(size, size, 3))
    model = keras.Model(inputs, colour_model(size)(keras.layers.Rescaling(1 / 255.0)(inputs)))
    rng = np.random.default_rng(0)
    colours = [(255, 0, 0), (0, 0, 255), (0, 255, 0), (128, 128, 128)]
    return int8_tflite(model, path, lambda i: (
        np.ones((1, size, size, 3)) * np.array(colours[i % 4]) if i % 2 else rng.integers(0, 256, (1, size, size, 3))))


STREAM_SCALE = (80.0, 40.0)
"""The tiny streaming model's logits: 80 x (mean colour since the last reset) + 40 x (the frame before's colour)."""


def make_streaming_classifier(path: str, size: int = 32) -> str:
    """A tiny streaming, stateful video classifier made with TensorFlow's converter, shaped like MoViNet-Stream:
    `image` float32 [1, 1, size, size, 3] in [0, 1] plus state in, `logits` [1, 3] (ball red, box blue, waves
    green) plus the next state out. Its state: a running sum of the frames' colour features and their count (the
    head pool), and the previous frame's features (a causal "stream buffer"). Its logits depend on the past, so a
    state lost, mixed between videos or not reset shows in them; `streaming_reference` computes them in NumPy."""
    import tensorflow as tf

    kernel = tf.constant(COLOUR_KERNEL)

    class Stream(tf.Module):
        @tf.function(input_signature=[
            tf.TensorSpec([1, 1, size, size, 3], tf.float32, name="image"),
            tf.TensorSpec([1, 1, 1, 1, 3], tf.float32, name="state_head_pool_buffer"),
            tf.TensorSpec([1], tf.int32, name="state_head_pool_frame_count"),
            tf.TensorSpec([1, 1, 1, 1, 3], tf.float32, name="state_block0_stream_buffer")])
        def __call__(self, image, state_head_pool_buffer, state_head_pool_frame_count, state_block0_stream_buffer):
            colour = tf.nn.relu(tf.tensordot(image, kernel, axes=1) - 0.2)
            feature = tf.reduce_mean(colour, axis=[1, 2, 3], keepdims=True)
            total = state_head_pool_buffer + feature
            count = state_head_pool_frame_count + 1
            pooled = total / tf.cast(tf.reshape(count, [1, 1, 1, 1, 1]), tf.float32)
            logits = tf.reshape(STREAM_SCALE[0] * pooled + STREAM_SCALE[1] * state_block0_stream_buffer, [1, 3])
            return {"logits": logits, "state_head_pool_buffer": total, "state_head_pool_frame_count": count,
                    "state_block0_stream_buffer": feature}

    module = Stream()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    with open(path, "wb") as handle:
        handle.write(converter.convert())
    return path


COLOUR_KERNEL = np.array([[1.0, -0.5, -0.5], [-0.5, -0.5, 1.0], [-0.5, 1.0, -0.5]], dtype="float32").T
"""Redness, blueness, greenness of an RGB pixel in [0, 1] (the synthetic classes' colours)."""


def streaming_reference(frames: np.ndarray, resets: np.ndarray) -> np.ndarray:
    """The tiny streaming model's logits in NumPy, for uint8 frames [N, H, W, 3] in order; state starts over where
    `resets` is true (and at the first frame)."""
    out = np.zeros((len(frames), 3), np.float32)
    total, count, previous = np.zeros(3), 0, np.zeros(3)
    for i, frame in enumerate(frames):
        if i == 0 or resets[i]:
            total, count, previous = np.zeros(3), 0, np.zeros(3)
        feature = np.maximum(frame.astype(np.float32) / 255.0 @ COLOUR_KERNEL - 0.2, 0).mean(axis=(0, 1))
        total, count = total + feature, count + 1
        out[i] = STREAM_SCALE[0] * total / count + STREAM_SCALE[1] * previous
        previous = feature
    return out
