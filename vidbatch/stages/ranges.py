"""Long videos as time ranges: one video's stream of sampled items cut into units of bounded size.

A video of at most `range_items` items is one unit. A longer one is cut, as it
decodes, into ranges of `range_items` items each ("own" items), and each range
is sent with the `overlap` items before it (`window - 1`), so the rolling
average at its first own item sees what it sees in the whole video. The
decoder that cuts the stream saw every item, so shot cuts, and the number of
cuts before each unit (`shot_base`), are exact.

A streaming (stateful) model's state starts over at reset points that depend only on the video
(`model.streaming.ResetRule`: its start, shot cuts, a fixed period); a range then also starts at the last reset
point before it, so its pre-roll warms the state exactly as the whole video did (tested: equal tables).

Why: a 3-hour video's frames never sit in one place, and its ranges are
classified and assembled wherever there is room, like short videos. Each
range is assembled alone (`assemble.assemble_range`): its frames rows are
final, and what spans ranges (the video's mean, segments and shots across an
edge) is kept as sums in a small record that `io.ranges.merge` combines once
every range is committed. No frames move for the merge.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ARRAYS = ("frames", "frame_index", "timestamp_s", "shot_cut")
"""The per-item arrays of a unit (a decoder chunk has these, and maybe thumbnails, which ranges do not carry)."""
RANGE_BYTES = 64 * 1024 * 1024
"""Default size of a range's frames: the items of this many bytes of model input."""


def default_range_items(item_nbytes: int, overlap: int) -> int:
    """Items per range when the user sets none: `RANGE_BYTES` worth, and always more than the overlap."""
    return max(RANGE_BYTES // max(1, item_nbytes), 4 * (overlap + 1))


@dataclass
class RangeUnit:
    """Items of one video (all of it, or one range with the `overlap` items before it), in decode order."""

    arrays: dict[str, np.ndarray]
    attempt: str
    """Which decode of the video this came from: ranges of one decode are merged, never mixed with a retry's."""
    range_index: int
    last: bool
    overlap: int = 0
    """How many leading items belong to the range before (sent for the rolling average only)."""
    shot_base: int = 0
    """Shot cuts among the video's items before this unit's first item."""
    closes: bool = True
    """The unit's last item ends a reset window of a streaming model: the video ends there, or the item after it
    starts over (the splitter holds that item when it cuts; `ResetRule.window_ends`)."""

    @property
    def frame_index(self) -> np.ndarray:
        return self.arrays["frame_index"]

    @property
    def timestamp_s(self) -> np.ndarray:
        return self.arrays["timestamp_s"]

    @property
    def shot_cut(self) -> np.ndarray:
        return self.arrays["shot_cut"]

    @property
    def whole(self) -> bool:
        """The unit is the whole video (it was never cut)."""
        return self.range_index == 0 and self.last

    def __len__(self) -> int:
        return len(self.arrays["frame_index"])


@dataclass
class RangeSplitter:
    """Cuts one video's chunks into `RangeUnit`s as they arrive: `push` each chunk, then `finish`.

    At most `range_items + overlap` items (and one chunk) are held at a time; with a streaming model, up to
    `range_items + max(overlap, reset period)`.
    """

    range_items: int
    overlap: int
    reset: Any = None
    """A streaming model's `ResetRule`: each range then starts at the last reset point before it."""
    attempt: str = field(default_factory=lambda: uuid.uuid4().hex)
    _parts: list[dict[str, np.ndarray]] = field(default_factory=list)
    _held: int = 0
    _prefix: int = 0
    _next_range: int = 0
    _shot_base: int = 0
    _since: int | None = None

    def __post_init__(self) -> None:
        if self.range_items < 1:
            raise ValueError(f"RangeSplitter: range_items must be >= 1. Received: range_items={self.range_items}")
        if self.overlap < 0:
            raise ValueError(f"RangeSplitter: overlap must be >= 0. Received: overlap={self.overlap}")

    def push(self, chunk: dict[str, np.ndarray]) -> list[RangeUnit]:
        """Take a chunk's items; return the ranges that are now full (often none)."""
        part = {name: np.asarray(chunk[name]) for name in ARRAYS}
        if self.reset is not None:
            part["_reset"], self._since = self.reset.flags(part["shot_cut"], self._since)
        if len(part["frame_index"]):
            self._parts.append(part)
            self._held += len(part["frame_index"])
        full = []
        while self._held - self._prefix > self.range_items:  # a full range, and at least one item after it
            full.append(self._cut(self._prefix + self.range_items, last=False))
        return full

    def preroll(self, count: int) -> None:
        """The first `count` items to come are the pre-roll of the first range (a part of a split video,
        `stages.seek`, sends the items before its own): they are sent with it, as an overlap, and are not its own."""
        if self._held or self._next_range:
            raise ValueError("RangeSplitter.preroll: call it before the first item. "
                             f"Received: preroll={count} after {self._held} items")
        self._prefix = int(count)

    @property
    def next_range(self) -> int:
        """The index the next unit will have (a failed video's last row takes it)."""
        return self._next_range

    def finish(self) -> RangeUnit:
        """The video's last unit: the whole video if it was never cut (possibly empty)."""
        return self._cut(self._held, last=True)

    def _cut(self, size: int, last: bool) -> RangeUnit:
        names = ARRAYS + (("_reset",) if self.reset is not None else ())
        joined = ({name: np.concatenate([p[name] for p in self._parts]) for name in names} if self._parts
                  else {name: np.zeros((0,), np.int64) for name in names})
        unit_arrays = {name: values[:size] for name, values in joined.items() if name in ARRAYS}
        closes = last or self.reset is None or bool(joined["_reset"][size])  # `push` cuts with an item after
        unit = RangeUnit(unit_arrays, self.attempt, self._next_range, last, overlap=self._prefix,
                         shot_base=self._shot_base, closes=closes)
        self._next_range += 1
        keep = min(self.overlap, size)  # the next range's overlap: the last items of this unit
        if self.reset is not None and not last:  # ...from the last reset point at or before that overlap, so
            # that every item of the next unit, its overlap included, is computed from the state the video had
            points = np.flatnonzero(joined["_reset"][: size - keep + 1])
            keep = size - int(points[-1]) if len(points) else size
        rest = {name: values[size - keep:] for name, values in joined.items()}
        self._shot_base += int(np.count_nonzero(unit_arrays["shot_cut"][: size - keep]))
        self._parts = [rest]
        self._held = len(rest["frame_index"])
        self._prefix = keep
        return unit
