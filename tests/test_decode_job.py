"""One video decoded in whatever process runs it: typed events, errors in words, remote videos fetched ahead."""

import os

import fsspec

from vidbatch.stages.decode import DecodeSpec
from vidbatch.stages.decode_job import Chunk, DecodeJob, Failed, Finished, Prefetcher, Started, decode_job
from vidbatch.stages.sampling import FrameSampling

SPEC = DecodeSpec(width=32, height=32, sampling=FrameSampling(5.0), chunk_frames=4)


def job(key, location):
    return DecodeJob(key=key, video_id=key, uri=location, location=location, spec=SPEC)


def test_events_in_order_and_errors_in_words(synth_set, tmp_path):
    video = os.path.join(os.path.dirname(synth_set), "videos", "ball_000.mp4")
    events = list(decode_job(job("a", video)))
    assert isinstance(events[0], Started) and isinstance(events[-1], Finished)
    assert sum(len(e) for e in events if isinstance(e, Chunk)) == 10 and events[-1].info["frames_decoded"] == 50
    (missing,) = list(decode_job(job("b", str(tmp_path / "gone.mp4"))))
    assert isinstance(missing, Failed) and missing.message.startswith("not found: no file at")


def test_remote_videos_are_fetched_ahead_and_cleaned_up(synth_set):
    folder = os.path.join(os.path.dirname(synth_set), "videos")
    memory = fsspec.filesystem("memory")
    for name in ("ball_000.mp4", "box_000.mp4"):
        memory.pipe_file(f"/prefetch/{name}", open(os.path.join(folder, name), "rb").read())
    jobs = [job("ball", "memory://prefetch/ball_000.mp4"), job("box", "memory://prefetch/box_000.mp4"),
            job("gone", "memory://prefetch/gone.mp4")]
    prefetcher = Prefetcher()
    for queued in jobs:
        prefetcher.ahead(queued)  # downloads start before any decoding
    fetched = [prefetcher._pending[j.key].result()[0] for j in jobs[:2]]
    assert all(os.path.isdir(f) for f in fetched)
    outcomes = [list(decode_job(j, prefetcher))[-1] for j in jobs]
    assert [type(o).__name__ for o in outcomes] == ["Finished", "Finished", "Failed"]
    assert outcomes[2].message.startswith("not found")
    assert not any(os.path.exists(f) for f in fetched)  # each fetched copy is removed once decoded
    prefetcher.close()


def test_videos_too_large_to_copy_ahead_are_fetched_when_due(synth_set):
    folder = os.path.join(os.path.dirname(synth_set), "videos")
    memory = fsspec.filesystem("memory")
    sizes = {}
    for name in ("ball_000.mp4", "box_000.mp4"):
        data = open(os.path.join(folder, name), "rb").read()
        memory.pipe_file(f"/capped/{name}", data)
        sizes[name] = len(data)
    jobs = [job("ball", "memory://capped/ball_000.mp4"), job("box", "memory://capped/box_000.mp4")]
    prefetcher = Prefetcher(max_bytes=min(sizes.values()) - 1)  # both too large to copy ahead
    for queued in jobs:
        prefetcher.ahead(queued)
    assert [prefetcher._pending[j.key].result() for j in jobs] == [None, None] and prefetcher.skipped == 2
    outcomes = [list(decode_job(j, prefetcher))[-1] for j in jobs]
    assert [type(o).__name__ for o in outcomes] == ["Finished", "Finished"]  # fetched on their turn instead
    # and a copy ahead must leave room: with more free space demanded than any disk has, nothing is copied ahead
    roomy = Prefetcher(min_free_bytes=2**62)
    roomy.ahead(jobs[0])
    assert roomy._pending["ball"].result() is None and list(decode_job(jobs[0], roomy))[-1].info["frames_decoded"] == 50
    prefetcher.close()
    roomy.close()
