"""The .tflite runtime: LiteRT (`ai-edge-litert`), or TensorFlow's deprecated interpreter where LiteRT has no
wheel; shared by frame encoders (`model.encoder`) and streaming video models (`model.streaming`)."""

from __future__ import annotations

import os
import warnings
from typing import Any

from vidbatch.core.errors import ModelBundleError


def _cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


def _interpreter_class() -> tuple[Any, str]:
    try:
        from ai_edge_litert.interpreter import Interpreter  # the maintained runtime

        return Interpreter, "litert"
    except ImportError:
        pass
    try:
        import tensorflow as tf
    except ImportError:
        raise ModelBundleError("A .tflite encoder needs LiteRT: pip install ai-edge-litert") from None
    warnings.warn("LiteRT (ai-edge-litert) is not installed: running the .tflite encoder with TensorFlow's "
                  "deprecated tf.lite.Interpreter", stacklevel=3)
    return tf.lite.Interpreter, "tf.lite"
