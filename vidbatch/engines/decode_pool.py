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
import queue
import signal
import threading
import time
from collections import deque
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterable, Iterator

from vidbatch.engines.decode_worker import DecodeJob

_STOP = None


def _worker_main(conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    from vidbatch.engines.decode_worker import decode_job

    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is _STOP:
            return
        for event in decode_job(job):
            conn.send((job.key, *event))


class _Worker:
    def __init__(self, ctx: Any) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child,), daemon=True, name="vidbatch-decode")
        self.process.start()
        child.close()
        self.job: DecodeJob | None = None
        self.stalled_s = 0.0

    def assign(self, job: DecodeJob) -> None:
        self.job = job
        self.stalled_s = 0.0
        self.conn.send(job)

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(_STOP)
        except (OSError, ValueError):
            pass
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


def _death_message(process: mp.process.BaseProcess) -> str:
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

    Events are tuples `(key, kind, ...)` as produced by `decode_job`, where kind
    is "info", "chunk", "done" or "failed". A video whose decoder makes no
    progress for `timeout_s` seconds, or whose decoder dies, yields a "failed"
    event and its worker is replaced.
    """

    def __init__(
        self,
        workers: int,
        timeout_s: float | None = None,
        queue_chunks: int | None = None,
        on_worker_event: Callable[[str, int], None] | None = None,
    ) -> None:
        self.workers = workers
        self.timeout_s = timeout_s
        self._queue: queue.Queue = queue.Queue(maxsize=queue_chunks or max(4, 3 * workers))
        self._ctx = mp.get_context("spawn")
        self._pool: list[_Worker] = []
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._on_worker_event = on_worker_event

    def worker_pids(self) -> dict[str, int]:
        """Output key -> pid of the worker decoding it now (for tests that inject faults)."""
        return {w.job.key: w.process.pid for w in list(self._pool) if w.job is not None}

    def run(self, jobs: Iterable[DecodeJob], idle_s: float | None = None) -> Iterator[tuple | None]:
        """Yield events; with `idle_s`, also yield None whenever nothing arrived for that long."""
        pending = deque(jobs)
        self._pool = [_Worker(self._ctx) for _ in range(min(self.workers, max(1, len(pending))))]
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
                yield event
        finally:
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
        fresh = _Worker(self._ctx)
        self._pool[self._pool.index(worker)] = fresh
        return fresh

    def _receive(self, pending: deque) -> None:
        try:
            for worker in self._pool:
                if pending:
                    worker.assign(pending.popleft())
            while not self._closing.is_set():
                busy = [w for w in self._pool if w.job is not None]
                if not busy:
                    break
                started = time.monotonic()
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=0.5)
                waited = time.monotonic() - started
                for worker in busy:
                    if worker.conn in ready:
                        try:
                            while worker.conn.poll():
                                message = worker.conn.recv()
                                worker.stalled_s = 0.0
                                if not self._put(message):
                                    return
                                if message[1] in ("done", "failed"):
                                    worker.job = None
                                    break
                        except (EOFError, OSError):
                            pass  # died mid-message: handled below as a death
                    if worker.job is None:
                        if pending:
                            worker.assign(pending.popleft())
                        continue
                    if not worker.process.is_alive():
                        job = worker.job
                        worker.process.join(timeout=1)
                        message = _death_message(worker.process)
                        self._notify("crash", worker.process.pid)
                        fresh = self._replace(worker)
                        if not self._put((job.key, "failed", message, {})):
                            return
                        if pending:
                            fresh.assign(pending.popleft())
                        continue
                    if worker.conn not in ready:
                        worker.stalled_s += waited
                    if self.timeout_s is not None and worker.stalled_s > self.timeout_s:
                        job = worker.job
                        self._notify("timeout", worker.process.pid)
                        fresh = self._replace(worker)
                        message = f"timeout: the decoder made no progress for {self.timeout_s:g} s (--video-timeout)"
                        if not self._put((job.key, "failed", message, {})):
                            return
                        if pending:
                            fresh.assign(pending.popleft())
            self._put(_STOP)
        except BaseException as exc:  # surface pool errors in the consumer, never hang it
            self._put(exc)

    def _notify(self, what: str, pid: int) -> None:
        if self._on_worker_event is not None:
            self._on_worker_event(what, pid)

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for worker in self._pool:
            worker.stop()
        self._pool = []
