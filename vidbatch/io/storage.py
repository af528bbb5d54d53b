"""One way to turn any path or URL into a filesystem, and to write atomically.

Everything that touches storage (manifests, model bundles, videos, outputs)
goes through `url_to_fs`, so local paths, `file://`, `s3://` and `memory://`
behave alike. S3 endpoint and credentials come from the standard AWS
environment (including `AWS_ENDPOINT_URL`) unless `storage_options` says
otherwise.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from typing import Any, Iterator, Mapping

import fsspec
from fsspec.core import url_to_fs as _fsspec_url_to_fs
from fsspec.implementations.local import LocalFileSystem

from vidbatch.core.config import redact  # noqa: F401  (credentials live in storage options; re-exported here)

TEMPORARY_PREFIX = ".tmp-"
"""Hidden temporaries of `atomic_write_bytes`: readers skip them; a killed writer can leave them behind."""

_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def has_scheme(url: str) -> bool:
    return bool(_URL_SCHEME.match(url))


def url_to_fs(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return `(filesystem, path)` for `url`; raises ValueError for an unknown scheme."""
    options = dict(storage_options or {})
    scheme = url.split("://", 1)[0].lower() if has_scheme(url) else "file"
    if scheme in ("s3", "s3a"):
        options = _s3_options(options)
    elif scheme in ("file", "local", "memory"):
        options = {}  # one run mixes local and remote paths; credentials mean nothing to local files
    try:
        return _fsspec_url_to_fs(url, **options)
    except ValueError as exc:
        scheme = url.split("://", 1)[0]
        raise ValueError(f"unknown URL scheme {scheme!r} (Received: {url!r}); use a local path, file://, s3:// or memory://") from exc
    except ImportError as exc:
        raise ValueError(f"no filesystem installed for {url!r}: {exc}") from exc


def _s3_options(options: dict[str, Any]) -> dict[str, Any]:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and "endpoint_url" not in options and "endpoint_url" not in options.get("client_kwargs", {}):
        options["endpoint_url"] = endpoint
    return options


def is_missing_credentials(exc: BaseException) -> bool:
    """An object-store client found no credentials (botocore's `NoCredentialsError` and kin, whatever wraps it)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if "credential" in type(exc).__name__.lower() or "unable to locate credentials" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def credentials_hint(what: str, url: str) -> str:
    """One line that names what to set, for `what` (`--out`, `manifest`, `--model`) at `url`."""
    return (f"no credentials were found for {what} {url!r}. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE), or pass them in --storage-options")


def describe_failure(exc: BaseException) -> str:
    """A storage failure in a few words: the OS's reason, or the client's error type and message, cut short."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def join(base: str, *parts: str) -> str:
    """Join URL or path parts with '/', keeping a scheme intact."""
    out = base.rstrip("/")
    for part in parts:
        out = out + "/" + part.strip("/")
    return out


def resolve(uri: str, base_dir: str) -> str:
    """Resolve a manifest entry: URLs and absolute paths as they are, others against `base_dir`."""
    if has_scheme(uri) or os.path.isabs(uri):
        return uri
    if has_scheme(base_dir):
        return join(base_dir, uri)
    return os.path.normpath(os.path.join(base_dir, uri))


def parent(url: str) -> str:
    if has_scheme(url):
        scheme, rest = url.split("://", 1)
        return scheme + "://" + rest.rstrip("/").rsplit("/", 1)[0] if "/" in rest.rstrip("/") else url
    return os.path.dirname(os.path.abspath(url))


def atomic_write_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write `data` so no reader ever sees part of it.

    Locally: a hidden temporary file in the same folder, then an atomic rename.
    On object stores a single PUT (or a completed multipart upload) is atomic
    already, so the object is written in place.
    """
    if not is_local(fs):
        fs.pipe_file(path, data)
        return
    with atomic_writer(fs, path) as handle:
        handle.write(data)


@contextlib.contextmanager
def atomic_writer(fs: fsspec.AbstractFileSystem, path: str):
    """A binary file handle whose contents appear at `path` whole, when the block ends without error (as
    `atomic_write_bytes`, for writers that stream, such as a Parquet writer's row groups): locally a hidden
    temporary file renamed into place; on object stores one upload, completed at the end or discarded."""
    if is_local(fs):
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f"{TEMPORARY_PREFIX}{uuid.uuid4().hex}-{os.path.basename(path)}")
        try:
            with open(tmp, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return
    handle = fs.open(path, "wb")
    try:
        yield handle
    except BaseException:
        discard = getattr(handle, "discard", None)
        if discard is not None:
            discard()  # an object-store upload that never completes leaves no object
        raise
    handle.close()


def remove_stale_temporaries(fs: fsspec.AbstractFileSystem, folder: str, prefixes: tuple[str, ...] = (TEMPORARY_PREFIX,)) -> int:
    """Delete what a killed writer left under `folder`: hidden temporaries that were never renamed.

    Only local folders can hold them (object stores are written in place), so
    elsewhere this does nothing. Call it only while no other writer uses the
    folder: before a run starts work. Returns how many files were removed.
    """
    if not is_local(fs) or not os.path.isdir(folder):
        return 0
    removed = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            if name.startswith(prefixes):
                try:
                    os.unlink(os.path.join(root, name))
                    removed += 1
                except FileNotFoundError:
                    continue
    return removed


@contextlib.contextmanager
def _local_or_fetched(url: str, storage_options: Mapping[str, Any] | None, fetch) -> Iterator[str]:
    """The local path of `url`, or what `fetch(fs, path, scratch_folder)` copied from a remote store, removed after."""
    fs, path = url_to_fs(url, storage_options)
    if is_local(fs):
        yield path
        return
    folder = tempfile.mkdtemp(prefix="vidbatch-")
    try:
        yield fetch(fs, path, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def local_copy(url: str, storage_options: Mapping[str, Any] | None = None, suffix: str = ""):
    """A context manager yielding a local filesystem path for `url`: the file itself, or a temporary copy."""

    def fetch(fs, path: str, folder: str) -> str:
        local = os.path.join(folder, "input" + (suffix or os.path.splitext(path)[1]))
        fs.get_file(path, local)
        return local

    return _local_or_fetched(url, storage_options, fetch)


def local_folder_copy(url: str, storage_options: Mapping[str, Any] | None = None):
    """Like `local_copy` for a folder (a model bundle on S3, say)."""

    def fetch(fs, path: str, folder: str) -> str:
        for remote in fs.find(path):
            relative = remote[len(path.rstrip("/")) + 1 :]
            if not relative or relative.startswith("/") or ".." in relative.split("/"):
                continue
            target = os.path.join(folder, *relative.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fs.get_file(remote, target)
        return folder

    return _local_or_fetched(url, storage_options, fetch)
