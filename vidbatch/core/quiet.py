"""Keep native libraries' start-up chatter off a user's terminal.

TensorFlow prints, on every start, lines nobody can act on: absl's pre-init
warning, CPU-feature and oneDNN notes, and CUDA probing errors on a machine
without a GPU. TensorFlow 2.21 prints some of them whatever `TF_CPP_MIN_LOG_LEVEL`
says (absl logs before its own initialisation), so the command line also
silences file descriptor 2 while TensorFlow starts. Real failures still raise
Python exceptions, and each video's problem is in its `error` column.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

NATIVE_LOG_DEFAULTS = (
    ("TF_CPP_MIN_LOG_LEVEL", "3"),
    ("OPENCV_LOG_LEVEL", "ERROR"),
    ("OPENCV_FFMPEG_LOGLEVEL", "-8"),
    ("GRPC_VERBOSITY", "ERROR"),
)
"""Set unless the user set them: a user who wants the messages sets the variable."""


def quiet_native_logs() -> None:
    for name, value in NATIVE_LOG_DEFAULTS:
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what C libraries print to file descriptor 2 for the duration (Python's own stderr is flushed first)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def start_keras_quietly() -> None:
    """Import Keras (and its backend) and let the backend probe its devices, with native stderr silenced: that is
    when TensorFlow prints its start-up lines. Afterwards nothing is silenced."""
    with quiet_native_stderr():
        import keras

        keras.distribution.list_devices()
