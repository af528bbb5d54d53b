"""A long video's ranges decoded by several decoders at once (the Ray engine), settled into the ranges that one
decoder would have made.

Each part of a split video (`stages.seek`) is decoded by its own decoder, which cuts it into ranges
(`stages.ranges`) as one decoder cuts a whole video, with the rolling window's pre-roll before its first range. That
decoder knows neither how many ranges the parts before it make nor how many shot cuts lie before its part. The
committer gathers a video's ranges from all its parts (`PartSets`), and once every part's last range is there, it
settles them (`settle`): range indices in order of (part, range), shot numbers shifted by the cuts among the own
items of the ranges before, and the video's container fields from all its parts. They are then exactly the ranges
of a video cut by one decoder: their frames rows are final when they are written, and `io.ranges.merge` combines
their records at the end of the run.

Why at the committer and not at the merge: frames rows carry shot indices and are written once (no frames move for
the merge); the committer holds only assembled tables (labels and scores), a few MB for a two-hour video.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from vidbatch.io import ranges
from vidbatch.io.output import VideoOutcome
from vidbatch.stages.assemble import assemble_failed

INFO_FIELDS = ("frames_decoded", "duration_s", "fps", "width", "height", "decode_note")
"""A range record's container fields (`stages.assemble`), on the last range of a video only."""


def empty_part(video_id: str, key: str, attempt: str, range_index: int, info_fields: dict[str, Any],
               merge: dict[str, Any], model: str, elapsed_s: float) -> VideoOutcome:
    """The last (and only) range of a part with no sampled frame of its own: nothing to label, but it says the
    part is done, and what its decoder found."""
    record = {"video_id": video_id, "status": ranges.PARTIAL, "error": None, "attempt": attempt,
              "range": range_index, "ranges": range_index + 1, "items": 0, "cuts": 0, "first_cut": False,
              "first_index": None, "last_index": None, "last_s": None, "prob_sum": None, "range_segments": [],
              "range_shots": [], "embedding_sum": None, "model_prob_sum": None, "model": model, "elapsed_s": float(elapsed_s),
              **info_fields, "merge": merge}
    return VideoOutcome(video_id=video_id, key=key, record=record)


class PartSets:
    """The ranges of split videos until each video has all of them: `add` each (with its part, the video's part
    count and whether it is its part's last), and get the video's settled ranges when it completes."""

    def __init__(self) -> None:
        self._sets: dict[tuple[str, str], dict[str, Any]] = {}
        self._settled: set[tuple[str, str]] = set()
        """Videos settled already: a range a retried part sends again after that is dropped (it was committed)."""

    def add(self, outcome: VideoOutcome, part: int, parts: int, last: bool) -> list[VideoOutcome]:
        """Take one range; returns the video's settled ranges when this one completes it (else [])."""
        record = outcome.record
        video = (outcome.key, str(record["attempt"]))
        if video in self._settled:
            return []
        entry = self._sets.setdefault(video, {"units": {}, "ends": {}})
        index = int(record["range"])
        entry["units"][(part, index)] = outcome  # a retried part sends the same ranges again: the latest is kept
        if last:
            entry["ends"][part] = index + 1
        ends = entry["ends"]
        if len(ends) < parts or any((p, i) not in entry["units"] for p in range(parts) for i in range(ends[p])):
            return []
        del self._sets[video]
        self._settled.add(video)
        return settle([entry["units"][(p, i)] for p in range(parts) for i in range(ends[p])])

    def waiting(self) -> int:
        """Videos with some ranges here, not all."""
        return len(self._sets)


def settle(units: list[VideoOutcome]) -> list[VideoOutcome]:
    """A split video's ranges, in order of (part, range), as one decoder would have cut the video: see the module.
    Parts with no items of their own are dropped; a video with no items at all is failed (no frames)."""
    lasts = [u.record for u in units if "merge" in u.record]
    info = _merged_info(lasts)
    kept = [u for u in units if u.record["items"]]
    if not kept:
        first = units[0]
        elapsed = max(float(u.record.get("elapsed_s") or 0.0) for u in units)
        return [assemble_failed(first.video_id, first.key, ranges.NO_FRAMES, _as_info(info),
                                first.record.get("model"), elapsed)]
    settled, cuts_before = [], 0
    for index, outcome in enumerate(kept):
        record = {name: value for name, value in outcome.record.items() if name not in INFO_FIELDS + ("merge",)}
        frames = outcome.frames
        shots = record["range_shots"]
        delta = cuts_before - (int(shots[0]["shot"]) - int(bool(record["first_cut"])))  # true base - assumed base
        if delta:
            record["range_shots"] = [{**shot, "shot": int(shot["shot"]) + delta} for shot in shots]
            if frames is not None:
                column = frames.schema.get_field_index("shot_index")
                shifted = pa.array(np.asarray(frames.column(column)) + delta, frames.schema.field(column).type)
                frames = frames.set_column(column, frames.schema.field(column), shifted)
        cuts_before += int(record["cuts"])
        record["range"] = index
        record["ranges"] = None
        if index == len(kept) - 1:
            record.update(ranges=len(kept), merge=lasts[0]["merge"], **info)
        settled.append(VideoOutcome(video_id=outcome.video_id, key=outcome.key, record=record, frames=frames,
                                    segments=outcome.segments, shots=outcome.shots, embedding=outcome.embedding))
    return settled


def _merged_info(lasts: list[dict[str, Any]]) -> dict[str, Any]:
    """The video's container fields from its parts' last ranges, as `stages.split.merge_part_info` merges them:
    each part reports the whole video's counts (the largest is the part that decoded it, when it was decoded in one
    pass after all), and the notes of all."""
    best = max(lasts, key=lambda r: r.get("frames_decoded") or 0)
    notes = [n for n in dict.fromkeys(r.get("decode_note") or "" for r in lasts) if n]
    return {**{name: best.get(name) for name in INFO_FIELDS}, "decode_note": "; ".join(notes) or None}


def _as_info(fields: dict[str, Any]) -> dict[str, Any]:
    """Record fields back as a decoder's info (for a failed video's record)."""
    info = {name: value for name, value in fields.items() if name != "decode_note" and value is not None}
    return {**info, "note": fields.get("decode_note") or ""}
