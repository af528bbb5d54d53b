"""Real faults on real decoder processes: a crash or a hang costs one video, not the run."""

import os
import signal

import pytest

from vidbatch.engines.decode_pool import DecodePool
from vidbatch.stages.decode import DecodeSpec
from vidbatch.stages.decode_job import Chunk, DecodeJob, Failed, Finished
from vidbatch.stages.sampling import FrameSampling


def jobs_for(manifest, names, chunk=4):
    folder = os.path.join(os.path.dirname(manifest), "videos")
    spec = DecodeSpec(width=32, height=32, sampling=FrameSampling(0), chunk_frames=chunk)
    return [DecodeJob(key=n, video_id=n, uri=f"videos/{n}.mp4", location=os.path.join(folder, f"{n}.mp4"), spec=spec)
            for n in names]


@pytest.fixture(params=["pipe", "shared_memory"])
def slot_bytes(request):
    """Both transports: chunks pickled through the pipe, and frames through shared-memory slots."""
    return 0 if request.param == "pipe" else 4 * 32 * 32 * 3


def outcomes(events):
    result, chunks = {}, {}
    for event in events:
        if isinstance(event, Chunk):
            chunks[event.key] = chunks.get(event.key, 0) + len(event.arrays["frames"])
        elif isinstance(event, (Finished, Failed)):
            assert event.key not in result, f"two outcomes for {event.key}"
            result[event.key] = ("failed", event.message) if isinstance(event, Failed) else ("done", None)
    return result, chunks


def test_all_videos_decode_across_workers(synth_set, slot_bytes):
    names = ["ball_000", "ball_001", "box_000", "box_001", "waves_000", "waves_001"]
    result, chunks = outcomes(DecodePool(workers=2, slot_bytes=slot_bytes).run(jobs_for(synth_set, names)))
    assert set(result) == set(names) and all(kind == "done" for kind, _ in result.values())
    assert all(chunks[n] == 50 for n in names)


@pytest.mark.parametrize("sig,words", [(signal.SIGKILL, "decoder crashed (SIGKILL)"), (signal.SIGSEGV, "decoder crashed (SIGSEGV)")])
def test_a_crashing_decoder_fails_only_its_video(synth_set, slot_bytes, sig, words):
    pool = DecodePool(workers=1, timeout_s=30, slot_bytes=slot_bytes)
    events, killed = [], []
    for event in pool.run(jobs_for(synth_set, ["ball_000", "box_000", "waves_000"], chunk=2)):
        events.append(event)
        if event.key == "box_000" and isinstance(event, Chunk) and not killed:
            pid = pool.worker_pids()["box_000"]
            os.kill(pid, sig)
            killed.append(pid)
    result, chunks = outcomes(events)
    assert result["ball_000"][0] == "done" and result["waves_000"][0] == "done"
    assert result["box_000"][0] == "failed" and words in result["box_000"][1]
    assert chunks["waves_000"] == 50


def test_a_hanging_decoder_times_out(synth_set, slot_bytes):
    pool = DecodePool(workers=1, timeout_s=1.5, slot_bytes=slot_bytes)
    events, stopped = [], []
    for event in pool.run(jobs_for(synth_set, ["ball_000", "box_000", "waves_000"], chunk=2)):
        events.append(event)
        if event.key == "ball_000" and isinstance(event, Chunk) and not stopped:
            pid = pool.worker_pids()["ball_000"]
            os.kill(pid, signal.SIGSTOP)  # a real hang: the process stops making progress
            stopped.append(pid)
    result, _ = outcomes(events)
    assert result["ball_000"][0] == "failed" and "timeout: the decoder made no progress for 1.5 s" in result["ball_000"][1]
    assert result["box_000"][0] == "done" and result["waves_000"][0] == "done"
    with pytest.raises(ProcessLookupError):
        os.kill(stopped[0], 0)  # the hung worker was killed, not leaked


def test_a_slow_consumer_is_not_mistaken_for_a_hang(synth_set, slot_bytes):
    import time

    pool = DecodePool(workers=1, timeout_s=0.5, queue_chunks=1, slot_bytes=slot_bytes)
    result, chunks = {}, 0
    for event in pool.run(jobs_for(synth_set, ["ball_000"], chunk=2)):
        if isinstance(event, Chunk):
            chunks += 1
            if chunks < 4:
                time.sleep(0.8)  # the consumer (inference) is slow; the decoder waits, it does not hang
        elif isinstance(event, (Finished, Failed)):
            result[event.key] = "done" if isinstance(event, Finished) else "failed"
    assert result == {"ball_000": "done"}
