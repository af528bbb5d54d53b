"""Which Ray cluster a run uses, and reaching it: one line and exit 2 when it cannot be started or reached.

Why: `ray.init()` with no address joins whatever cluster it finds on the machine (`RAY_ADDRESS`, or Ray's address
file from another user's `ray start`): a stranger's cluster, one with token authentication, or a stale address
that Ray retries for minutes. vidbatch uses a cluster only when told to, and checks an address answers (seconds)
before Ray is asked to join it. Ray itself is imported only to start or join.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import Iterator

from vidbatch.core.errors import ClusterError
from vidbatch.core.quiet import quiet_native_stderr


def cluster_address(option: str | None) -> str:
    """`--ray-address`, else `RAY_ADDRESS` (what `ray job submit` sets for its job), else "local": a private
    instance started for the run."""
    return option or os.environ.get("RAY_ADDRESS") or "local"


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS_FRAME = 4
JOIN_TIMEOUT_S = 120
"""The longest `ray.init` may take to join or start (Ray retries a silent cluster for many minutes)."""
CONNECT_TIMEOUT_S = 5.0
"""How long the engine waits for a cluster's address to answer before it says so (Ray itself retries for minutes)."""


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail in seconds, in one line, when nothing listens at `address` (a stale address hangs `ray.init`)."""
    import socket
    from urllib.parse import urlsplit

    if address in ("auto", "local"):  # Ray's own discovery asked for by name (Ray reports it), or a new instance
        return
    parts = urlsplit(address if "://" in address else "ray-gcs://" + address)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise ClusterError(f"Invalid `--ray-address`: expected HOST:PORT or ray://HOST:PORT. Received: {address!r}")
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as connection:
            # Ray's GCS and client servers speak gRPC (HTTP/2): a server answers the client preface with its
            # SETTINGS frame at once; a stale address reused by something else, or a hung process, does not
            connection.sendall(HTTP2_PREFACE + EMPTY_SETTINGS)
            reply = connection.recv(9)
        if len(reply) < 9 or reply[3] != SETTINGS_FRAME:
            raise ConnectionError("something listens there but does not answer as a Ray cluster (gRPC)")
    except OSError as exc:
        reason = f"no answer within {timeout_s:g} s" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise ClusterError(
            f"Cannot connect to the Ray cluster at {address!r}: {reason}. Check "
            "--ray-address (or RAY_ADDRESS); leave both unset to run on a private local Ray instance") from None


HEALTHY_RUN_MESSAGES = (
    "Progress bars disabled",  # what --no-progress asked for
    "will hang unless more CPUs are freed up",  # every CPU is held by the decode and inference pools, by design
    "Token authentication is enabled",  # Ray's own default for the private instance it starts
    "Started a local Ray instance",
    "Connecting to existing Ray cluster",
    "execution finished in",
    "Data sink CommitSink finished.",  # "... N rows and 3.5KiB data written."
)
"""Ray's lines on a healthy run that a user can do nothing about (README "On a Ray cluster" explains them)."""


class HealthyRunFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(healthy in message for healthy in HEALTHY_RUN_MESSAGES)


def quiet_ray() -> None:
    """Drop Ray's healthy-run lines from the driver's console (real warnings and errors still show), and, unless
    the user set `RAY_BACKEND_LOG_LEVEL`, its C++ core's notices (an actor's constructor arguments kept in the
    object store, said for every actor pool): problems still surface as Python exceptions."""
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    for name in ("ray", "ray.data"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, HealthyRunFilter) for f in handler.filters):
                handler.addFilter(HealthyRunFilter())


def init_or_fail(address: str, doing: str, **kwargs) -> None:
    """`ray.init`, with what can go wrong (authentication, a version mismatch, a port taken) as one line."""
    import ray
    import ray.data  # noqa: F401  (its loggers, configured on import, get the filter too)

    quiet_ray()
    try:
        with _deadline(JOIN_TIMEOUT_S), quiet_native_stderr():  # the C++ core's start-up lines
            ray.init(address=address, **kwargs)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        ray.shutdown()
        raise ClusterError(f"Cannot {doing}: {type(exc).__name__}: {text}") from None


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the main thread after `seconds` (Ray's join loops are Python, so the alarm lands);
    elsewhere, no bound."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum, _frame):
        raise TimeoutError(f"no answer within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
