"""Decode one video in whatever process runs this: fetch (remote -> temp copy), decode, clean up.

Used by the local engine's worker processes and by the Ray engine's decode
tasks, so both report the same errors in the same words.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np

from vidbatch import storage
from vidbatch.errors import VideoError
from vidbatch.stages.decode import DecodeSpec, VideoDecoder


@dataclass(frozen=True)
class DecodeJob:
    key: str
    video_id: str
    uri: str
    location: str
    spec: DecodeSpec
    storage_options: Mapping[str, Any] = field(default_factory=dict, hash=False)


def describe_error(exc: BaseException, uri: str) -> str:
    """A failure in words a user understands; never a credential, never a traceback."""
    if isinstance(exc, VideoError):
        return str(exc)
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


def decode_job(job: DecodeJob) -> Iterator[tuple[str, Any]]:
    """Yield ("info", dict), ("chunk", dict of arrays)..., then ("done", info) or ("failed", message, info)."""
    info: dict[str, Any] = {}
    try:
        suffix = os.path.splitext(job.location.split("?", 1)[0])[1]
        with storage.local_copy(job.location, job.storage_options, suffix=suffix) as path:
            decoder = VideoDecoder(path, job.spec, uri=job.uri)
            info = decoder.open().as_dict()
            yield ("info", info)
            try:
                for chunk in decoder.chunks():
                    yield ("chunk", chunk)
            finally:
                info = decoder.info.as_dict()
                decoder.close()
        yield ("done", info)
    except Exception as exc:  # one video's problem never stops the others
        yield ("failed", describe_error(exc, job.uri), info)


def decode_to_arrays(job: DecodeJob) -> tuple[dict[str, np.ndarray] | None, dict[str, Any], str | None]:
    """Decode a whole video into one dict of arrays (for small tools, not the engines)."""
    chunks, info, error = [], {}, None
    for event in decode_job(job):
        if event[0] == "chunk":
            chunks.append(event[1])
        elif event[0] == "failed":
            error, info = event[1], event[2]
        else:
            info = event[1]
    if error is not None or not chunks:
        return None, info, error
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}, info, None
