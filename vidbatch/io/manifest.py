"""Read and validate a manifest of videos (CSV or Parquet, any fsspec URL).

`uri` is required; `video_id` is optional and derived from the uri when
absent; every other column passes through to the summary unchanged. Problems
are found before any work starts and reported with the file, row and column.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from vidbatch.core.errors import ManifestError
from vidbatch.io import storage
from vidbatch.io.schema import RESERVED_COLUMNS

log = logging.getLogger("vidbatch")
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


HASH_KEYS = ("0123456789123456", "vidbatch-ledger2")
"""SipHash keys: the first is pandas' default; a second, independent hash makes a 128-bit one where needed."""


def key_hashes(keys: pa.Array | pa.ChunkedArray, which: int = 0) -> np.ndarray:
    """A 64-bit hash of each output key (pandas' SipHash with `HASH_KEYS[which]`): how resume compares a
    manifest with what is committed, in 8 bytes a video (a key string costs 50-70 on the driver)."""
    from pandas.util import hash_array

    values = keys.to_numpy(zero_copy_only=False) if len(keys) else np.empty(0, object)
    return hash_array(np.asarray(values, dtype=object), hash_key=HASH_KEYS[which],
                      categorize=False).astype(np.uint64, copy=False)


def sorted_has(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Whether each of `values` is in `sorted_values` (binary search: no copy of either)."""
    if not len(sorted_values):
        return np.zeros(len(values), bool)
    where = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
    return sorted_values[where] == values


def task_columns(table: pa.Table, source: str, base_dir: str, done: np.ndarray) -> pa.Table:
    """The engines' input columns (key, video_id, uri, location) of validated manifest rows, leaving out those
    whose output keys' hashes are in `done` (sorted): what `Pending` gives on the driver, and what the Ray engine
    makes on its workers from the rows Ray Data reads there."""
    ids, clean, _, _ = _id_and_uri(table, source)
    tasks = TaskList({"video_id": ids, "uri": clean}, base_dir=base_dir)
    keys = tasks.keys()
    columns = pa.table({"key": keys, "video_id": ids, "uri": clean, "location": tasks.column("location")})
    if len(done):
        columns = columns.filter(pa.array(~sorted_has(done, key_hashes(keys))))
    return columns


class Pending:
    """The tasks of a manifest whose output keys' hashes are not in `done` (sorted): a run's to-do list, read
    a batch of the manifest at a time, so that a resumed run holds 8 bytes per finished video and nothing per
    video left to do."""

    def __init__(self, manifest: "Manifest", done: np.ndarray) -> None:
        self.manifest = manifest
        self.done = done
        self._len = len(manifest) - (sum(int(sorted_has(done, hashes).sum()) for hashes in manifest.key_hash_chunks())
                                     if len(done) else 0)

    def __len__(self) -> int:
        return self._len

    def batches(self) -> Iterator[TaskList]:
        for batch in self.manifest.batches():
            if len(self.done):
                todo = batch.tasks.where(~sorted_has(self.done, key_hashes(batch.tasks.keys())))
            else:
                todo = batch.tasks
            if len(todo):
                yield todo

    def __iter__(self) -> Iterator[VideoTask]:
        for tasks in self.batches():
            yield from tasks

    def columns(self) -> pa.Table:
        """The engines' input columns of every task to do (`task_columns`), as one table: the Ray engine's input
        when the manifest is held in memory (a manifest file is read on the workers instead)."""
        parts = [task_columns(b.passthrough, self.manifest.source, self.manifest.base_dir, self.done)
                 for b in self.manifest.batches()]
        return pa.concat_tables(parts) if parts else task_columns(
            pa.table({"uri": pa.array([], pa.string())}), "", "", self.done)


class KeyIndex:
    """Each output key's position in the manifest, found by its 128-bit hash (two independent `key_hashes`): 20
    bytes a video, where a hash table of the key strings costs over 100. What the end of a run places each
    committed entry by, so that its tables are written a slice of the manifest at a time."""

    def __init__(self, first: np.ndarray, second: np.ndarray) -> None:
        rank = np.argsort(first, kind="stable")  # by the first hash only: a lookup checks the second in its run
        self.first = first[rank]
        del first
        self.second = second[rank]
        del second
        self.position = rank.astype(np.int32) if len(rank) < 2**31 else rank

    @classmethod
    def of(cls, manifest: "Manifest") -> "KeyIndex":
        first, second = [], []
        for batch in manifest.batches():  # one read: both hashes of each batch's keys
            keys = batch.tasks.keys()
            first.append(key_hashes(keys))
            second.append(key_hashes(keys, which=1))
        empty = [np.empty(0, np.uint64)]
        return cls(np.concatenate(first or empty), np.concatenate(second or empty))

    def __len__(self) -> int:
        return len(self.position)

    def positions(self, keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """The manifest position of each of `keys` (int64), -1 for a key the manifest does not hold."""
        first, second = key_hashes(keys), key_hashes(keys, which=1)
        low = np.searchsorted(self.first, first, "left")
        high = np.searchsorted(self.first, first, "right")
        found = np.full(len(first), -1, np.int64)
        one = (high - low) == 1  # the usual case: one key has this first hash
        where = np.flatnonzero(one)
        hit = self.second[low[where]] == second[where]
        found[where[hit]] = self.position[low[where[hit]]]
        for i in np.flatnonzero((high - low) > 1):  # two keys share a first hash (about 3e-6 at 10^7 videos)
            match = np.flatnonzero(self.second[low[i]:high[i]] == second[i])
            if len(match):
                found[i] = self.position[low[i] + match[0]]
        return found


def derive_video_id(uri: str) -> str:
    """A stable, unique id from a uri: its file stem and a short hash of the whole uri."""
    stem = os.path.splitext(uri.rstrip("/").rsplit("/", 1)[-1])[0] or "video"
    return f"{stem}-{hashlib.sha1(uri.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


ITERATE_ROWS = 4096
"""Rows turned into `VideoTask`s at a time while iterating."""
MAP_ROWS = 65536
"""Rows turned into Python strings at a time to derive a column (ids, keys, locations)."""


class TaskList(Sequence[VideoTask]):
    """A manifest's videos, held as Arrow columns; a `VideoTask` is made only when one is read.

    Why: 10^7 videos as Python objects cost about 400 bytes each on the driver, as columns about 150. A
    subset (`where`) is a view (an index array), so a resumed run's to-do list costs 8 bytes a video.
    """

    def __init__(self, columns: dict[str, pa.Array], rows: np.ndarray | None = None, base_dir: str | None = None,
                 offset: int = 0) -> None:
        self._columns = columns  # the whole manifest's, shared by every view of it (and its keys, once made)
        self._rows = rows  # positions in the columns, None for all of them
        self._base_dir = base_dir
        """What relative uris resolve against: `location` is made from `uri` when read (unless given)."""
        self._offset = offset
        """The manifest row of the columns' first value (a batch of a manifest read a batch at a time)."""

    def __len__(self) -> int:
        return len(self._columns["video_id"]) if self._rows is None else len(self._rows)

    def _positions(self, start: int, stop: int) -> np.ndarray:
        return np.arange(start, stop) if self._rows is None else self._rows[start:stop]

    def column(self, name: str) -> pa.Array:
        """`video_id`, `uri`, `location` or `key` of every task, in order."""
        if name == "key" and "key" not in self._columns:  # made once per manifest, for all of it
            self._columns["key"] = _mapped(self._columns["video_id"], output_key)
        if name == "location" and "location" not in self._columns:  # made for what is asked, never kept
            uris = self._columns["uri"] if self._rows is None else self._columns["uri"].take(pa.array(self._rows))
            return _mapped(uris, self._resolve)
        values = self._columns[name]
        return values if self._rows is None else values.take(pa.array(self._rows))

    def _resolve(self, uri: str) -> str:
        return storage.resolve(uri, self._base_dir if self._base_dir is not None else os.getcwd())

    def keys(self) -> pa.Array:
        return self.column("key")

    def key_hash_chunks(self, which: int = 0) -> Iterator[np.ndarray]:
        """`key_hashes` of the tasks' output keys, `MAP_ROWS` at a time, in order: the keys are made for each
        chunk and dropped (unless the whole key column already exists)."""
        for start in range(0, len(self), MAP_ROWS):
            stop = min(start + MAP_ROWS, len(self))
            if "key" in self._columns:
                keys = self._columns["key"].take(pa.array(self._positions(start, stop)))
            else:
                keys = _mapped(self._columns["video_id"].take(pa.array(self._positions(start, stop))), output_key)
            yield key_hashes(keys, which)

    def where(self, mask: Sequence[bool]) -> "TaskList":
        """The tasks whose `mask` is true, as a view."""
        chosen = self._positions(0, len(self))[np.asarray(mask, dtype=bool)]
        return TaskList(self._columns, chosen, self._base_dir, self._offset)

    def _tasks(self, positions: np.ndarray) -> list[VideoTask]:
        index = pa.array(positions)
        ids, uris = (self._columns[name].take(index).to_pylist() for name in ("video_id", "uri"))
        locations = (self._columns["location"].take(index).to_pylist() if "location" in self._columns
                     else [self._resolve(u) for u in uris])
        return [VideoTask(video_id=v, uri=u, location=loc, row=int(r) + self._offset)
                for v, u, loc, r in zip(ids, uris, locations, positions)]

    def __getitem__(self, item):
        if isinstance(item, slice):
            return TaskList(self._columns, self._positions(0, len(self))[item], self._base_dir, self._offset)
        position = range(len(self))[item]  # negative indices, and IndexError past the end
        return self._tasks(self._positions(position, position + 1))[0]

    def __iter__(self):
        for start in range(0, len(self), ITERATE_ROWS):
            yield from self._tasks(self._positions(start, min(start + ITERATE_ROWS, len(self))))


@dataclass(frozen=True)
class ManifestBatch:
    """Consecutive rows of a manifest: from row `start`, their tasks and their passthrough columns."""

    start: int
    tasks: TaskList
    passthrough: pa.Table


class Manifest:
    """A validated manifest held in memory: the tasks, and the passthrough columns keyed by video_id. A manifest
    file too big to hold is a `StreamedManifest` (what `from_path` gives), read a batch at a time."""

    def __init__(self, table: pa.Table, source: str = "<table>", base_dir: str | None = None) -> None:
        self.source = source
        self.base_dir = base_dir if base_dir is not None else os.getcwd()
        self._table, self._tasks = _validate(table, source, self.base_dir)

    @classmethod
    def from_path(cls, url: str, storage_options: Mapping[str, Any] | None = None) -> "Manifest":
        """Open a `.csv` or `.parquet` manifest from a local path or URL, validated in one streamed pass (a
        `StreamedManifest`). A file that pass cannot take (a column whose type changes after its first block, a
        bad row, a malformed file) is read whole instead: the same table, or the same error, as ever."""
        try:
            fs, path = storage.url_to_fs(url, storage_options)
        except ValueError as exc:
            raise ManifestError(f"Cannot read manifest {url!r}: {exc}") from exc
        try:
            if fs.isdir(path):
                raise ManifestError(f"Cannot read manifest {url!r}: it is a folder; pass a .csv or .parquet file")
            with fs.open(path, "rb") as handle:
                head = handle.read(4)
        except ManifestError:
            raise
        except Exception as exc:  # object-store clients raise their own types (botocore: NoCredentialsError, ...)
            raise _read_error(exc, url) from None
        lowered = url.lower().split("?", 1)[0]
        parquet = lowered.endswith((".parquet", ".pq")) or head == b"PAR1"
        if parquet or lowered.endswith((".csv", ".tsv", ".txt")):
            try:
                return StreamedManifest(fs, path, url, parquet, "\t" if lowered.endswith(".tsv") else ",")
            except _ReadWhole:
                pass
        try:
            data = fs.cat_file(path)
        except Exception as exc:
            raise _read_error(exc, url) from None
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
    def tasks(self) -> TaskList:
        """Every task, held in memory (for apps and small runs; a run reads `batches`)."""
        return self._tasks

    @property
    def passthrough(self) -> pa.Table:
        """`video_id` plus every column the manifest carries beyond `uri` (held in memory, as `tasks`)."""
        return self._table

    @property
    def column_names(self) -> list[str]:
        return self._table.column_names

    @property
    def has_labels(self) -> bool:
        return "label" in self.column_names

    def batches(self) -> Iterator[ManifestBatch]:
        """The manifest in order, `MAP_ROWS` rows at a time."""
        for start in range(0, len(self), MAP_ROWS):
            yield ManifestBatch(start, self.tasks[start:start + MAP_ROWS], self._table.slice(start, MAP_ROWS))

    def key_hash_chunks(self, which: int = 0) -> Iterator[np.ndarray]:
        """`key_hashes` of every task's output key, in order, a batch at a time."""
        yield from self.tasks.key_hash_chunks(which)

    def passthrough_slices(self, rows: int) -> Iterator[pa.Table]:
        """The passthrough columns in order, `rows` rows at a time (the last slice may be shorter)."""
        held: list[pa.Table] = []
        count = 0
        for batch in self.batches():
            table = batch.passthrough
            while table.num_rows:
                take = min(rows - count, table.num_rows)
                held.append(table.slice(0, take))
                count += take
                table = table.slice(take)
                if count == rows:
                    yield pa.concat_tables(held).combine_chunks()
                    held, count = [], 0
        if held:
            yield pa.concat_tables(held).combine_chunks()

    def first_ids(self, mask: np.ndarray, count: int = 3) -> list[str]:
        """The video ids of the first `count` rows whose `mask` is true."""
        found: list[str] = []
        for batch in self.batches():
            part = mask[batch.start:batch.start + len(batch.tasks)]
            if part.any():
                found += batch.tasks.column("video_id").filter(pa.array(part)).slice(0, count - len(found)).to_pylist()
            if len(found) >= count:
                break
        return found


class _ReadWhole(Exception):
    """The streamed pass met what only the whole-file read decides (see `Manifest.from_path`)."""


class StreamedManifest(Manifest):
    """A manifest file read a batch at a time (CSV blocks, Parquet record batches), never held whole.

    Why: at 10^7 videos a manifest held on the driver costs gigabytes (its CSV parse alone about 160 bytes a
    row). Opening it validates every row in one pass, holding 8 bytes a row while it does (the id hashes that
    find a duplicate id); after that only its row count and column names are kept, and `batches` reads it again.
    `tasks` and `passthrough` read it whole, for apps and small runs.
    """

    def __init__(self, fs, path: str, url: str, parquet: bool, delimiter: str) -> None:
        self.source = url
        self.base_dir = storage.parent(url)
        self._fs, self._path, self._parquet, self._delimiter = fs, path, parquet, delimiter
        self._whole: tuple[pa.Table, TaskList] | None = None
        self._rows, self._names = self._check()

    @property
    def file(self) -> dict[str, Any]:
        """Where the file is and how it reads, for a reader elsewhere (the Ray engine's workers): `fs` (fsspec),
        `path`, `parquet`, `delimiter` and `columns` (the file's own column names)."""
        return {"fs": self._fs, "path": self._path, "parquet": self._parquet, "delimiter": self._delimiter,
                "columns": list(self._names)}

    def _tables(self) -> Iterator[pa.Table]:
        with self._fs.open(self._path, "rb") as handle:
            if self._parquet:
                batches = pq.ParquetFile(handle).iter_batches(batch_size=MAP_ROWS)
            else:
                batches = pacsv.open_csv(handle, read_options=pacsv.ReadOptions(use_threads=False),
                                         parse_options=pacsv.ParseOptions(delimiter=self._delimiter),
                                         convert_options=_CONVERT)
            for batch in batches:
                yield pa.Table.from_batches([batch])

    def _check(self) -> tuple[int, list[str]]:
        """Validate every row (what `_validate` checks); `_ReadWhole` for anything the whole read must decide."""
        names, rows, hashes = None, 0, []
        try:
            for table in self._tables():
                if names is None:
                    names = table.column_names
                    _check_names(names, self.source)
                if any(pa.types.is_binary(column.type) for column in table.columns):
                    raise _ReadWhole()
                ids, clean, _, blank = _id_and_uri(table, self.source)
                if blank:
                    raise _ReadWhole()
                hashes.append(key_hashes(ids))
                rows += table.num_rows
        except (pa.ArrowException, OSError, ValueError, ManifestError):
            raise _ReadWhole() from None
        if not rows:
            raise _ReadWhole()
        hashes = np.concatenate(hashes)
        hashes.sort()
        if (hashes[1:] == hashes[:-1]).any():  # maybe a duplicate id: the whole read says which row
            raise _ReadWhole()
        _warn_lookalikes(names, self.source)
        return rows, names

    def __len__(self) -> int:
        return self._rows

    @property
    def column_names(self) -> list[str]:
        return list(self._names) if "video_id" in self._names else ["video_id", *self._names]

    def batches(self) -> Iterator[ManifestBatch]:
        start = 0
        for table in self._tables():
            passthrough, tasks = _validate_batch(table, self.source, self.base_dir, start)
            yield ManifestBatch(start, tasks, passthrough)
            start += table.num_rows
        if start != self._rows:
            raise ManifestError(f"Manifest {self.source!r} changed while it was read ({self._rows} rows, then "
                                f"{start}); leave it alone during a run")

    def key_hash_chunks(self, which: int = 0) -> Iterator[np.ndarray]:
        for batch in self.batches():
            yield key_hashes(batch.tasks.keys(), which)

    def _load(self) -> tuple[pa.Table, TaskList]:
        if self._whole is None:
            batches = list(self.batches())
            passthrough = pa.concat_tables([b.passthrough for b in batches]).combine_chunks()
            uris = pa.concat_arrays([b.tasks.column("uri") for b in batches])
            self._whole = passthrough, TaskList({"video_id": passthrough.column("video_id").combine_chunks(),
                                                 "uri": uris}, base_dir=self.base_dir)
        return self._whole

    @property
    def tasks(self) -> TaskList:
        return self._load()[1]

    @property
    def passthrough(self) -> pa.Table:
        return self._load()[0]


def _read_error(exc: BaseException, url: str) -> ManifestError:
    if storage.is_missing_credentials(exc):
        return ManifestError(f"Cannot read the manifest: {storage.credentials_hint('manifest', url)}")
    if isinstance(exc, FileNotFoundError):
        return ManifestError(f"Cannot read manifest {url!r}: no such file")
    if isinstance(exc, PermissionError):
        return ManifestError(f"Cannot read manifest {url!r}: permission denied ({exc})")
    return ManifestError(f"Cannot read manifest {url!r}: {storage.describe_failure(exc)}")


_CONVERT = pacsv.ConvertOptions(column_types={"uri": pa.string(), "video_id": pa.string()}, strings_can_be_null=True)


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
    delimiter = "\t" if lowered.endswith(".tsv") else ","

    def read(block: int | None) -> pa.Table:  # one thread: each of the reader's threads keeps blocks of its own
        options = pacsv.ReadOptions(use_threads=False, **({"block_size": block} if block else {}))
        return pacsv.read_csv(io.BytesIO(data), read_options=options,
                              parse_options=pacsv.ParseOptions(delimiter=delimiter), convert_options=_CONVERT)

    try:
        try:
            table = read(None)
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc):
                raise
            # a row longer than the reader's block (1 MB; a cell of captions or metadata): the whole file as
            # one block (it is in memory already)
            table = read(min(len(data) + 1, 2**31 - 1))
    except pa.ArrowException as exc:
        _check_utf8(data, url)
        raise ManifestError(f"Cannot read manifest {url!r}: malformed CSV ({exc})") from None
    if any(pa.types.is_binary(column.type) for column in table.columns):  # Arrow's reading of non-UTF-8 text
        _check_utf8(data, url)
    return table


def _check_utf8(data: bytes, url: str) -> None:
    """Say where a manifest is not UTF-8. Only when Arrow found a problem: decoding a whole manifest to find a
    bad byte costs a copy of it."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        line = data[: bad.start].count(b"\n") + 1
        raise ManifestError(
            f"Cannot read manifest {url!r}: not UTF-8 text (invalid byte at line {line}); save it as UTF-8"
        ) from None


def _check_names(names: Sequence[str], source: str) -> None:
    if "uri" not in names:
        raise ManifestError(f"Manifest {source!r} has no 'uri' column (columns: {names}); add one with each video's path or URL")
    clash = [c for c in names if c in RESERVED_COLUMNS]
    if clash:
        raise ManifestError(
            f"Manifest {source!r}: column(s) {clash} would collide with output columns of the summary "
            f"(vidbatch fills {list(RESERVED_COLUMNS)}); rename them"
        )


def _id_and_uri(table: pa.Table, source: str) -> tuple[pa.Array, pa.Array, pa.Array, bool]:
    """The ids (derived where the manifest has none), the trimmed and the written uris, and whether a uri or an
    id is blank."""
    names = table.column_names
    uri_column = _text_column(table, "uri", source)
    clean = pc.utf8_trim_whitespace(uri_column)
    if "video_id" in names:
        ids_column = _text_column(table, "video_id", source)
    else:
        ids_column = _derived_ids(clean)
    blank_uri = pc.any(pc.fill_null(pc.equal(clean, ""), True)).as_py()
    blank_id = "video_id" in names and pc.any(pc.fill_null(pc.equal(pc.utf8_trim_whitespace(ids_column), ""), True)).as_py()
    if len(clean) and pc.all(pc.equal(clean, uri_column)).as_py():
        clean = uri_column  # the usual case: one copy of the uris
    return ids_column, clean, uri_column, bool(blank_uri or blank_id)


def _validate_batch(table: pa.Table, source: str, base_dir: str, start: int = 0,
                    checked: tuple[pa.Array, pa.Array] | None = None) -> tuple[pa.Table, TaskList]:
    """The passthrough columns and the tasks of rows already validated (`start`: the first one's row;
    `checked`: their ids and trimmed uris, when already made)."""
    ids_column, clean = checked if checked is not None else _id_and_uri(table, source)[:2]
    tasks = TaskList({"video_id": ids_column, "uri": clean}, base_dir=base_dir, offset=start)
    passthrough = table.drop_columns([c for c in ("video_id",) if c in table.column_names])
    passthrough = passthrough.add_column(0, "video_id", ids_column)
    return passthrough, tasks


def _validate(table: pa.Table, source: str, base_dir: str) -> tuple[pa.Table, TaskList]:
    names = table.column_names
    _check_names(names, source)
    if table.num_rows == 0:
        raise ManifestError(f"Manifest {source!r} is empty: it has a header but no rows")

    _warn_lookalikes(names, source)
    # checked on columns; a manifest that fails is walked row by row, only to say where
    ids_column, clean, uri_column, blank = _id_and_uri(table, source)
    if blank or _may_repeat(ids_column):
        _first_bad_row(uri_column.to_pylist(), ids_column.to_pylist(), "video_id" in names, source)
    return _validate_batch(table, source, base_dir, checked=(ids_column, clean))


def _may_repeat(ids: pa.Array) -> bool:
    """Whether two ids may be equal: their 64-bit hashes, made `MAP_ROWS` at a time, are compared (8 bytes a
    row, where a hash table of the strings costs about 150 at a manifest's peak). A repeat is then looked for
    exactly (`_first_bad_row`), so a hash collision costs a walk, never a false error."""
    if len(ids) < 2:
        return False
    hashes = np.concatenate([key_hashes(ids.slice(start, MAP_ROWS)) for start in range(0, len(ids), MAP_ROWS)])
    hashes.sort()
    return bool((hashes[1:] == hashes[:-1]).any())


def _first_bad_row(uris: list, ids: list, has_ids: bool, source: str) -> None:
    """Raise the error of the manifest's first bad row (a blank uri or id, a duplicate id)."""
    seen: dict[str, int] = {}
    for row, (uri, video_id) in enumerate(zip(uris, ids)):
        if uri is None or not uri.strip():
            raise ManifestError(f"Manifest {source!r}, row {row + 1}, column 'uri': blank; every row needs a video path or URL")
        if has_ids and (video_id is None or not video_id.strip()):
            raise ManifestError(f"Manifest {source!r}, row {row + 1}, column 'video_id': blank; fill it or drop the column to derive ids")
        if video_id in seen:
            raise ManifestError(
                f"Manifest {source!r}, row {row + 1}, column 'video_id': duplicate {video_id!r} "
                f"(also row {seen[video_id] + 1}); ids must be unique"
            )
        seen[video_id] = row


def _derived_ids(uris: pa.Array) -> pa.Array:
    """`derive_video_id` of each uri (a blank one gets None: it is reported as blank)."""
    return _mapped(uris, lambda u: derive_video_id(u.strip()) if u is not None and u.strip() else None)


def _mapped(values: pa.Array, function) -> pa.Array:
    """`function` of each string, as a string array, `MAP_ROWS` at a time (no list of every value at once)."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if not len(values):
        return pa.array([], pa.string())
    return pa.concat_arrays([pa.array([function(v) for v in values.slice(start, MAP_ROWS).to_pylist()], pa.string())
                             for start in range(0, len(values), MAP_ROWS)])


def _warn_lookalikes(names: Sequence[str], source: str) -> None:
    """A column that looks like a misspelt `video_id` (`vidoe_id`, `VideoID`) is said once: without it, ids are
    derived from the uris, and the user's ids never reach the outputs."""
    if "video_id" in names:
        return
    folded = {name: re.sub(r"[^a-z0-9]", "", name.lower()) for name in names}
    lookalikes = [name for name, fold in folded.items()
                  if fold == "videoid" or difflib.SequenceMatcher(None, fold, "videoid").ratio() >= 0.8]
    if lookalikes:
        log.warning(f"manifest {source!r} has no 'video_id' column but has {lookalikes[0]!r}: ids are derived from "
                    f"the uris; rename it to video_id if it holds the ids")


def _text_column(table: pa.Table, name: str, source: str) -> pa.Array:
    """A manifest column as one string array (integer ids as their text), or a clear error."""
    column = table.column(name).combine_chunks()
    if pa.types.is_string(column.type):
        return column
    if pa.types.is_large_string(column.type) or pa.types.is_null(column.type):
        return column.cast(pa.string())
    if pa.types.is_integer(column.type) and name == "video_id":
        return column.cast(pa.string())
    raise ManifestError(f"Manifest {source!r}, column {name!r}: expected text, found {column.type}")
