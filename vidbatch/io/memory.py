"""The Arrow memory pool of vidbatch's driver processes (the `vidbatch` command, the Ray job entry points).

Why: pyarrow's default pool (mimalloc) keeps the pages of freed buffers. The driver's passes over a whole
archive parse one chunk after another (a manifest block, 64 commit records) and hold one at a time, yet with
mimalloc they grew with the archive: measured at the end of a run over 400,000 videos, its RSS crept by about
1 MB per chunk of 16,384 commit entries (some 60 bytes a video); with the system allocator it did not.
`pa.set_memory_pool` cannot fix that later: Arrow's readers and writers allocate from the C++ default pool,
which Arrow picks once, from `ARROW_DEFAULT_MEMORY_POOL`, when it loads.

And glibc's malloc raises its mmap threshold to the size of each large block freed (up to 32 MB), so that
the next blocks of that size come from its heap, where freed ones are seldom returned: at the end of a run,
which writes the tables a 65,536-video slice at a time, the process then grew by some 40 bytes a video more.
`release_large_blocks` fixes the threshold for the rest of the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


def prefer_system_pool() -> None:
    """Make the system allocator Arrow's default pool in this process, unless the user chose one. Call it
    before pyarrow is imported: later it changes nothing."""
    os.environ.setdefault(POOL_VARIABLE, "system")


M_MMAP_THRESHOLD = -3  # glibc's malloc.h
LARGE_BLOCK = 128 * 1024


def release_large_blocks() -> None:
    """Where the C library is glibc: every block of 128 KiB or more is mapped on its own and returned to the
    system when freed, for the rest of this process (`mallopt(M_MMAP_THRESHOLD)`, which also stops the
    threshold from rising). For the driver's end of a run: elsewhere a mapping per large array costs time."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version"):
            libc.mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK)
    except OSError:
        pass
