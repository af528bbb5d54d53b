"""Training data: image folders and labeled video manifests, with broken inputs skipped and counted."""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, TypeVar

import cv2
import numpy as np
from PIL import Image

from vidbatch.core.errors import ManifestError
from vidbatch.io.manifest import Manifest
from vidbatch.stages.decode import DecodeSpec, fit
from vidbatch.stages.decode_job import DecodeJob, decode_to_arrays
from vidbatch.stages.sampling import ClipSampling, FrameSampling


T = TypeVar("T")
PLAIN_EVERY_S = 30.0
"""Without a terminal (a log file, CI), progress is a plain line at most this often: no carriage returns."""


def progress(items: Iterable[T], total: int, what: str, enabled: bool = True) -> Iterator[T]:
    """`items` with progress on stderr (done/total, rate, ETA): minutes of decoding and encoding are not silent.
    A tqdm bar on a terminal; elsewhere a plain line every `PLAIN_EVERY_S` seconds and one at the end."""
    if not enabled:
        yield from items
        return
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        yield from tqdm(items, total=total, desc=what, unit="video", file=sys.stderr, dynamic_ncols=True)
        return
    import time

    started = last = time.monotonic()
    done = 0
    for done, item in enumerate(items, 1):
        yield item
        now = time.monotonic()
        if now - last >= PLAIN_EVERY_S or done == total:
            last = now
            rate = done / max(now - started, 1e-9)
            eta = (total - done) / rate if rate else float("nan")
            print(f"{what}: {done}/{total} videos, {rate:.1f}/s, {now - started:.0f} s elapsed, ETA {eta:.0f} s",
                  file=sys.stderr, flush=True)


def keras_verbose(verbose: int) -> int:
    """Keras' `fit` verbosity: its animated bar only on a terminal, one line per epoch elsewhere."""
    return verbose if not verbose or sys.stdout.isatty() else 2


@dataclass
class Samples:
    """Arrays of uint8 RGB items, integer labels and split groups (a video's frames share a group)."""

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    classes: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_examples: list[str] = field(default_factory=list)
    sources: int = 0
    group_names: dict[int, str] = field(default_factory=dict)
    """Group id -> the video (or image) it stands for, to report what was held out."""

    def skip(self, reason: str, example: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.skipped_examples) < 20:
            self.skipped_examples.append(f"{example}: {reason}")


def read_image(path: str, size: tuple[int, int], resize: str = "stretch") -> np.ndarray | None:
    """Decode any common image (JPEG, PNG, GIF, WebP...) to RGB uint8 at (height, width), stretched or centre-cropped
    the way `vidbatch label` brings video frames to a model (`decode.fit`); None if it is not an image."""
    with open(path, "rb") as handle:
        data = handle.read()
    if not data:
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is not None:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    else:
        try:  # OpenCV reads no GIF; Pillow does
            with Image.open(io.BytesIO(data)) as pil:
                image = np.asarray(pil.convert("RGB"))
        except Exception:
            return None
    return fit(image, size[0], size[1], resize)


def image_folder(root: str) -> tuple[list[str], Iterator[tuple[int, str]]]:
    """The tutorial's layout: the class names (one sub-folder each), and (label, path) of every file in them."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"no such folder: {root}")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if len(classes) < 2:
        raise ValueError(f"{root!r} needs at least two class sub-folders; found {classes}")

    def files() -> Iterator[tuple[int, str]]:
        for label, name in enumerate(classes):
            folder = os.path.join(root, name)
            for file in sorted(os.listdir(folder)):
                path = os.path.join(folder, file)
                if not file.startswith(".") and os.path.isfile(path):
                    yield label, path

    return classes, files()


def image_or_reason(path: str, size: tuple[int, int], resize: str = "stretch") -> tuple[np.ndarray | None, str]:
    """The image (see `read_image`), or None and why it was skipped."""
    if os.path.getsize(path) == 0:
        return None, "empty file"
    image = read_image(path, size, resize)
    return image, "" if image is not None else "not a readable image"


def load_image_folder(root: str, size: tuple[int, int]) -> Samples:
    """One sub-folder per class (the tutorial's layout); every readable file is an example."""
    classes, files = image_folder(root)
    xs, ys = [], []
    samples = Samples(np.zeros(0), np.zeros(0), np.zeros(0), classes)
    for label, path in files:
        samples.sources += 1
        image, reason = image_or_reason(path, size)
        if image is None:
            samples.skip(reason, path)
            continue
        xs.append(image)
        ys.append(label)
    samples.x = np.stack(xs) if xs else np.zeros((0, size[0], size[1], 3), np.uint8)
    samples.y = np.asarray(ys, dtype=np.int64)
    samples.groups = np.arange(len(ys))
    return samples


def load_video_manifest(
    manifest_url: str,
    size: tuple[int, int],
    fps: float,
    clip_len: int | None = None,
    clip_stride: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    max_items_per_video: int | None = None,
    flow: bool = False,
    show_progress: bool = False,
) -> Samples:
    """Frames (or clips) sampled from each labeled video; all of a video's items share one split group.
    With `flow`, each frame has its optical flow as 2 more channels (two-stream models)."""
    manifest = Manifest.from_path(manifest_url, storage_options)
    if not manifest.has_labels:
        raise ManifestError(f"Manifest {manifest_url!r} has no 'label' column; training needs one label per video")
    labels = manifest.passthrough.column("label").to_pylist()
    classes = sorted({str(v) for v in labels if v is not None})
    if len(classes) < 2:
        raise ManifestError(f"Manifest {manifest_url!r}: training needs at least two classes; found {classes}")
    clip = ClipSampling(clip_len, clip_stride or max(1, clip_len // 2)) if clip_len else None
    spec = DecodeSpec(width=size[1], height=size[0], sampling=FrameSampling(fps), chunk_frames=64, clip=clip, flow=flow)
    samples = Samples(np.zeros(0), np.zeros(0), np.zeros(0), classes)
    xs, ys, gs = [], [], []
    for group, (task, label) in enumerate(progress(zip(manifest.tasks, labels), len(labels), "decoding videos",
                                                   show_progress)):
        samples.sources += 1
        if label is None:
            samples.skip("no label", task.uri)
            continue
        arrays, _info, error = decode_to_arrays(
            DecodeJob(task.key, task.video_id, task.uri, task.location, spec, dict(storage_options or {}))
        )
        if arrays is None:
            samples.skip(error.split(":", 1)[0] if error else "unreadable video", f"{task.uri} ({error})")
            continue
        items = arrays["frames"]
        if max_items_per_video and len(items) > max_items_per_video:
            pick = np.linspace(0, len(items) - 1, max_items_per_video).round().astype(int)
            items = items[pick]
        xs.append(items)
        ys.append(np.full(len(items), classes.index(str(label)), np.int64))
        gs.append(np.full(len(items), group, np.int64))
        samples.group_names[group] = task.uri
    item_shape = spec.clip and (clip_len, size[0], size[1], spec.channels) or (size[0], size[1], spec.channels)
    samples.x = np.concatenate(xs) if xs else np.zeros((0, *item_shape), np.uint8)
    samples.y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
    samples.groups = np.concatenate(gs) if gs else np.zeros(0, np.int64)
    return samples


def split_by_group(y: np.ndarray, groups: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test masks where no group (video) is in both splits."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        label_groups = np.unique(groups[y == label])
        rng.shuffle(label_groups)
        n_test = int(round(len(label_groups) * test_fraction))
        if len(label_groups) >= 2:
            n_test = min(max(1, n_test), len(label_groups) - 1)
        else:
            n_test = 0
        test |= np.isin(groups, label_groups[:n_test]) & (y == label)
    return ~test, test
