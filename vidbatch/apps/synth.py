"""Deterministic synthetic videos: a few classes of moving shapes and textures, written as real MP4s.

Classes are chosen so a tiny CNN learns them in seconds (distinct shape and
hue), while the background, sizes, speeds and colours vary per video. Two
extra classes differ only in the direction of motion (`left_to_right`,
`right_to_left`): any single frame of one could belong to the other, so only
a model that sees frame order (a 3D CNN over clips) can tell them apart.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

SHAPE_CLASSES = ("ball", "box", "waves")
TEMPORAL_CLASSES = ("left_to_right", "right_to_left")
ALL_CLASSES = SHAPE_CLASSES + TEMPORAL_CLASSES


@dataclass(frozen=True)
class SynthSpec:
    width: int = 160
    height: int = 120
    fps: float = 25.0
    seconds: float = 4.0
    flicker: float = 0.0
    """Fraction of frames that show another class's object: a flickering video."""


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = rng.integers(20, 90, size=3)
    noise = rng.integers(-15, 16, size=(h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


class _Scene:
    """One video's fixed random parameters; `frame(t)` draws the picture at time t (seconds)."""

    def __init__(self, label: str, rng: np.random.Generator, spec: SynthSpec) -> None:
        self.label = label
        self.spec = spec
        self.rng = rng
        h, w = spec.height, spec.width
        self.background = _background(rng, h, w)
        self.size = rng.uniform(0.16, 0.28) * min(h, w)
        self.x0, self.y0 = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
        angle = rng.uniform(0, 2 * math.pi)
        speed = rng.uniform(0.15, 0.35) * w
        self.vx, self.vy = speed * math.cos(angle), speed * math.sin(angle)
        self.jitter = rng.integers(-30, 31, size=3)
        self.period = rng.uniform(8, 16)
        self.phase_speed = rng.uniform(1.0, 3.0)
        self.lane = rng.uniform(0.3, 0.7) * h
        self.cross_s = rng.uniform(1.2, 2.0)

    def _bounce(self, p: float, lo: float, hi: float) -> float:
        span = hi - lo
        q = (p - lo) % (2 * span)
        return lo + (q if q <= span else 2 * span - q)

    def draw(self, label: str, t: float, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        r = self.size / 2
        x = self._bounce(self.x0 + self.vx * t, r, w - r)
        y = self._bounce(self.y0 + self.vy * t, r, h - r)
        colour = lambda bgr: tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(bgr, self.jitter))  # noqa: E731
        if label == "ball":
            cv2.circle(image, (int(x), int(y)), int(r), colour((40, 40, 230)), -1, lineType=cv2.LINE_AA)
        elif label == "box":
            cv2.rectangle(image, (int(x - r), int(y - r)), (int(x + r), int(y + r)), colour((230, 60, 40)), -1)
        elif label == "waves":
            xs = np.arange(w)[None, :] + np.arange(h)[:, None] * 0.5
            stripes = 0.5 + 0.5 * np.sin(2 * math.pi * (xs / self.period - self.phase_speed * t))
            green = np.array(colour((60, 210, 60)), dtype=np.float32)
            mask = stripes[..., None]
            image[:] = (image * (1 - 0.7 * mask) + green * 0.7 * mask).astype(np.uint8)
        elif label in TEMPORAL_CLASSES:
            # a bar crossing the frame again and again; frames of the two classes look alike
            progress = (t / self.cross_s) % 1.0
            if label == "right_to_left":
                progress = 1.0 - progress
            cx = int(-r + progress * (w + 2 * r))
            cv2.circle(image, (cx, int(self.lane)), int(r), colour((0, 200, 230)), -1, lineType=cv2.LINE_AA)
        else:
            raise ValueError(f"unknown synthetic class. Received: label={label!r}; known: {ALL_CLASSES}")

    def frame(self, index: int, distractors: Sequence[str]) -> np.ndarray:
        t = index / self.spec.fps
        image = self.background.copy()
        label = self.label
        if self.spec.flicker and distractors and self.rng.random() < self.spec.flicker:
            label = distractors[int(self.rng.integers(len(distractors)))]
        self.draw(label, t, image)
        return image


def write_video(path: str, label: str, seed: int, spec: SynthSpec = SynthSpec()) -> int:
    """Render one video to `path` (MPEG-4 in .mp4, or MJPG in .avi); returns the frame count."""
    rng = np.random.default_rng(seed)
    scene = _Scene(label, rng, spec)
    distractors = [c for c in SHAPE_CLASSES if c != label]
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.lower().endswith(".avi") else "mp4v"))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    writer = cv2.VideoWriter(path, fourcc, spec.fps, (spec.width, spec.height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write video {path!r} (no MPEG-4 encoder?)")
    frames = max(1, int(round(spec.seconds * spec.fps)))
    try:
        for index in range(frames):
            writer.write(scene.frame(index, distractors))
    finally:
        writer.release()
    return frames


def write_shots_video(path: str, labels: Sequence[str], seed: int, spec: SynthSpec = SynthSpec()) -> list[int]:
    """One video of several shots joined by hard cuts (each its own scene and class); returns the cut frames."""
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.lower().endswith(".avi") else "mp4v"))
    writer = cv2.VideoWriter(path, fourcc, spec.fps, (spec.width, spec.height))
    per_shot = max(1, int(round(spec.seconds * spec.fps)))
    cuts = []
    try:
        for shot, label in enumerate(labels):
            scene = _Scene(label, np.random.default_rng(seed * 7919 + shot), spec)
            if shot:
                cuts.append(shot * per_shot)
            for index in range(per_shot):
                writer.write(scene.frame(index, []))
    finally:
        writer.release()
    return cuts


def make_dataset(
    out_dir: str,
    classes: Sequence[str] = SHAPE_CLASSES,
    videos_per_class: int = 4,
    seed: int = 0,
    spec: SynthSpec = SynthSpec(),
    manifest_name: str = "manifest.csv",
) -> str:
    """Write `videos_per_class` videos of each class and a labeled manifest; returns the manifest path.

    The manifest's `uri` values are relative to its own folder, so the set can be moved as a whole.
    """
    for label in classes:
        if label not in ALL_CLASSES:
            raise ValueError(f"make_dataset: unknown class. Received: classes={list(classes)!r}; known: {ALL_CLASSES}")
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for c, label in enumerate(classes):
        for i in range(videos_per_class):
            name = f"{label}_{i:03d}.mp4"
            video_seed = seed * 1_000_003 + c * 1009 + i
            write_video(os.path.join(out_dir, "videos", name), label, video_seed, spec)
            rows.append({"video_id": f"{label}_{i:03d}", "uri": f"videos/{name}", "label": label})
    manifest = os.path.join(out_dir, manifest_name)
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["video_id", "uri", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest
