"""`vidbatch annotate`: the tutorial's output video, with the smoothed label and score drawn on every frame.

Every frame is decoded by the decode stage, classified (in batches) by the
classify stage and labeled with the smooth stage's rolling average of the
last K predictions, exactly as the tutorial does; the raw per-frame
label can be drawn beside it. Same frame count, size and fps as the input.
Containers: `.mp4` is H.264 where the OpenCV build has an encoder, else
MPEG-4 Part 2 (VLC, mpv, most desktop players); `.webm` is VP8 (browsers);
`.avi` is Motion JPEG.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Mapping

import cv2
import numpy as np

from vidbatch.core.errors import ConfigError, VideoError
from vidbatch.core.quiet import quiet_native_stderr
from vidbatch.io import storage
from vidbatch.model.bundle import load_bundle
from vidbatch.stages.classify import Predictor
from vidbatch.stages.decode import DecodeSpec, VideoDecoder
from vidbatch.stages.sampling import FrameSampling
from vidbatch.stages.smooth import RollingAverage

_CODECS = {".mp4": ("avc1", "mp4v"), ".m4v": ("avc1", "mp4v"), ".mov": ("avc1", "mp4v"), ".webm": ("VP80",), ".avi": ("MJPG",)}


@dataclass
class AnnotateResult:
    out: str
    frames: int
    fps: float
    codec: str
    labels: dict[str, int]
    """Smoothed label -> frames shown with it."""


def _writer(path: str, fps: float, size: tuple[int, int]):
    ext = os.path.splitext(path)[1].lower()
    if ext not in _CODECS:
        raise ConfigError(f"Invalid `--out`: expected a .mp4, .webm, .avi, .mov or .m4v file. Received: out={path!r}")
    for codec in _CODECS[ext]:
        with quiet_native_stderr():  # FFmpeg says why a codec is missing; the user can do nothing about it
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*codec), fps, size)
        if writer.isOpened():
            return writer, codec
        writer.release()
    raise VideoError(f"OpenCV cannot write {ext} files here (tried {', '.join(_CODECS[ext])})")


def _draw(frame: np.ndarray, lines: list[tuple[str, tuple[int, int, int]]]) -> None:
    height = frame.shape[0]
    scale = max(0.4, height / 720.0)
    thickness = max(1, int(round(2 * scale)))
    y = int(12 * scale)
    for text, colour in lines:
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        y += h + base + int(6 * scale)
        cv2.rectangle(frame, (int(8 * scale), y - h - base - int(4 * scale)), (int(16 * scale) + w, y + int(2 * scale)), (0, 0, 0), -1)
        cv2.putText(frame, text, (int(12 * scale), y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def annotate(video: str, model: str, out: str, window: int = 64, show_raw: bool = True, batch_size: int = 32,
             storage_options: Mapping[str, Any] | None = None, trust_model_code: bool = False,
             classes: str | None = None, preprocessing: str | None = None,
             channel_order: str | None = None) -> AnnotateResult:
    if window < 1:
        raise ConfigError(f"Invalid `window`: expected an integer >= 1. Received: window={window!r}")
    bundle = load_bundle(model, storage_options, trust_model_code, classes=classes, preprocessing=preprocessing,
                         channel_order=channel_order)
    for note in bundle.notes:
        logging.getLogger("vidbatch").warning(note)
    if bundle.spec.kind != "frame":
        raise ConfigError("`vidbatch annotate` draws per-frame labels: it needs a frame model (kind 'frame'), "
                          f"not a clip model. Received: kind={bundle.spec.kind!r}")
    predictor = Predictor(bundle, batch_size=batch_size)
    height, width = bundle.spec.input_size
    names = bundle.classes
    counts: dict[str, int] = {}
    spec = DecodeSpec(width=width, height=height, sampling=FrameSampling(0), shot_threshold=None,
                      resize=bundle.spec.resize)
    smoother = RollingAverage(window)
    with storage.local_copy(video, storage_options) as path:
        decoder = VideoDecoder(path, spec, uri=video)
        info = decoder.open()
        fps = info.fps if np.isfinite(info.fps) else 25.0
        tmpdir = tempfile.mkdtemp(prefix="vidbatch-annotate-")
        local_out = os.path.join(tmpdir, "annotated" + os.path.splitext(out)[1].lower())
        writer, codec = _writer(local_out, fps, (info.width, info.height))
        written = 0

        def label_and_write(batch: list) -> int:
            probs = predictor.predict(np.stack([sampled.item for sampled in batch]))
            for sampled, raw, mean in zip(batch, probs, smoother.update(probs)):
                label = names[int(mean.argmax())]
                counts[label] = counts.get(label, 0) + 1
                lines = [(f"{label}: {mean.max():.2f}", (0, 255, 0))]
                if show_raw:
                    lines.append((f"raw: {names[int(raw.argmax())]} {raw.max():.2f}", (200, 200, 200)))
                _draw(sampled.original, lines)
                writer.write(sampled.original)
            return len(batch)

        try:
            batch = []
            for sampled in decoder.frames(keep_original=True):
                batch.append(sampled)
                if len(batch) == batch_size:
                    written += label_and_write(batch)
                    batch = []
            if batch:
                written += label_and_write(batch)
            writer.release()
            fs, target = storage.url_to_fs(out, storage_options)
            with open(local_out, "rb") as handle:
                storage.atomic_write_bytes(fs, target, handle.read())
        finally:
            decoder.close()
            writer.release()
            shutil.rmtree(tmpdir, ignore_errors=True)
    return AnnotateResult(out=out, frames=written, fps=fps, codec=codec, labels=counts)
