"""Look at a file before decoding it: does it exist, is it a video at all, and if OpenCV cannot open it, why.

A PNG renamed `.mp4` would otherwise "decode" as one frame, and an MP4 cut
short fails with FFmpeg's terse messages; these checks put the cause in the
video's `error` column in words.
"""

from __future__ import annotations

import os
import struct

from vidbatch.core.errors import VideoError


def check_file(path: str, uri: str) -> None:
    """Fail early, in words, for a path that cannot be a video."""
    if not os.path.exists(path):
        raise VideoError(f"not found: no file at {uri}")
    if os.path.isdir(path):
        raise VideoError(f"not a file: {uri} is a folder")
    if os.path.getsize(path) == 0:
        raise VideoError(f"empty file: {uri} has 0 bytes")
    if not os.access(path, os.R_OK):
        raise VideoError(f"permission denied: cannot read {uri}")


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
)


def sniff_non_video(path: str) -> str | None:
    """An image or document named like a video: FFmpeg would happily 'decode' a PNG as one frame."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return f"not a video: the file is {what}"
    return None


def describe_unopenable(path: str) -> str:
    """Say what a file OpenCV cannot open most likely is, from its first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if head[4:8] == b"ftyp":
        missing = _mp4_problem(path)
        if missing:
            return f"truncated or incomplete MP4: {missing}; could not open with OpenCV/FFmpeg"
    try:
        text = head.decode("utf-8")
        if text and all(c.isprintable() or c in "\r\n\t" for c in text):
            return "not a video: the file is text"
    except UnicodeDecodeError:
        pass
    return "not a video: could not open with OpenCV/FFmpeg (unknown format or corrupt data)"


def _mp4_problem(path: str) -> str | None:
    """Walk the top-level MP4 boxes; name what is missing or cut off."""
    size = os.path.getsize(path)
    seen = set()
    with open(path, "rb") as handle:
        offset = 0
        while offset + 8 <= size:
            handle.seek(offset)
            header = handle.read(16)
            length, kind = struct.unpack(">I4s", header[:8])
            if length == 1 and len(header) == 16:
                length = struct.unpack(">Q", header[8:16])[0]
            elif length == 0:
                length = size - offset
            if length < 8:
                return f"box {kind!r} at byte {offset} has an invalid size"
            if offset + length > size:
                return f"the {kind.decode('latin-1')!r} box is cut off at byte {size} of {offset + length}"
            seen.add(kind)
            offset += length
    if b"moov" not in seen:
        return "no 'moov' index box (the file was cut short or is still being written)"
    return None
