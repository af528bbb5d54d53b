"""`vidbatch annotate`: the tutorial's output video, with the smoothed label and score drawn on every frame.

Every frame is decoded by the decode stage, classified (in batches) by the
classify stage and labeled with the smooth stage's rolling average of the
last K predictions, exactly as the tutorial does; the raw per-frame
label can be drawn beside it. Same frame count, size and fps as the input.

A streaming video model (MoViNet-Stream) is run as `vidbatch label` runs it: on the frames sampled at its rate
(5 fps unless `fps` says otherwise), one state carried from each to the next, starting over at shot cuts and every
`state_reset_s`; every frame of the video shows the label of the last sampled frame at or before it. (Fed every
frame in batches, its state would see 25 frames a second it was not trained on, and start over at each batch.)
With `label_map`, the labels are the map's classes, as in `vidbatch label`.
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

from vidbatch.core.config import DEFAULT_SHOT_THRESHOLD, LabelConfig
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
    classified: int = 0
    """Frames the model ran on: every frame, or a streaming model's sampled ones."""


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
             channel_order: str | None = None, label_map: str | None = None, label_map_combine: str = "max",
             label_map_rest: str = "other", fps: float | None = None,
             state_reset_s: float | None = None) -> AnnotateResult:
    """`fps` and `state_reset_s`: a streaming video model's sampling rate and reset period (as `vidbatch label`'s;
    other models classify every frame)."""
    if window < 1:
        raise ConfigError(f"Invalid `window`: expected an integer >= 1. Received: window={window!r}")
    # the options `vidbatch label` would settle for this model, checked by the same config
    options = LabelConfig(manifest=video, model=model, out=out, fps=fps, state_reset_s=state_reset_s,
                          label_map=label_map, label_map_combine=label_map_combine, label_map_rest=label_map_rest)
    bundle = load_bundle(model, storage_options, trust_model_code, classes=classes, preprocessing=preprocessing,
                         channel_order=channel_order, label_map=label_map, label_map_options=options.label_map_options)
    streaming = bool(getattr(bundle.encoder, "stateful", False))
    notes = list(bundle.notes)
    if not streaming and fps is not None:  # said, not ignored: a frame model is run on every frame here
        raise ConfigError("Invalid `fps`: `vidbatch annotate` classifies every frame of a frame model; --fps sets a "
                          f"streaming video model's sampling rate. Received: fps={fps!r}")
    if streaming:
        from vidbatch.pipeline import streaming_notes

        options = options.for_model(bundle.spec.sample_fps, True, bundle.spec.extra.get("state_reset_s"),
                                    bundle.spec.extra.get("state_weights"))
        notes += streaming_notes(bundle, options)
    for note in notes:
        logging.getLogger("vidbatch").warning(note)
    if bundle.spec.kind != "frame":
        raise ConfigError("`vidbatch annotate` draws per-frame labels: it needs a frame model (kind 'frame'), "
                          f"not a clip model. Received: kind={bundle.spec.kind!r}")
    predictor = Predictor(bundle, batch_size=1 if streaming else batch_size,
                          reset_every=options.reset_every() if streaming else 0)
    height, width = bundle.spec.input_size
    names = bundle.classes
    counts: dict[str, int] = {}
    spec = DecodeSpec(width=width, height=height, sampling=FrameSampling(0),
                      shot_threshold=DEFAULT_SHOT_THRESHOLD if streaming else None, resize=bundle.spec.resize)
    with storage.local_copy(video, storage_options) as path:
        decoder = VideoDecoder(path, spec, uri=video)
        info = decoder.open()
        fps = info.fps if np.isfinite(info.fps) else 25.0
        # a streaming model's window counts its sampled frames: the same seconds as `window` frames of the video
        smoother = RollingAverage(max(1, round(window * options.fps / fps)) if streaming else window)
        tmpdir = tempfile.mkdtemp(prefix="vidbatch-annotate-")
        local_out = os.path.join(tmpdir, "annotated" + os.path.splitext(out)[1].lower())
        writer, codec = _writer(local_out, fps, (info.width, info.height))
        written = 0

        def write(sampled, raw: np.ndarray, mean: np.ndarray) -> None:
            label = names[int(mean.argmax())]
            counts[label] = counts.get(label, 0) + 1
            lines = [(f"{label}: {mean.max():.2f}", (0, 255, 0))]
            if show_raw:
                lines.append((f"raw: {names[int(raw.argmax())]} {raw.max():.2f}", (200, 200, 200)))
            _draw(sampled.original, lines)
            writer.write(sampled.original)

        def label_and_write(batch: list) -> int:
            probs = predictor.predict(np.stack([sampled.item for sampled in batch]))
            for sampled, raw, mean in zip(batch, probs, smoother.update(probs)):
                write(sampled, raw, mean)
            return len(batch)

        try:
            if streaming:
                written = _stream(decoder, predictor, options.fps, smoother, write)
            else:
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
    return AnnotateResult(out=out, frames=written, fps=fps, codec=codec, labels=counts,
                          classified=predictor.items_predicted)


def _stream(decoder: VideoDecoder, predictor: Predictor, rate: float, smoother: RollingAverage, write) -> int:
    """A streaming model over one video: the frames its rate samples (`stages.sampling`, as the decode stage picks
    them) go through it in order with one state, which starts over after a cut (any frame since the last sampled
    one) and by the predictor's reset rule; each frame is written with the last sampled frame's labels."""
    sampler = FrameSampling(rate).sampler()
    key, cut, current, written = object(), False, None, 0
    try:
        for sampled in decoder.frames(keep_original=True):
            cut = cut or bool(sampled.shot_cut)
            if sampler.keep(sampled.timestamp_s) or current is None:
                probs = predictor.predict_all(sampled.item[None], [key], np.array([cut]))["probs"]
                if cut:  # the rolling average starts over at a cut, as in `vidbatch label`
                    smoother = RollingAverage(smoother.window)
                current, cut = (probs[0], smoother.update(probs)[0]), False
            write(sampled, *current)
            written += 1
    finally:
        predictor.forget([key])
    return written
