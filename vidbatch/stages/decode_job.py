"""Decode one video in whatever process runs this: fetch (remote -> temp copy), decode, clean up.

Used by the local engine's decoder processes, the Ray engine's decode actors
and training, so all report the same errors in the same words. A job yields
typed events: `Started` (what the container says), `Chunk`s of sampled
frames, then `Finished` or `Failed`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Union

import numpy as np
from fsspec.callbacks import Callback

from vidbatch.core.errors import VideoError
from vidbatch.io import storage
from vidbatch.stages.decode import DecodeSpec, VideoDecoder
from vidbatch.stages.sampling import KeyframeSampling


@dataclass(frozen=True)
class DecodeJob:
    key: str
    video_id: str
    uri: str
    location: str
    spec: DecodeSpec
    storage_options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    part: int = 0
    parts: int = 1
    """A long video decoded by several decoders: this job decodes part `part` of `parts` (`stages.seek`); its
    events carry the video's key, and the video is decoded when all its parts are `Finished`."""
    preroll: int = 0
    """A part also sends up to this many sampled items before its own (the Ray engine's ranges: the rolling
    average's pre-roll); how many it sent is its info's `preroll`."""


@dataclass(frozen=True)
class Started:
    """The video opened: what the container says (fps, frame count, size, codec)."""

    key: str
    info: dict[str, Any]


@dataclass(frozen=True)
class Chunk:
    """Sampled frames: a dict of `frames` (uint8 items), `frame_index`, `timestamp_s` and `shot_cut` arrays."""

    key: str
    arrays: dict[str, Any]

    def __len__(self) -> int:
        return len(self.arrays["frame_index"])


@dataclass(frozen=True)
class Finished:
    """Every chunk was sent; `info` adds what decoding found (frames decoded, duration)."""

    key: str
    info: dict[str, Any]


@dataclass(frozen=True)
class Failed:
    """The video cannot be labeled; `message` goes into its `error` column."""

    key: str
    message: str
    info: dict[str, Any] = field(default_factory=dict)


DecodeEvent = Union[Started, Chunk, Finished, Failed]
TERMINAL = (Finished, Failed)
"""The events that end a video's stream."""


def describe_error(exc: BaseException, uri: str) -> str:
    """A failure in words a user understands; never a credential, never a traceback. `uri`: the location tried
    (the manifest's uri resolved against its folder), so a "not found" says where it looked."""
    if isinstance(exc, VideoError):
        return str(exc)
    if storage.is_missing_credentials(exc):
        return storage.credentials_hint("video", uri)
    if isinstance(exc, FileNotFoundError):
        return f"not found: no file at {uri}"
    if isinstance(exc, IsADirectoryError):
        return f"not a file: {uri} is a folder"
    if isinstance(exc, PermissionError):
        return f"permission denied: cannot read {uri}"
    if isinstance(exc, ValueError) and "URL scheme" in str(exc):
        return f"unsupported uri: {exc}"
    if isinstance(exc, MemoryError):
        return "out of memory while decoding this video"
    return f"could not read {uri}: {type(exc).__name__}: {str(exc)[:200]}"


def make_decoder(path: str, spec: DecodeSpec, uri: str | None = None, part: int = 0, parts: int = 1,
                 preroll: int = 0) -> VideoDecoder:
    """The decoder a job needs: OpenCV for a frame rate, PyAV for key frames only, and PyAV seeking to one part of
    a long video split between decoders."""
    if parts > 1:
        from vidbatch.stages.seek import SeekingDecoder  # PyAV: the engine splits only when it is installed

        return SeekingDecoder(path, spec, uri=uri, part=part, parts=parts, preroll=preroll)
    if isinstance(spec.sampling, KeyframeSampling):
        from vidbatch.stages.keyframes import (
            KeyframeDecoder,  # PyAV is an optional extra
        )

        return KeyframeDecoder(path, spec, uri=uri)
    return VideoDecoder(path, spec, uri=uri)


def _suffix(job: DecodeJob) -> str:
    return os.path.splitext(job.location.split("?", 1)[0])[1]


PREFETCH_MAX_BYTES = 2 * 1024**3
"""Videos up to this size are copied ahead of their turn (most of an archive); larger ones when they are due."""
PREFETCH_MIN_FREE_BYTES = 4 * 1024**3
"""A copy ahead must leave this much free in the temporary folder."""


class _TooLarge(Exception):
    """A download stopped as soon as its size was known: too large to copy ahead."""


class _SizeGuard(Callback):
    """An fsspec download callback that stops the download when `fits(size)` is false (fsspec filesystems
    report the size before the first byte: S3 from the GET's Content-Length)."""

    def __init__(self, fits) -> None:
        super().__init__()
        self._fits = fits

    def set_size(self, size) -> None:
        super().set_size(size)
        if size is not None and not self._fits(int(size)):
            raise _TooLarge(size)


class Prefetcher:
    """Downloads the next queued videos from a remote store while the current one decodes.

    A decoder reading from S3 would otherwise wait for each download before it
    decodes: the round trip and the transfer overlap decoding instead. Local
    files are never copied. One download thread per decoder process.

    A copy ahead costs disk: a video larger than `max_bytes`, or one that would
    leave less than `min_free_bytes` free in the temporary folder, is not
    fetched ahead but when its turn comes (its size is read on the download
    thread, off the decoding path).
    """

    def __init__(self, max_bytes: int = PREFETCH_MAX_BYTES, min_free_bytes: int = PREFETCH_MIN_FREE_BYTES) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidbatch-prefetch")
        self._pending: dict[str, Future] = {}
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        self.skipped = 0
        """Videos not fetched ahead because of their size."""

    def ahead(self, job: DecodeJob) -> None:
        if job.key in self._pending:
            return
        try:
            fs, path = storage.url_to_fs(job.location, job.storage_options)
        except ValueError:
            return  # decode_job reports the bad uri
        if not storage.is_local(fs):
            self._pending[job.key] = self._pool.submit(self._fetch, fs, path, _suffix(job))

    def _fits(self, size: int) -> bool:
        return size <= self.max_bytes and shutil.disk_usage(tempfile.gettempdir()).free - size >= self.min_free_bytes

    def _fetch(self, fs, path: str, suffix: str) -> tuple[str, str] | None:
        folder = tempfile.mkdtemp(prefix="vidbatch-")
        local = os.path.join(folder, "input" + (suffix or os.path.splitext(path)[1]))
        try:
            # the size comes with the download's own response (no request of its own: a HEAD per video cost
            # about 5 ms on a loopback S3, measured), and a video too large to copy ahead stops it there
            fs.get_file(path, local, callback=_SizeGuard(self._fits))
        except _TooLarge:
            shutil.rmtree(folder, ignore_errors=True)
            self.skipped += 1
            return None  # fetched when its turn comes, after the current video's copy is gone
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return folder, local

    @contextlib.contextmanager
    def local_path(self, job: DecodeJob) -> Iterator[str]:
        """The video as a local file: fetched ahead if it was queued, else now; removed afterwards."""
        future = self._pending.pop(job.key, None)
        # a failed download raises here, inside decode_job's error handling; None: not fetched ahead (too large)
        fetched = future.result() if future is not None else None
        if fetched is None:
            with storage.local_copy(job.location, job.storage_options, suffix=_suffix(job)) as path:
                yield path
            return
        folder, path = fetched
        try:
            yield path
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        for future in self._pending.values():
            if future.done() and future.exception() is None and future.result() is not None:
                shutil.rmtree(future.result()[0], ignore_errors=True)
        self._pending.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)


def decode_job(job: DecodeJob, prefetcher: Prefetcher | None = None) -> Iterator[DecodeEvent]:
    """Yield `Started`, `Chunk`s, then `Finished` or `Failed`: never raises for a problem with the video."""
    info: dict[str, Any] = {}
    try:
        local = (prefetcher.local_path(job) if prefetcher is not None
                 else storage.local_copy(job.location, job.storage_options, suffix=_suffix(job)))
        with local as path:
            decoder = make_decoder(path, job.spec, uri=job.location, part=job.part, parts=job.parts,
                                   preroll=job.preroll)
            info = decoder.open().as_dict()
            yield Started(job.key, info)
            try:
                for chunk in decoder.chunks():
                    yield Chunk(job.key, chunk)
            finally:
                info = decoder.info.as_dict()
                decoder.close()
        yield Finished(job.key, info)
    except Exception as exc:  # one video's problem never stops the others
        yield Failed(job.key, describe_error(exc, job.location), info)


def decode_to_arrays(job: DecodeJob) -> tuple[dict[str, np.ndarray] | None, dict[str, Any], str | None]:
    """Decode a whole video into one dict of arrays (for small tools, not the engines)."""
    chunks, info, error = [], {}, None
    for event in decode_job(job):
        if isinstance(event, Chunk):
            chunks.append(event.arrays)
        elif isinstance(event, Failed):
            error, info = event.message, event.info
        else:
            info = event.info
    if error is not None or not chunks:
        return None, info, error
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}, info, None
