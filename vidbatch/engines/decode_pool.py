"""A pool of decoder processes that stream chunks back, with per-video isolation.

Each worker is its own process with its own pipe, so a decoder that crashes
(a segfault in FFmpeg, say) or hangs costs only the video it was on: the
worker is replaced and the video gets a failed row. A receiver thread reads
the pipes into a bounded queue, so decoding overlaps inference in the main
thread and memory stays bounded (backpressure reaches the workers through
their pipes).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterable, Iterator, Sized

from vidbatch.engines.frame_ring import DEFAULT_SLOTS, FrameRing, SlotRef
from vidbatch.stages.decode_job import (
    TERMINAL,
    Chunk,
    DecodeEvent,
    DecodeJob,
    Failed,
    Prefetcher,
    decode_job,
)

_STOP = None


PREFETCH_JOBS = 3
"""Jobs sent to each decoder at once: it starts the next video without waiting for a round trip, and downloads
a remote one while decoding the current."""


def _worker_main(conn: Connection, ring: FrameRing | None = None) -> None:
    """A decoder process: decode queued jobs one after the other, sending their events in few messages.

    Events travel as lists: a video's `Started` goes with its first chunk and its
    `Finished`/`Failed` with its last, so a short video costs one message, not three.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    free = deque(range(ring.slots)) if ring is not None else deque()
    jobs: deque = deque()
    prefetcher = Prefetcher()  # remote videos: the next ones download while this one decodes

    def absorb(message) -> bool:
        """A slot handed back, a job queued (its download starts), or stop (False)."""
        if message is _STOP:
            return False
        if isinstance(message, int):
            free.append(message)
        else:
            jobs.append(message)
            prefetcher.ahead(message)
        return True

    try:
        _decode_jobs(conn, ring, free, jobs, absorb, prefetcher)
    finally:
        prefetcher.close()


def _decode_jobs(conn: Connection, ring: FrameRing | None, free: deque, jobs: deque, absorb, prefetcher) -> None:
    """The decoder's loop: the next job, its events in few messages, shared-memory slots as backpressure."""
    while True:
        try:
            while not jobs:
                if not absorb(conn.recv()):
                    return
        except (EOFError, OSError):
            return
        job = jobs.popleft()
        held: list = []
        for event in decode_job(job, prefetcher):
            if isinstance(event, Chunk):
                if held and isinstance(held[-1], Chunk):
                    conn.send(held)  # the previous chunk was not the last: send it (and free its slot sooner)
                    held = []
                if ring is not None and ring.fits(event.arrays["frames"]):
                    # collect what arrived (slots handed back, queued jobs); with no slot free, wait: backpressure
                    while conn.poll() or not free:
                        if not absorb(conn.recv()):
                            return
                    arrays = dict(event.arrays)
                    arrays["frames"] = ring.write(free.popleft(), arrays["frames"])
                    event = Chunk(event.key, arrays)
            held.append(event)
            if isinstance(event, TERMINAL):
                conn.send(held)
                held = []


def worker_entry(fd: int, ring_fd: int = -1, slots: int = 0, slot_bytes: int = 0) -> None:
    """Entry point of a decoder process (started by `_Worker`)."""
    ring = FrameRing.attach(ring_fd, slots, slot_bytes) if ring_fd >= 0 else None
    _worker_main(Connection(fd), ring)


def _package_root() -> str:
    """The folder holding the `vidbatch` package (this file is vidbatch/engines/decode_pool.py)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Worker:
    """A decoder process with its own pipe.

    Started with subprocess rather than multiprocessing's spawn, which would
    re-run the caller's main script in the child (a script or notebook calling
    `vidbatch.label` at top level, without a `__main__` guard, would recurse).
    """

    def __init__(self, slot_bytes: int = 0) -> None:
        self.conn, child = mp.Pipe(duplex=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([_package_root(), *filter(None, [env.get("PYTHONPATH")])])
        arguments, fds = [str(child.fileno())], [child.fileno()]
        self.ring: FrameRing | None = None
        ring_fd = -1
        if slot_bytes > 0:
            self.ring, ring_fd = FrameRing.create(DEFAULT_SLOTS, slot_bytes)
            arguments += [str(ring_fd), str(DEFAULT_SLOTS), str(slot_bytes)]
            fds.append(ring_fd)
        code = ("import sys; from vidbatch.engines.decode_pool import worker_entry; "
                "worker_entry(*map(int, sys.argv[1:]))")
        try:
            self.process = _Process(subprocess.Popen(
                [sys.executable, "-c", code, *arguments], pass_fds=fds, env=env,
                stdin=subprocess.DEVNULL, start_new_session=False,
            ))
        finally:
            child.close()
            if ring_fd >= 0:
                os.close(ring_fd)
        self.jobs: deque[DecodeJob] = deque()
        """Jobs sent to this decoder, the one it is decoding first."""
        self.stalled_s = 0.0

    @property
    def job(self) -> DecodeJob | None:
        return self.jobs[0] if self.jobs else None

    def take_frames(self, event: DecodeEvent) -> DecodeEvent:
        """A chunk whose frames wait in a slot: copy them out and hand the slot back."""
        if not isinstance(event, Chunk) or not isinstance(event.arrays["frames"], SlotRef):
            return event
        arrays = dict(event.arrays)
        ref = arrays["frames"]
        arrays["frames"] = self.ring.read(ref)
        self.conn.send(ref.slot)
        return Chunk(event.key, arrays)

    def assign(self, job: DecodeJob) -> None:
        if not self.jobs:
            self.stalled_s = 0.0
        self.jobs.append(job)
        self.conn.send(job)

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self._release()

    def _release(self) -> None:
        self.conn.close()
        if self.ring is not None:
            self.ring.close()

    def stop(self) -> None:
        try:
            self.conn.send(_STOP)
        except (OSError, ValueError):
            pass
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self._release()


class _Process:
    """The few `multiprocessing.Process` verbs the pool uses, over a `subprocess.Popen`."""

    def __init__(self, popen: subprocess.Popen) -> None:
        self.popen = popen
        self.pid = popen.pid

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def exitcode(self) -> int | None:
        return self.popen.poll()

    def kill(self) -> None:
        self.popen.kill()

    def join(self, timeout: float | None = None) -> None:
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass


def _death_message(process: "_Process") -> str:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"decoder crashed ({name}) while reading this video"
    return f"decoder process exited unexpectedly (exit code {code}) while reading this video"


class DecodePool:
    """Run decode jobs on `workers` processes; iterate over their events in arrival order.

    Events are those of `decode_job` (`Started`, `Chunk`, `Finished`, `Failed`); a
    chunk's frames arrive through shared memory when `slot_bytes` is large enough
    for them. A video whose decoder makes no progress for `timeout_s` seconds, or
    whose decoder dies, yields `Failed` and its worker is replaced.
    """

    def __init__(
        self,
        workers: int,
        timeout_s: float | None = None,
        queue_chunks: int | None = None,
        on_worker_event: Callable[[str, int], None] | None = None,
        persistent: bool = False,
        slot_bytes: int = 0,
    ) -> None:
        self.workers = workers
        self.slot_bytes = slot_bytes
        """Size of each worker's shared-memory slots (`frame_ring`); chunks larger than this, or all with 0, go
        through the pipe."""
        self.timeout_s = timeout_s
        self._queue: queue.Queue = queue.Queue(maxsize=queue_chunks or max(4, 3 * workers))
        self._pool: list[_Worker] = []
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._on_worker_event = on_worker_event
        self._persistent = persistent
        """Keep the worker processes between `run` calls (a Ray decode actor decodes one video per call)."""

    def worker_pids(self) -> dict[str, int]:
        """Output key -> pid of the worker decoding it now (for tests that inject faults)."""
        return {w.job.key: w.process.pid for w in list(self._pool) if w.job is not None}

    def start(self, videos: int | None = None) -> None:
        """Start the decoder processes now, so that their start-up (~0.4 s: an interpreter, OpenCV, fsspec)
        overlaps whatever the caller does next, such as building the model."""
        wanted = self.workers if videos is None else min(self.workers, max(1, videos))
        self._pool = [w for w in self._pool if w.process.is_alive()]
        self._pool += [_Worker(self.slot_bytes) for _ in range(wanted - len(self._pool))]

    def run(self, jobs: Iterable[DecodeJob], idle_s: float | None = None,
            videos: int | None = None) -> Iterator[DecodeEvent | None]:
        """Yield events; with `idle_s`, also yield None whenever nothing arrived for that long. `jobs` is read as
        decoders need work (an archive's jobs are never all held at once); `videos`: how many it holds, when it
        cannot say itself (no more decoders start than there are videos)."""
        pending = _Pending(jobs)
        self._closing.clear()
        self.start(len(jobs) if isinstance(jobs, Sized) else videos)
        self._thread = threading.Thread(target=self._receive, args=(pending,), daemon=True, name="vidbatch-receiver")
        self._thread.start()
        try:
            while True:
                try:
                    event = self._queue.get(timeout=idle_s)
                except queue.Empty:
                    yield None
                    continue
                if event is _STOP:
                    return
                if isinstance(event, BaseException):
                    raise event
                yield from event  # the events of one message
        finally:
            if self._persistent:
                self._stop_receiver()
            else:
                self.close()

    def _put(self, event: Any) -> bool:
        while not self._closing.is_set():
            try:
                self._queue.put(event, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        fresh = _Worker(self.slot_bytes)
        self._pool[self._pool.index(worker)] = fresh
        return fresh

    def _fill(self, worker: _Worker, pending: "_Pending") -> None:
        while pending and len(worker.jobs) < PREFETCH_JOBS:
            if pending.peek().parts > 1 and any(job.key == pending.peek().key for job in worker.jobs):
                return  # a long video's parts go to different decoders: this one waits for another
            worker.assign(pending.popleft())

    def _fail_current(self, worker: _Worker, pending: "_Pending", message: str) -> _Worker | None:
        """The worker's video failed with it: replace the worker, put its queued jobs back in line."""
        failed, queued = worker.jobs[0], list(worker.jobs)[1:]
        fresh = self._replace(worker)
        pending.extendleft(reversed(queued))
        if not self._put([Failed(failed.key, message)]):
            return None
        self._fill(fresh, pending)
        return fresh

    def _receive(self, pending: "_Pending") -> None:
        try:
            for worker in self._pool:
                self._fill(worker, pending)
            while not self._closing.is_set():
                busy = [w for w in self._pool if w.jobs]
                if not busy:
                    break
                started = time.monotonic()
                ready = wait([w.conn for w in busy], timeout=0.5)
                waited = time.monotonic() - started
                for worker in busy:
                    if worker.conn in ready:
                        try:
                            while worker.jobs and worker.conn.poll():
                                events = [worker.take_frames(event) for event in worker.conn.recv()]
                                worker.stalled_s = 0.0
                                if not self._put(events):
                                    return
                                for event in events:
                                    if isinstance(event, TERMINAL) and worker.jobs and event.key == worker.jobs[0].key:
                                        worker.jobs.popleft()
                                self._fill(worker, pending)
                        except (EOFError, OSError):
                            worker.process.join(timeout=5)  # the pipe closed: the process is dying or dead
                    if not worker.jobs:
                        self._fill(worker, pending)
                        continue
                    if not worker.process.is_alive():
                        worker.process.join(timeout=1)
                        self._notify("crash", worker.process.pid)
                        if self._fail_current(worker, pending, _death_message(worker.process)) is None:
                            return
                        continue
                    if worker.conn not in ready:
                        worker.stalled_s += waited
                    if self.timeout_s is not None and worker.stalled_s > self.timeout_s:
                        self._notify("timeout", worker.process.pid)
                        message = f"timeout: the decoder made no progress for {self.timeout_s:g} s (--video-timeout)"
                        if self._fail_current(worker, pending, message) is None:
                            return
            self._put(_STOP)
        except BaseException as exc:  # surface pool errors in the consumer, never hang it
            self._put(exc)

    def _notify(self, what: str, pid: int) -> None:
        if self._on_worker_event is not None:
            self._on_worker_event(what, pid)

    def _stop_receiver(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        # a worker still holding a job (the consumer stopped early) is in an unknown state: replace it
        for worker in [w for w in self._pool if w.jobs]:
            worker.kill()
            self._pool.remove(worker)
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

    def close(self) -> None:
        self._stop_receiver()
        for worker in self._pool:
            worker.stop()
        self._pool = []


class _Pending:
    """Jobs not yet sent to a decoder: drawn from the caller's iterable when a decoder has room; jobs put back
    (a crashed decoder's queue) go first."""

    def __init__(self, jobs: Iterable[DecodeJob]) -> None:
        self._back: deque[DecodeJob] = deque()
        self._source = iter(jobs)

    def __bool__(self) -> bool:
        if not self._back:
            job = next(self._source, None)
            if job is None:
                return False
            self._back.append(job)
        return True

    def peek(self) -> DecodeJob:
        if not self:
            raise IndexError("no pending decode jobs")
        return self._back[0]

    def popleft(self) -> DecodeJob:
        if not self:
            raise IndexError("no pending decode jobs")
        return self._back.popleft()

    def extendleft(self, jobs: Iterable[DecodeJob]) -> None:
        self._back.extendleft(jobs)
