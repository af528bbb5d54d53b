"""Shared-memory slots through which a decoder process hands chunks of frames to its pool.

Pickling a chunk through a pipe copies every frame several times: measured
on the 2-core VM, the pool's process spent 145-178 us of CPU per 224x224
frame, and one receiver tops out near 4,400-5,300 frames/s, below what 16
decoder processes produce on a GPU node (~7,000 frames/s). Through a slot,
the decoder writes the frames once into memory both processes map, sends
only the slot number and the small per-frame columns, and the pool copies
the frames out once and hands the slot back: 44-50 us per frame in the pool,
~28,000 frames/s from one synthetic sender (benchmarks/README.md).

The memory is an anonymous file (`memfd` on Linux, an unlinked temporary file
elsewhere) whose descriptor the decoder inherits: no names in /dev/shm, no
resource tracker, and the kernel frees it when both processes have closed it,
however they end.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from typing import NamedTuple

import numpy as np

DEFAULT_SLOTS = 4
"""Chunks a decoder may have in flight: enough to keep writing while the pool copies."""


class SlotRef(NamedTuple):
    """Stands in for a chunk's `frames` array in the message: where the pixels are."""

    slot: int
    shape: tuple
    dtype: str


class FrameRing:
    """`slots` slots of `slot_bytes` each over one shared mapping."""

    def __init__(self, memory: mmap.mmap, slots: int, slot_bytes: int) -> None:
        self._memory = memory
        self.slots = slots
        self.slot_bytes = slot_bytes
        self._view = np.frombuffer(memory, dtype=np.uint8)

    @classmethod
    def create(cls, slots: int, slot_bytes: int) -> tuple["FrameRing", int]:
        """A new ring and the descriptor to pass to the decoder process (the caller closes it once passed)."""
        size = max(1, slots * slot_bytes)
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("vidbatch-frames", getattr(os, "MFD_CLOEXEC", 0))
        else:  # not Linux: an unlinked temporary file serves the same purpose
            handle = tempfile.TemporaryFile(prefix="vidbatch-frames-")
            fd = os.dup(handle.fileno())
            handle.close()
        os.ftruncate(fd, size)
        return cls(mmap.mmap(fd, size), slots, slot_bytes), fd

    @classmethod
    def attach(cls, fd: int, slots: int, slot_bytes: int) -> "FrameRing":
        """The decoder's side: map the inherited descriptor."""
        memory = mmap.mmap(fd, max(1, slots * slot_bytes))
        os.close(fd)
        return cls(memory, slots, slot_bytes)

    def fits(self, array: np.ndarray) -> bool:
        return array.nbytes <= self.slot_bytes

    def write(self, slot: int, array: np.ndarray) -> SlotRef:
        start = slot * self.slot_bytes
        self._view[start : start + array.nbytes].view(array.dtype).reshape(array.shape)[...] = array
        return SlotRef(slot, tuple(array.shape), array.dtype.str)

    def read(self, ref: SlotRef) -> np.ndarray:
        """A private copy of the slot's array (the slot can be reused as soon as this returns)."""
        dtype = np.dtype(ref.dtype)
        count = int(np.prod(ref.shape, dtype=np.int64))
        start = ref.slot * self.slot_bytes
        return self._view[start : start + count * dtype.itemsize].view(dtype).reshape(ref.shape).copy()

    def close(self) -> None:
        self._view = None  # drop the export before closing the mapping
        try:
            self._memory.close()
        except BufferError:  # a view is still alive somewhere; the mapping goes with it
            pass
