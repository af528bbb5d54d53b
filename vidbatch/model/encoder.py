"""Frozen pretrained frame encoders: uint8 RGB frames in, one feature vector per frame out.

An encoder bundle is a frozen encoder plus a small trained Keras head (the
tutorial's transfer learning, and the seeds' CNN + RNN). Two kinds of
encoder file, neither of which can carry code:

- `.tflite`: a TensorFlow Lite model (an int8-quantised MobileNet, say),
  run through LiteRT (`ai-edge-litert`). Where LiteRT has no wheel (Windows),
  TensorFlow's own interpreter is used instead, with a note: it is
  deprecated since TF 2.20. Its input must be uint8 RGB (0-255; any scaling
  is inside the model); a quantised output is dequantised.
- `.keras`: a Keras feature extractor, loaded in safe mode, that takes RGB
  pixels 0-255 and scales them itself (`encoder_from_application` builds
  one from an ImageNet application and a local weights file, or the
  download for users who are online).

`load_encoder` is the router; `FrameEncoder.encode` is all callers need.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np

from vidbatch.core.errors import ModelBundleError
from vidbatch.model.litert import _cpus, _interpreter_class

ENCODER_FORMATS = ("tflite", "keras")


class FrameEncoder:
    """uint8 RGB frames [N, H, W, 3] -> float32 features [N, F]."""

    format: str = ""
    input_size: tuple[int, int] = (0, 0)
    features: int = 0
    runtime: str = ""
    data: bytes = b""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def encode(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        expected = (*self.input_size, 3)
        if frames.ndim != 4 or tuple(frames.shape[1:]) != expected:
            raise ValueError(f"FrameEncoder.encode: expected frames of shape (N, *{expected}). Received: shape={frames.shape}")
        if frames.dtype != np.uint8:
            frames = np.clip(frames, 0, 255).astype(np.uint8)
        if len(frames) == 0:
            return np.zeros((0, self.features), np.float32)
        return self._encode(frames)

    def _encode(self, frames: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class TFLiteEncoder(FrameEncoder):
    """A .tflite frame encoder run by LiteRT, batched where the model allows it."""

    format = "tflite"

    def __init__(self, data: bytes, source: str, batch_size: int = 16, num_threads: int | None = None,
                 role: str = "encoder") -> None:
        """`role`: what the user gave the file as (`encoder`, or `model` for a pretrained classifier), for errors."""
        self.data = data
        self.source = source
        self._class, self.runtime = _interpreter_class()
        self._threads = num_threads or _cpus()
        try:
            interpreter = self._interpreter()
        except (ValueError, RuntimeError) as exc:
            raise ModelBundleError(f"Cannot load {role} {source!r}: not a TensorFlow Lite model ({str(exc)[:200]})") from None
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        role = role.capitalize()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelBundleError(f"{role} {source!r}: expected one input and one output. "
                                   f"Received: {len(inputs)} inputs, {len(outputs)} outputs")
        shape = tuple(int(v) for v in inputs[0]["shape"])
        if len(shape) != 4 or shape[-1] != 3:
            raise ModelBundleError(f"{role} {source!r}: expected an image input [1, H, W, 3]. Received: shape={list(shape)}")
        if inputs[0]["dtype"] != np.uint8:
            raise ModelBundleError(
                f"{role} {source!r}: expected uint8 RGB input (a quantised image model). Received: "
                f"dtype={np.dtype(inputs[0]['dtype']).name}; export it with uint8 input, or use a .keras encoder")
        self.input_size = (shape[1], shape[2])
        self.features = int(np.prod(outputs[0]["shape"][1:]))
        self._batch = batch_size
        self._single = None  # the batch-1 interpreter, for models that cannot be resized
        self._batched = None

    def _interpreter(self, batch: int = 1):
        from vidbatch.core.quiet import quiet_native_stderr

        with quiet_native_stderr():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate for CPU" on every start
            interpreter = self._class(model_content=self.data, num_threads=self._threads)
            if batch != 1:
                detail = interpreter.get_input_details()[0]
                interpreter.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
            interpreter.allocate_tensors()
        return interpreter

    def _run(self, interpreter, frames: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], frames)
        interpreter.invoke()
        detail = interpreter.get_output_details()[0]
        raw = interpreter.get_tensor(detail["index"]).reshape(len(frames), -1)
        scale, zero = detail.get("quantization", (0.0, 0))
        if np.issubdtype(raw.dtype, np.integer) and scale:
            return (raw.astype(np.float32) - zero) * np.float32(scale)
        return raw.astype(np.float32)

    def _encode(self, frames: np.ndarray) -> np.ndarray:
        out = np.empty((len(frames), self.features), np.float32)
        size = self._batch
        if self._batched is None and size > 1:
            try:
                self._batched = self._interpreter(size)
            except (ValueError, RuntimeError):  # some delegates refuse a resized batch: run frame by frame
                self._batch = size = 1
        for start in range(0, len(frames), size):
            part = frames[start : start + size]
            if size == 1:
                self._single = self._single or self._interpreter()
                out[start] = self._run(self._single, part)[0]
                continue
            count = len(part)
            if count < size:
                part = np.concatenate([part, np.zeros((size - count, *part.shape[1:]), np.uint8)])
            out[start : start + count] = self._run(self._batched, np.ascontiguousarray(part))[:count]
        return out


class KerasEncoder(FrameEncoder):
    """A .keras feature extractor (safe mode) that takes RGB pixels 0-255."""

    format = "keras"

    def __init__(self, data: bytes, source: str, batch_size: int = 32, trust_model_code: bool = False) -> None:
        import keras

        self.data = data
        self.source = source
        self.runtime = f"keras-{keras.backend.backend()}"
        with tempfile.TemporaryDirectory(prefix="vidbatch-encoder-") as tmp:
            local = os.path.join(tmp, "encoder.keras")
            with open(local, "wb") as handle:
                handle.write(data)
            try:
                model = keras.saving.load_model(local, compile=False, safe_mode=not trust_model_code)
            except Exception as exc:
                raise ModelBundleError(f"Cannot load encoder {source!r}: Keras could not read it "
                                       f"({type(exc).__name__}: {str(exc)[:300]})") from None
        shape = tuple(model.input_shape)
        if len(shape) != 4 or shape[-1] != 3 or None in shape[1:3]:
            raise ModelBundleError(f"Encoder {source!r}: expected an image input (None, H, W, 3) with a fixed size. "
                                   f"Received: input_shape={shape}")
        self.input_size = (int(shape[1]), int(shape[2]))
        self.features = int(np.prod([d for d in model.output_shape[1:]]))
        self._batch = batch_size
        inputs = keras.Input(shape=(*self.input_size, 3), dtype="uint8")
        outputs = keras.layers.Flatten()(model(keras.ops.cast(inputs, "float32"), training=False))
        self._model = keras.Model(inputs, outputs)

    def _encode(self, frames: np.ndarray) -> np.ndarray:
        out = np.empty((len(frames), self.features), np.float32)
        size = self._batch
        for start in range(0, len(frames), size):
            part = frames[start : start + size]
            count = len(part)
            if count < size:  # one batch shape: traced once
                part = np.concatenate([part, np.zeros((size - count, *part.shape[1:]), np.uint8)])
            out[start : start + count] = np.asarray(self._model.predict_on_batch(part), np.float32)[:count]
        return out


def encoder_format(path: str) -> str:
    """'tflite' or 'keras' from a file name; refuses anything else, naming what was received."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in ENCODER_FORMATS:
        raise ModelBundleError(f"Invalid `encoder`: expected a .tflite or .keras file. Received: encoder={path!r}")
    return ext


def load_encoder(data: bytes, fmt: str, source: str, trust_model_code: bool = False,
                 head_input: str = "pooled", role: str = "encoder") -> FrameEncoder:
    """The encoder in `data` (the bytes of a .tflite or .keras file); `head_input`: what a streaming video model
    gives the head (`model.streaming.HEAD_INPUTS`)."""
    if fmt == "tflite":
        from vidbatch.model.streaming import StreamingModel, is_streaming

        if is_streaming(data):  # a video model: per-frame features that carry the video's past (pooled features)
            return StreamingModel(data, source, head_input=head_input)
        return TFLiteEncoder(data, source, role=role)
    if fmt == "keras":
        return KerasEncoder(data, source, trust_model_code=trust_model_code)
    raise ModelBundleError(f"Invalid encoder format: expected one of {ENCODER_FORMATS}. Received: format={fmt!r}")


def open_encoder(path: str, trust_model_code: bool = False, head_input: str = "pooled") -> FrameEncoder:
    """Load an encoder file given by the user (`--encoder PATH`)."""
    fmt = encoder_format(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ModelBundleError(f"Invalid `encoder`: cannot read it ({exc.strerror}). Received: encoder={path!r}") from None
    return load_encoder(data, fmt, path, trust_model_code, head_input=head_input)
