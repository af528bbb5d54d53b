"""`vidbatch annotate`: the tutorial's output video, with the smoothed label and score drawn on every frame.

Every frame is classified (in batches) and labeled with the rolling average
of the last K predictions, exactly as the tutorial does; the raw per-frame
label can be drawn beside it. Same frame count, size and fps as the input.
Containers: `.mp4` is H.264 where the OpenCV build has an encoder, else
MPEG-4 Part 2 (VLC, mpv, most desktop players); `.webm` is VP8 (browsers);
`.avi` is Motion JPEG.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping

import cv2
import numpy as np

from vidbatch.core.errors import ConfigError, VideoError
from vidbatch.io import storage
from vidbatch.model.bundle import load_bundle
from vidbatch.stages.classify import Predictor
from vidbatch.stages.decode import check_file, describe_unopenable, sniff_non_video

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
             classes: str | None = None) -> AnnotateResult:
    if window < 1:
        raise ConfigError(f"Invalid `window`: expected an integer >= 1. Received: window={window!r}")
    bundle = load_bundle(model, storage_options, trust_model_code, classes=classes)
    if bundle.spec.kind != "frame":
        raise ConfigError("`vidbatch annotate` draws per-frame labels: it needs a frame model (kind 'frame'), "
                          f"not a clip model. Received: kind={bundle.spec.kind!r}")
    predictor = Predictor(bundle, batch_size=batch_size)
    height, width = bundle.spec.input_size
    names = bundle.classes
    counts: dict[str, int] = {}
    with storage.local_copy(video, storage_options) as path:
        check_file(path, video)
        not_video = sniff_non_video(path)
        if not_video:
            raise VideoError(not_video)
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            raise VideoError(describe_unopenable(path))
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if np.isfinite(fps) and 0 < fps <= 1000 else 25.0
        size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        tmpdir = tempfile.mkdtemp(prefix="vidbatch-annotate-")
        local_out = os.path.join(tmpdir, "annotated" + os.path.splitext(out)[1].lower())
        writer, codec = _writer(local_out, fps, size)
        queue: deque = deque(maxlen=window)
        written = 0
        try:
            while True:
                batch = []
                while len(batch) < batch_size:
                    grabbed, frame = capture.read()
                    if not grabbed:
                        break
                    batch.append(frame)
                if not batch:
                    break
                inputs = np.stack([cv2.cvtColor(cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA),
                                                cv2.COLOR_BGR2RGB) for f in batch])
                for frame, probs in zip(batch, predictor.predict(inputs)):
                    queue.append(probs)
                    mean = np.mean(queue, axis=0)
                    label = names[int(mean.argmax())]
                    counts[label] = counts.get(label, 0) + 1
                    lines = [(f"{label}: {mean.max():.2f}", (0, 255, 0))]
                    if show_raw:
                        lines.append((f"raw: {names[int(probs.argmax())]} {probs.max():.2f}", (200, 200, 200)))
                    _draw(frame, lines)
                    writer.write(frame)
                    written += 1
        finally:
            capture.release()
            writer.release()
        if written == 0:
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise VideoError("no frames: OpenCV/FFmpeg opened the file but decoded no frames")
        fs, target = storage.url_to_fs(out, storage_options)
        with open(local_out, "rb") as handle:
            storage.atomic_write_bytes(fs, target, handle.read())
        shutil.rmtree(tmpdir, ignore_errors=True)
    return AnnotateResult(out=out, frames=written, fps=fps, codec=codec, labels=counts)
