"""Write a run's outputs under `out` with the per-video ledger commit.

The commit protocol ("ledger commit"):

1. A video's frames table is written to `frames/<key>.parquet`, atomically
   (temporary hidden name, then rename; one PUT on object stores).
2. Its ledger entry `_vidbatch/ledger/<key>.json` (summary fields and
   segments) is then written atomically. That write is the commit: a video
   counts as done exactly when its ledger entry exists.
3. When every video has an entry, `summary.parquet`, `segments.parquet`,
   `shots.parquet` and `run.json` are rebuilt from the ledger, each atomically.

A crash at any point leaves no half-written file a reader would take for
complete (readers skip the hidden temporaries), and a rerun into the same
`out` skips committed videos and redoes the rest; since step 3 reads only
the ledger, the final tables equal those of an uninterrupted run.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from vidbatch.core.errors import OutputError
from vidbatch.io import storage
from vidbatch.io.manifest import Manifest
from vidbatch.io.schema import (
    FRAMES_SCHEMA,
    SEGMENTS_SCHEMA,
    SHOTS_SCHEMA,
    SUMMARY_SCHEMA,
)

LEDGER_DIR = "_vidbatch/ledger"
IDENTITY_FILE = "_vidbatch/identity.json"
MIN_FREE_BYTES = 64 * 1024 * 1024
PROBE_PREFIX = ".probe-"

@dataclass
class VideoOutcome:
    """One video's result, as the assembly stage makes it and `RunOutput.commit` writes it: its summary
    record, and if it is ok its frames table, segments and shots."""

    video_id: str
    key: str
    record: dict[str, Any]
    frames: pa.Table | None = None
    segments: list[dict[str, Any]] = field(default_factory=list)
    shots: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.record["status"] == "ok"


def table_to_parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


class RunOutput:
    """The output location of one run: prepares it, commits videos, writes the final tables."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        try:
            self.fs, self.path = storage.url_to_fs(url, storage_options)
        except ValueError as exc:
            raise OutputError(f"Cannot use --out {url!r}: {exc}") from None

    def _p(self, *parts: str) -> str:
        return storage.join(self.path, *parts)

    # -- before any work -------------------------------------------------
    def prepare(self, identity: Mapping[str, Any], overwrite: bool = False) -> None:
        """Fail fast if `out` cannot be written or holds a run with other settings."""
        self._check_writable()
        # a run killed mid-write (even by SIGKILL) leaves hidden temporaries: nothing will ever rename them
        storage.remove_stale_temporaries(self.fs, self.path, prefixes=(storage.TEMPORARY_PREFIX, PROBE_PREFIX))
        identity_path = self._p(IDENTITY_FILE)
        wanted = json.dumps(identity, sort_keys=True)
        if self.fs.exists(identity_path):
            existing = self.fs.cat_file(identity_path).decode("utf-8", "replace")
            if json.dumps(json.loads(existing), sort_keys=True) != wanted:
                if not overwrite:
                    raise OutputError(
                        f"--out {self.url!r} holds a run with other settings or another model "
                        f"(theirs: {existing.strip()}; this run: {wanted}). "
                        "Choose a new --out, or pass --overwrite to discard the old run."
                    )
                self.clear()
        storage.atomic_write_bytes(self.fs, identity_path, wanted.encode())

    def _check_writable(self) -> None:
        probe = self._p("_vidbatch", f"{PROBE_PREFIX}{uuid.uuid4().hex}")
        try:
            if storage.is_local(self.fs):
                if os.path.exists(self.path) and not os.path.isdir(self.path):
                    raise OutputError(f"Cannot write to --out {self.url!r}: it is a file, not a folder")
                os.makedirs(os.path.dirname(probe), exist_ok=True)
                free = shutil.disk_usage(os.path.dirname(probe)).free
                if free < MIN_FREE_BYTES:
                    raise OutputError(
                        f"Cannot write to --out {self.url!r}: only {free // (1024 * 1024)} MiB free on its disk; free some space first"
                    )
            self.fs.pipe_file(probe, b"ok")
            self.fs.rm_file(probe)
        except OutputError:
            raise
        except PermissionError as exc:
            raise OutputError(f"Cannot write to --out {self.url!r}: permission denied ({exc})") from None
        except OSError as exc:
            raise OutputError(f"Cannot write to --out {self.url!r}: {exc.strerror or exc}") from None

    def clear(self) -> None:
        for sub in ("_vidbatch", "frames"):
            target = self._p(sub)
            if self.fs.exists(target):
                self.fs.rm(target, recursive=True)
        for name in ("summary.parquet", "segments.parquet", "shots.parquet", "run.json"):
            if self.fs.exists(self._p(name)):
                self.fs.rm_file(self._p(name))

    # -- per video ---------------------------------------------------------
    def committed(self) -> dict[str, dict[str, Any]]:
        """Ledger entries by output key."""
        folder = self._p(LEDGER_DIR)
        if not self.fs.exists(folder):
            return {}
        entries = {}
        for path in self.fs.find(folder):
            name = path.rsplit("/", 1)[-1]
            if name.startswith(".") or not name.endswith(".json"):
                continue
            try:
                entries[name[: -len(".json")]] = json.loads(self.fs.cat_file(path))
            except (ValueError, OSError):
                continue  # unreadable entry: the video is simply redone
        return entries

    def commit(self, outcome: VideoOutcome) -> None:
        frames_path = self._p("frames", outcome.key + ".parquet")
        if outcome.frames is not None:
            storage.atomic_write_bytes(self.fs, frames_path, table_to_parquet_bytes(outcome.frames))
        elif self.fs.exists(frames_path):
            self.fs.rm_file(frames_path)  # a failed redo must not leave an older run's frames behind
        entry = dict(outcome.record)
        entry["segments"] = outcome.segments
        entry["shots_table"] = outcome.shots
        storage.atomic_write_bytes(
            self.fs, self._p(LEDGER_DIR, outcome.key + ".json"), json.dumps(entry, allow_nan=True).encode()
        )

    # -- at the end ----------------------------------------------------------
    def finalize(self, manifest: Manifest, run_record: Mapping[str, Any]) -> pa.Table:
        """Rebuild summary.parquet, segments.parquet and run.json from the ledger."""
        ledger = self.committed()
        missing = [t.video_id for t in manifest.tasks if t.key not in ledger]
        if missing:
            raise OutputError(f"Cannot finish {self.url!r}: {len(missing)} video(s) have no ledger entry, e.g. {missing[:3]}")
        records = [ledger[t.key] for t in manifest.tasks]
        summary = build_summary(records, manifest.passthrough)
        segments = build_segments(records)
        shots = pa.Table.from_pylist([s for r in records for s in r.get("shots_table", [])], schema=SHOTS_SCHEMA)
        storage.atomic_write_bytes(self.fs, self._p("summary.parquet"), table_to_parquet_bytes(summary))
        storage.atomic_write_bytes(self.fs, self._p("segments.parquet"), table_to_parquet_bytes(segments))
        storage.atomic_write_bytes(self.fs, self._p("shots.parquet"), table_to_parquet_bytes(shots))
        if not any(r["status"] == "ok" for r in records):
            # readers of frames/ should find a valid, empty dataset
            storage.atomic_write_bytes(
                self.fs, self._p("frames", "_empty.parquet"), table_to_parquet_bytes(FRAMES_SCHEMA.empty_table())
            )
        storage.atomic_write_bytes(
            self.fs, self._p("run.json"), json.dumps(run_record, indent=2, sort_keys=True, default=str).encode()
        )
        return summary


def build_summary(records: Iterable[Mapping[str, Any]], passthrough: pa.Table) -> pa.Table:
    records = list(records)
    columns: dict[str, pa.Array] = {}
    for schema_field in SUMMARY_SCHEMA:
        if schema_field.name == "uri":
            continue
        columns[schema_field.name] = pa.array([r.get(schema_field.name) for r in records], schema_field.type)
    extra = passthrough.drop_columns(["video_id"])
    arrays = [columns["video_id"], extra.column("uri").combine_chunks().cast(pa.string())]
    names = ["video_id", "uri"]
    for name in SUMMARY_SCHEMA.names[2:]:
        arrays.append(columns[name])
        names.append(name)
    for name in extra.column_names:
        if name == "uri":
            continue
        arrays.append(extra.column(name).combine_chunks())
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def build_segments(records: Iterable[Mapping[str, Any]]) -> pa.Table:
    rows = [segment for r in records for segment in r.get("segments", [])]
    return pa.Table.from_pylist(rows, schema=SEGMENTS_SCHEMA)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
