"""Read and validate a manifest of videos (CSV or Parquet, any fsspec URL).

`uri` is required; `video_id` is optional and derived from the uri when
absent; every other column passes through to the summary unchanged. Problems
are found before any work starts and reported with the file, row and column.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from vidbatch.core.errors import ManifestError
from vidbatch.io import storage
from vidbatch.io.schema import RESERVED_COLUMNS

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class VideoTask:
    """One row of work: what to decode and where its outputs go."""

    video_id: str
    uri: str
    """The uri as the manifest wrote it (reported back unchanged)."""
    location: str
    """The uri resolved against the manifest's folder: what is actually opened."""
    row: int
    """0-based data row in the manifest."""

    @property
    def key(self) -> str:
        return output_key(self.video_id)


def output_key(video_id: str) -> str:
    """A file-name-safe, unique name for a video's output files.

    Readable characters of the id, then a hash of the whole id, so hostile ids
    (`../x`, `/etc/passwd`, control characters) can never leave the output folder
    and two ids never share a file.
    """
    readable = _UNSAFE_KEY_CHARS.sub("_", video_id).strip("._-")[:60] or "video"
    digest = hashlib.sha1(video_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{readable}-{digest}"


def derive_video_id(uri: str) -> str:
    """A stable, unique id from a uri: its file stem and a short hash of the whole uri."""
    stem = os.path.splitext(uri.rstrip("/").rsplit("/", 1)[-1])[0] or "video"
    return f"{stem}-{hashlib.sha1(uri.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


class Manifest:
    """A validated manifest: the tasks, and the passthrough columns keyed by video_id."""

    def __init__(self, table: pa.Table, source: str = "<table>", base_dir: str | None = None) -> None:
        self.source = source
        self.base_dir = base_dir if base_dir is not None else os.getcwd()
        self._table, self.tasks = _validate(table, source, self.base_dir)

    @classmethod
    def from_path(cls, url: str, storage_options: Mapping[str, Any] | None = None) -> "Manifest":
        """Read a `.csv` or `.parquet` manifest from a local path or URL."""
        try:
            fs, path = storage.url_to_fs(url, storage_options)
        except ValueError as exc:
            raise ManifestError(f"Cannot read manifest {url!r}: {exc}") from exc
        try:
            if fs.isdir(path):
                raise ManifestError(f"Cannot read manifest {url!r}: it is a folder; pass a .csv or .parquet file")
            data = fs.cat_file(path)
        except ManifestError:
            raise
        except FileNotFoundError:
            raise ManifestError(f"Cannot read manifest {url!r}: no such file") from None
        except PermissionError as exc:
            raise ManifestError(f"Cannot read manifest {url!r}: permission denied ({exc})") from None
        except OSError as exc:
            raise ManifestError(f"Cannot read manifest {url!r}: {exc}") from None
        table = _parse(data, url)
        return cls(table, source=url, base_dir=storage.parent(url))

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]], base_dir: str | None = None) -> "Manifest":
        """Build a manifest in memory, e.g. from a list of dicts with at least `uri`."""
        if not records:
            raise ManifestError("Manifest <records> is empty: it has no rows")
        return cls(pa.Table.from_pylist(list(records)), source="<records>", base_dir=base_dir)

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def passthrough(self) -> pa.Table:
        """`video_id` plus every column the manifest carries beyond `uri`."""
        return self._table

    @property
    def has_labels(self) -> bool:
        return "label" in self._table.column_names


def _parse(data: bytes, url: str) -> pa.Table:
    lowered = url.lower().split("?", 1)[0]
    is_parquet = lowered.endswith((".parquet", ".pq")) or data[:4] == b"PAR1"
    if is_parquet:
        try:
            return pq.read_table(io.BytesIO(data))
        except (pa.ArrowException, OSError) as exc:
            raise ManifestError(f"Cannot read manifest {url!r}: not a valid Parquet file ({exc})") from None
    if not lowered.endswith((".csv", ".tsv", ".txt")):
        raise ManifestError(f"Cannot read manifest {url!r}: unknown format; expected a .csv or .parquet file")
    if not data.strip():
        raise ManifestError(f"Manifest {url!r} is empty: it has no header and no rows")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ManifestError(
            f"Cannot read manifest {url!r}: not UTF-8 text (invalid byte at line {line}); save it as UTF-8"
        ) from None
    delimiter = "\t" if lowered.endswith(".tsv") else ","
    try:
        return pacsv.read_csv(
            io.BytesIO(data),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(
                column_types={"uri": pa.string(), "video_id": pa.string()},
                strings_can_be_null=True,
            ),
        )
    except pa.ArrowException as exc:
        raise ManifestError(f"Cannot read manifest {url!r}: malformed CSV ({exc})") from None


def _validate(table: pa.Table, source: str, base_dir: str) -> tuple[pa.Table, list[VideoTask]]:
    names = table.column_names
    if "uri" not in names:
        raise ManifestError(f"Manifest {source!r} has no 'uri' column (columns: {names}); add one with each video's path or URL")
    clash = [c for c in names if c in RESERVED_COLUMNS]
    if clash:
        raise ManifestError(
            f"Manifest {source!r}: column(s) {clash} would collide with output columns of the summary "
            f"(vidbatch fills {list(RESERVED_COLUMNS)}); rename them"
        )
    if table.num_rows == 0:
        raise ManifestError(f"Manifest {source!r} is empty: it has a header but no rows")

    uris = _string_column(table, "uri", source)
    if "video_id" in names:
        ids = _string_column(table, "video_id", source)
    else:
        ids = [None] * table.num_rows

    tasks: list[VideoTask] = []
    seen: dict[str, int] = {}
    for row, (uri, video_id) in enumerate(zip(uris, ids)):
        if uri is None or not uri.strip():
            raise ManifestError(f"Manifest {source!r}, row {row + 1}, column 'uri': blank; every row needs a video path or URL")
        uri = uri.strip()
        if "video_id" in names:
            if video_id is None or not video_id.strip():
                raise ManifestError(f"Manifest {source!r}, row {row + 1}, column 'video_id': blank; fill it or drop the column to derive ids")
        else:
            video_id = derive_video_id(uri)
        if video_id in seen:
            raise ManifestError(
                f"Manifest {source!r}, row {row + 1}, column 'video_id': duplicate {video_id!r} "
                f"(also row {seen[video_id] + 1}); ids must be unique"
            )
        seen[video_id] = row
        tasks.append(VideoTask(video_id=video_id, uri=uri, location=storage.resolve(uri, base_dir), row=row))

    passthrough = table.drop_columns([c for c in ("video_id",) if c in names])
    passthrough = passthrough.add_column(0, "video_id", pa.array([t.video_id for t in tasks], pa.string()))
    return passthrough, tasks


def _string_column(table: pa.Table, name: str, source: str) -> list[str | None]:
    column = table.column(name)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column.to_pylist()
    if pa.types.is_null(column.type):
        return [None] * len(column)
    if pa.types.is_integer(column.type) and name == "video_id":
        return [None if v is None else str(v) for v in column.to_pylist()]
    raise ManifestError(f"Manifest {source!r}, column {name!r}: expected text, found {column.type}")
