"""Encoder features of a training set, computed once and cached, so that epochs never re-decode.

A frozen encoder makes training cheap: every image or sampled frame is
decoded and encoded once, and the head trains on the features. They are
cached on disk per video (`.npy`, read with `allow_pickle=False`), keyed by
the encoder's hash, the file, its size and time, and the sampling, so a
second run (another head, another clip length) starts in seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vidbatch.apps.train.data import image_folder, image_or_reason, progress
from vidbatch.core.config import DEFAULT_FEATURE_CACHE
from vidbatch.core.errors import ManifestError
from vidbatch.io.manifest import Manifest, VideoTask
from vidbatch.model.encoder import FrameEncoder
from vidbatch.stages.decode import DecodeSpec
from vidbatch.stages.decode_job import DecodeJob, decode_to_arrays
from vidbatch.stages.sampling import FrameSampling

DEFAULT_CACHE = DEFAULT_FEATURE_CACHE
RESIZE = "center_crop"
"""Frames and images reach an ImageNet encoder centre-cropped to its square input, as in its own training
(stretching 320x240 clips measured 4 points worse on held-out UCF101 groups); bundles record it."""
DECODE_AHEAD = 4
"""Videos decoded (on threads; OpenCV releases the GIL) while the encoder works on the current one."""


@dataclass
class FeatureSet:
    """Per source (a video or an image): its features [n, F], label and split group."""

    features: list[np.ndarray]
    y: np.ndarray
    groups: np.ndarray
    classes: list[str]
    names: list[str]
    """The source of each entry: the video's resolved location, or the image's path."""
    group_names: list[str] = field(default_factory=list)
    """The manifest's `group` value of each entry (its own name when there is none)."""
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_examples: list[str] = field(default_factory=list)
    sources: int = 0
    cached: int = 0

    def skip(self, reason: str, example: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.skipped_examples) < 20:
            self.skipped_examples.append(f"{example}: {reason}")


class FeatureCache:
    """One `.npy` per source and sampling; `None` folder turns caching off."""

    def __init__(self, folder: str | None, encoder: FrameEncoder, **sampling: Any) -> None:
        self.folder = folder
        inputs = getattr(encoder, "head_input", "pooled")  # a streaming model's pooled features, logits or both
        self._salt = json.dumps({"encoder": encoder.sha256, **sampling,
                                 **({"head_input": inputs} if inputs != "pooled" else {})}, sort_keys=True)

    def _path(self, source: str) -> str | None:
        if not self.folder:
            return None
        try:
            stat = os.stat(source)
            stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:  # a remote uri: its name must do
            stamp = ""
        key = hashlib.sha256(f"{self._salt}\0{source}\0{stamp}".encode()).hexdigest()
        return os.path.join(self.folder, key[:2], key + ".npy")

    def get(self, source: str) -> np.ndarray | None:
        path = self._path(source)
        if path and os.path.exists(path):
            try:
                return np.load(path, allow_pickle=False)
            except (OSError, ValueError):  # a torn file from a killed run: recompute it
                return None
        return None

    def put(self, source: str, features: np.ndarray) -> None:
        path = self._path(source)
        if not path:
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "wb") as handle:
            np.save(handle, features, allow_pickle=False)
        os.replace(temporary, path)


def encode_image_folder(root: str, encoder: FrameEncoder, cache_dir: str | None = DEFAULT_CACHE,
                        batch: int = 64) -> FeatureSet:
    """One sub-folder per class (the tutorial's layout); each readable image becomes one feature vector."""
    classes, files = image_folder(root)
    out = FeatureSet([], np.zeros(0, np.int64), np.zeros(0, np.int64), classes, [])
    cache = FeatureCache(cache_dir, encoder, kind="image", size=list(encoder.input_size), resize=RESIZE)
    labels: list[int] = []
    todo: list[tuple[int, str, np.ndarray]] = []

    def flush() -> None:
        encoded = encoder.encode(np.stack([image for _, _, image in todo]))
        for (slot, path, _), vector in zip(todo, encoded):
            out.features[slot] = vector[None]
            cache.put(path, vector[None])
        todo.clear()

    for label, path in files:
        out.sources += 1
        cached = cache.get(path)
        if cached is None:
            image, reason = image_or_reason(path, encoder.input_size, RESIZE)
            if image is None:
                out.skip(reason, path)
                continue
            todo.append((len(out.features), path, image))
        else:
            out.cached += 1
        out.features.append(cached)
        out.names.append(path)
        labels.append(label)
        if len(todo) >= batch:
            flush()
    if todo:
        flush()
    out.y = np.asarray(labels, np.int64)
    out.groups = np.arange(len(labels))
    out.group_names = list(out.names)
    return out


def encode_manifest(url: str, encoder: FrameEncoder, fps: float, storage_options: Mapping[str, Any] | None = None,
                    cache_dir: str | None = DEFAULT_CACHE, show_progress: bool = False) -> FeatureSet:
    """Every labeled video's sampled frames, encoded: features [frames, F] per video.

    A `group` column, when the manifest has one, is the split unit (UCF101's groups are clips cut from one long
    video: a clip-level split would leak); otherwise each video is its own group.
    """
    manifest = Manifest.from_path(url, storage_options)
    if not manifest.has_labels:
        raise ManifestError(f"Manifest {url!r} has no 'label' column; training needs one label per video")
    table = manifest.passthrough
    labels = table.column("label").to_pylist()
    classes = sorted({str(v) for v in labels if v is not None})
    if len(classes) < 2:
        raise ManifestError(f"Manifest {url!r}: training needs at least two classes; found {classes}")
    groups = table.column("group").to_pylist() if "group" in table.column_names else [None] * len(labels)
    out = FeatureSet([], np.zeros(0, np.int64), np.zeros(0, np.int64), classes, [])
    spec = DecodeSpec(width=encoder.input_size[1], height=encoder.input_size[0], sampling=FrameSampling(fps),
                      chunk_frames=64, resize=RESIZE)
    reset = getattr(encoder, "reset", None)  # a streaming encoder's features depend on when its state starts over
    cache = FeatureCache(cache_dir, encoder, kind="video", fps=fps, size=list(encoder.input_size), resize=RESIZE,
                         **({"reset_every": reset.period} if reset is not None else {}))
    ys, group_keys = [], []
    wanted = list(zip(manifest.tasks, labels, groups))
    for task, label, group, features, frames, error in progress(_decoded(wanted, spec, cache, storage_options),
                                                                len(wanted), "decoding and encoding videos",
                                                                show_progress):
        out.sources += 1
        if label is None:
            out.skip("no label", task.uri)
            continue
        if features is not None:
            out.cached += 1
        elif frames is None:
            out.skip(error.split(":", 1)[0] if error else "unreadable video", f"{task.uri} ({error})")
            continue
        else:
            features = encoder.encode(frames).astype(np.float16)  # half the memory and cache; plenty for a head
            cache.put(task.location, features)
        out.features.append(features)
        out.names.append(task.location)
        ys.append(classes.index(str(label)))
        # a split group is a (class, group) pair: UCF101's g08 of one class is another video than g08 of the next
        group_keys.append(f"{label}/{group}" if group is not None else task.location)
        out.group_names.append(str(group) if group is not None else task.location)
    out.y = np.asarray(ys, np.int64)
    out.groups = np.unique(np.asarray(group_keys, dtype=str), return_inverse=True)[1] if ys else np.zeros(0, np.int64)
    return out


def _decoded(wanted: Sequence[tuple[VideoTask, Any, Any]], spec: DecodeSpec, cache: FeatureCache,
             storage_options: Mapping[str, Any] | None) -> Iterator[tuple]:
    """(task, label, group, cached features, frames, error) in manifest order; a few videos decode ahead on
    threads (OpenCV releases the GIL) while the caller encodes."""

    def decode(task: VideoTask):
        arrays, _info, error = decode_to_arrays(
            DecodeJob(task.key, task.video_id, task.uri, task.location, spec, dict(storage_options or {})))
        return (arrays["frames"] if arrays is not None else None), error

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="vidbatch-decode") as pool:
        pending: list[tuple[VideoTask, Any, Any, Any]] = []
        queue = iter(wanted)

        def top_up() -> None:
            while sum(isinstance(p[3], Future) for p in pending) < DECODE_AHEAD:
                try:
                    task, label, group = next(queue)
                except StopIteration:
                    return
                cached = cache.get(task.location) if label is not None else None
                work = cached if cached is not None or label is None else pool.submit(decode, task)
                pending.append((task, label, group, work))

        top_up()
        while pending:
            task, label, group, work = pending.pop(0)
            top_up()
            if isinstance(work, Future):
                frames, error = work.result()
                yield task, label, group, None, frames, error
            else:
                yield task, label, group, work, None, None
