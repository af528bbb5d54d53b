"""Frames through shared memory arrive exactly as through the pipe, and nothing is left behind."""

import os

import numpy as np
import pytest

from vidbatch.engines.decode_pool import DecodePool
from vidbatch.engines.frame_ring import FrameRing
from vidbatch.stages.decode import DecodeSpec
from vidbatch.stages.decode_job import Chunk, DecodeJob, Failed
from vidbatch.stages.sampling import ClipSampling, FrameSampling


def test_slots_hold_their_own_arrays_and_reads_are_private_copies():
    ring, fd = FrameRing.create(slots=2, slot_bytes=4 * 8 * 8 * 3)
    os.close(fd)
    first = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    second = np.arange(3 * 8 * 8 * 3, dtype=np.uint8).reshape(3, 8, 8, 3)
    ref_first, ref_second = ring.write(0, first), ring.write(1, second)
    copy = ring.read(ref_first)
    ring.write(0, np.zeros_like(first))  # the slot is reused: the copy must not change
    np.testing.assert_array_equal(copy, first)
    np.testing.assert_array_equal(ring.read(ref_second), second)
    assert ring.fits(first) and not ring.fits(np.zeros((5, 8, 8, 3), np.uint8))
    ring.close()


def _decode(synth_set, spec, slot_bytes, names=("ball_000", "box_001", "waves_000")):
    folder = os.path.join(os.path.dirname(synth_set), "videos")
    jobs = [DecodeJob(key=n, video_id=n, uri=n, location=os.path.join(folder, f"{n}.mp4"), spec=spec) for n in names]
    chunks = {}
    for event in DecodePool(workers=2, slot_bytes=slot_bytes).run(jobs):
        if isinstance(event, Chunk):
            chunks.setdefault(event.key, []).append(event.arrays)
        else:
            assert not isinstance(event, Failed), event
    return {key: {name: np.concatenate([c[name] for c in parts]) for name in parts[0]} for key, parts in chunks.items()}


@pytest.mark.parametrize("clip", [None, ClipSampling(clip_len=4, stride=2)], ids=["frames", "clips"])
def test_shared_memory_and_pipe_deliver_identical_chunks(synth_set, clip):
    spec = DecodeSpec(width=48, height=32, sampling=FrameSampling(0), chunk_frames=8, clip=clip)
    through_pipe = _decode(synth_set, spec, slot_bytes=0)
    through_slots = _decode(synth_set, spec, slot_bytes=spec.chunk_nbytes)
    too_small = _decode(synth_set, spec, slot_bytes=spec.chunk_nbytes // 2)  # falls back to the pipe per chunk
    assert set(through_pipe) == set(through_slots) == set(too_small) == {"ball_000", "box_001", "waves_000"}
    for key, expected in through_pipe.items():
        assert expected["frames"].shape[1:] == ((4,) if clip else ()) + (32, 48, 3)
        for name, column in expected.items():
            np.testing.assert_array_equal(through_slots[key][name], column)
            np.testing.assert_array_equal(too_small[key][name], column)


def test_a_pool_leaves_no_descriptors_or_processes_behind(synth_set):
    spec = DecodeSpec(width=32, height=32, sampling=FrameSampling(0), chunk_frames=4)
    before = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for _ in range(3):
        assert _decode(synth_set, spec, slot_bytes=spec.chunk_nbytes)
    if before is None:
        pytest.skip("no /proc on this platform to count descriptors")
    leaked = set(os.listdir("/proc/self/fd")) - before
    links = {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in leaked if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not [target for target in links.values() if "vidbatch-frames" in target or "pipe:" in target], links
