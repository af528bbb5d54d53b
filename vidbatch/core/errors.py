"""A small error hierarchy.

Errors that stop a run before any work (a bad manifest, model, option or
output location) derive from `VidbatchError` and carry the process exit code.
A problem with one video never raises out of the engine: it becomes a failed
row whose `error` column says what went wrong.
"""

from __future__ import annotations


class VidbatchError(Exception):
    """Base class: a problem the user can fix; the CLI prints it without a traceback."""

    exit_code = 2


class ConfigError(VidbatchError, ValueError):
    """An option value is invalid."""


class ManifestError(VidbatchError):
    """The manifest cannot be read or fails validation."""


class ModelBundleError(VidbatchError):
    """The model bundle is missing, malformed, unsafe or inconsistent."""


class OutputError(VidbatchError):
    """The output location cannot be written, or holds an incompatible run."""


class ClusterError(VidbatchError):
    """The Ray cluster cannot be started or reached."""


class VideoError(Exception):
    """One video cannot be labeled; the message goes into its `error` column.

    Not a `VidbatchError`: it never stops a run.
    """
