"""vidbatch: batch video labeling with a Keras model and rolling-average smoothing.

`import vidbatch` stays light: OpenCV, Keras and Ray are imported only by the
stages and engines that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vidbatch.core.config import DEFAULT_FPS, DEFAULT_TOP_K, DEFAULT_WINDOW, LabelConfig
from vidbatch.core.errors import (
    ConfigError,
    ManifestError,
    ModelBundleError,
    OutputError,
    VidbatchError,
    VideoError,
)

if TYPE_CHECKING:
    from vidbatch.pipeline import RunResult

def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("vidbatch")  # defined once, in pyproject.toml
    except metadata.PackageNotFoundError:  # a source tree on sys.path without an install
        return "0+unknown"


__version__ = _version()

__all__ = [
    "DEFAULT_FPS",
    "DEFAULT_TOP_K",
    "DEFAULT_WINDOW",
    "ConfigError",
    "LabelConfig",
    "ManifestError",
    "ModelBundleError",
    "OutputError",
    "RunResult",
    "VidbatchError",
    "VideoError",
    "label",
    "read_frames",
]


def label(manifest: str, model: str, out: str, **options) -> "RunResult":
    """Label every video of `manifest` with `model`, writing tables under `out`.

    Options are the fields of `LabelConfig` (fps, window, top_k, engine, ...).
    Returns a `RunResult` with the counts and the output location.
    """
    from vidbatch.core.quiet import quiet_native_logs, start_keras_quietly

    config = LabelConfig(manifest=manifest, model=model, out=out, **options)
    quiet_native_logs()  # as quiet as the command line: the backend's start-up lines are not the user's business
    start_keras_quietly()
    from vidbatch.pipeline import run

    return run(config)


def read_frames(out: str, video_ids, storage_options=None, columns=None):
    """The frames rows of one video (or a few) of a finished run, as a pandas DataFrame, read through the run's
    frames index: a few files, however large the archive (`pd.read_parquet(out + "/frames", filters=...)` opens
    every shard's footer). `out` may be any URL `label` accepts, with the same `storage_options`."""
    from vidbatch.io.output import read_frames as _read_frames

    return _read_frames(out, video_ids, storage_options, columns).to_pandas()


def __getattr__(name: str):
    if name == "RunResult":
        from vidbatch.pipeline import RunResult

        return RunResult
    raise AttributeError(f"module 'vidbatch' has no attribute {name!r}")
