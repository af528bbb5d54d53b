"""How many decoders a long video gets: its decode work (frames x pixels) cut into parts of at least
`PART_MIN_WORK`, at most one per decoder. The decoding itself is `stages.seek` (PyAV).

Why by decode work and not by the model's input bytes (what sizes the Ray engine's ranges): decoding a 720p frame
costs the same whether the model then sees 64 or 224 pixels, so a 10-minute 720p video is split on a 2-decoder
machine even for a tiny model. Only local files of at least `SPLIT_MIN_BYTES` are looked at (a header read,
about a millisecond), so an archive of short clips pays nothing.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from vidbatch.io import storage

PART_MIN_WORK = 3000
"""Least decode work of a part, in 720p frames (2 minutes of 720p at 25 fps): a part also replays up to a key-frame
interval and `seek.PREROLL_SAMPLES` sampled frames before its own, which a shorter part would not repay."""
SPLIT_MIN_BYTES = 4 * 1024 * 1024
"""Files smaller than this are never split (nor probed)."""
_FRAME_720P = 1280 * 720
ONE_PASS_NOTE = "decoded in one pass, not in"
"""How a split video's `decode_note` starts when its container could not be seeked exactly (`seek.SeekingDecoder`)."""


def unsplittable(spec, streaming: bool) -> str | None:
    """Why no video of this run is split (None: long ones are)."""
    if importlib.util.find_spec("av") is None:
        return "PyAV is not installed (pip install 'vidbatch[av]')"
    if streaming:
        return "a streaming model carries its state from frame to frame"
    from vidbatch.stages.sampling import FrameSampling

    if not isinstance(spec.sampling, FrameSampling):
        return "key-frame sampling decodes only key frames already"
    if spec.clip is not None:
        return "a clip model's clips span part edges"
    if spec.flow:
        return "optical flow"
    if spec.thumbnails:
        return "thumbnails"
    return None


def parts_for(location: str, decoders: int, storage_options: dict[str, Any] | None = None,
              min_bytes: int | None = None, min_work: float | None = None) -> int:
    """Parts for the video at `location` with `decoders` decoders: 1 unless it is a long local file.
    `min_bytes` and `min_work` default to `SPLIT_MIN_BYTES` and `PART_MIN_WORK` (the Ray engine passes the
    driver's values to its workers)."""
    if decoders < 2:
        return 1
    min_bytes = SPLIT_MIN_BYTES if min_bytes is None else min_bytes
    min_work = PART_MIN_WORK if min_work is None else min_work
    try:
        fs, path = storage.url_to_fs(location, storage_options or {})
        if not storage.is_local(fs) or os.path.getsize(path) < min_bytes:
            return 1
        work = _decode_work(path)
    except Exception:  # the decoder reports what is wrong with the file, in its own words
        return 1
    return max(1, min(decoders, int(work // min_work)))


def _decode_work(path: str) -> float:
    """Frames x pixels in 720p frames, from the container's header."""
    import av

    with av.open(path) as container:
        if not container.streams.video:
            return 0.0
        stream = container.streams.video[0]
        frames = stream.frames
        if not frames:
            seconds = float(stream.duration * stream.time_base) if stream.duration else (container.duration or 0) / 1e6
            frames = seconds * float(stream.average_rate or 25)
        return frames * stream.codec_context.width * stream.codec_context.height / _FRAME_720P


def merge_part_info(whole: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """A video's info from what its parts report: each part reports the whole video's counts (the largest is
    the one that decoded it, when it was decoded in one pass after all), and the notes of all."""
    if not whole:
        return dict(part)
    merged = dict(whole)
    for name in ("frames_decoded", "frames_sampled"):
        merged[name] = max(whole.get(name) or 0, part.get(name) or 0)
    if (part.get("frames_decoded") or 0) >= (whole.get("frames_decoded") or 0):
        merged["duration_s"] = part.get("duration_s", whole.get("duration_s"))
    notes = [n for n in dict.fromkeys([whole.get("note") or "", part.get("note") or ""]) if n]
    merged["note"] = "; ".join(notes)
    return merged
