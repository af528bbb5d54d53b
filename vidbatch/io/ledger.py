"""The ledger: a run's commit records read into Arrow columns, and the latest commit of each video.

Resume and the end of a run read every commit record. Parsed into Python
dicts, an entry costs about 3.3 KB on the driver (33 GB for 10^7 videos).
Here records are fetched 64 at a time and parsed natively (`pyarrow.json`,
with an explicit schema) into columns: 405 bytes a video of live data, and at
100,000 videos a 1.9 KB a video peak and 0.9 s, against 3.3 KB and 2.1 s.

Replaying the records in commit order decides each video's entry: a whole
video's entry replaces what came before; a video cut into time ranges gets an
entry when the last missing range of one decode commits (`io.ranges.merge`,
on the few records that hold ranges, read as dicts), and a range committed
twice keeps its latest copy. The entries whose frames rows lost to a later
commit are the ledger's `owners` rows with `live` false: `RunOutput.finalize`
removes those rows from their shards.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from vidbatch.io import ranges
from vidbatch.io.manifest import KeyIndex, key_hashes, sorted_has
from vidbatch.io.schema import SEGMENTS_SCHEMA, SHOTS_SCHEMA, SUMMARY_SCHEMA

ROW_BITS = 20
"""An entry's `order` is (record number << ROW_BITS) | its place in the record: unique, and later is larger."""
ENTRY_FIELDS = [f for f in SUMMARY_SCHEMA if f.name != "uri"]
ENTRIES_SCHEMA = pa.schema([("key", pa.string()), ("order", pa.int64()), *ENTRY_FIELDS, ("merged_from", pa.string())])
OWNERS_SCHEMA = pa.schema([("order", pa.int64()), ("record", pa.int64()), ("video_id", pa.string()),
                           ("status", pa.string()), ("first_index", pa.int64()),
                           ("last_index", pa.int64()), ("items", pa.int64())])
"""Every entry that wrote rows into its record's shards: an ok video, a range (its own frame_index span)."""
SEGMENT_ROWS = SEGMENTS_SCHEMA.append(pa.field("order", pa.int64()))
SHOT_ROWS = SHOTS_SCHEMA.append(pa.field("order", pa.int64()))
RECORD_FILES = ("batch", "frames_file", "thumbnails_file", "embeddings_file")


@dataclass
class Ledger:
    videos: pa.Table
    """The winning entry of each video (`ENTRIES_SCHEMA`), one row per key."""
    segments: pa.Table
    """The winning entries' segments, with their entry's `order`."""
    shots: pa.Table
    owners: pa.Table
    """`OWNERS_SCHEMA` plus `live` (whether the entry's rows are the video's current rows): stale entries,
    ranges, and the live entries that share a shard with one of their video (`Piece.owners`)."""
    shards: pa.Table
    """`SHARD_ROWS`: which records' frames shards hold each live entry's rows (the frames index)."""
    records: list[dict[str, Any]] = field(default_factory=list)
    """Per record, in commit order: its batch id and the shard files it names."""
    fresh: list[dict[str, Any]] = field(default_factory=list)
    """Merged entries of split videos that no record holds yet (with their segments, shots, embedding)."""

    def __len__(self) -> int:
        return self.videos.num_rows

    def column_for(self, keys: Sequence[str] | pa.Array, name: str) -> list:
        """`name` of each of `keys`' entries, None where a key has none, as Python values (for a few keys)."""
        return self.columns_for(keys, [name]).column(name).to_pylist()

    def columns_for(self, keys: Sequence[str] | pa.Array, names: Sequence[str]) -> pa.Table:
        """`names` of each of `keys`' entries, null where a key has none: one vectorised lookup, kept in Arrow (a
        Python value per video would cost the driver about 60 bytes a video for each column)."""
        keys = keys if isinstance(keys, (pa.Array, pa.ChunkedArray)) else pa.array(list(keys), pa.string())
        where = pc.index_in(keys, self.videos.column("key"))
        return self.videos.select(list(names)).take(where)

    def entries(self) -> dict[str, dict[str, Any]]:
        """Every video's entry as a dict, by key: for small runs and tests (the pipeline stays on columns)."""
        return {row["key"]: row for row in self.videos.drop_columns(["order"]).to_pylist()}


def _record_schema() -> pa.Schema:
    """What the ledger reads of a commit record (other fields, such as a range's sums, are skipped)."""
    entry = pa.struct([*ENTRIES_SCHEMA.remove(ENTRIES_SCHEMA.get_field_index("order")),
                       ("segments", pa.list_(pa.struct(list(SEGMENTS_SCHEMA)))),
                       ("shots_table", pa.list_(pa.struct(list(SHOTS_SCHEMA))))])
    return pa.schema([("format", pa.string()), *[(name, pa.string()) for name in RECORD_FILES],
                      ("videos", pa.list_(entry))])


RECORD_SCHEMA = _record_schema()
_MIN_BLOCK = 1 << 20
"""The JSON reader's block (its default, 1 MB); a record is one line, and a line longer than the block does not
parse, so each read's block is at least its longest record (`--model-top-k 600` or a video of thousands of
segments makes records of many MB)."""
_PARSE = pajson.ParseOptions(explicit_schema=RECORD_SCHEMA, unexpected_field_behavior="ignore")


def _parse(raw: Sequence[bytes], commit_format: str, parse: pajson.ParseOptions = _PARSE
           ) -> tuple[pa.Table, list[bytes]]:
    """Records (one JSON object each) into one table row each, natively: no Python object per video. A record
    that does not parse is left out (its videos are simply redone), as is one of another format."""
    def native(parts):
        # one thread (the reader's threads would each keep freed memory: measured), a block that holds a record
        block = max(_MIN_BLOCK, max((len(part) for part in parts), default=0) + 1)
        return pajson.read_json(io.BytesIO(b"\n".join(parts)), parse_options=parse,
                                read_options=pajson.ReadOptions(use_threads=False, block_size=block))

    try:
        table, kept = native(raw), list(raw)
    except (pa.ArrowInvalid, ValueError):
        tables, kept = [], []
        for one in raw:
            try:
                tables.append(native([one]))
                kept.append(one)
            except (pa.ArrowInvalid, ValueError) as exc:
                _say_unreadable(one, exc)
                continue
        table = pa.concat_tables(tables) if tables else parse.explicit_schema.empty_table()
    mine = pc.fill_null(pc.equal(table.column("format"), commit_format), False).to_pylist()
    return table.filter(pa.array(mine, pa.bool_())), [r for r, ok in zip(kept, mine) if ok]


_SAID: set[str] = set()


def _say_unreadable(raw: bytes, exc: Exception) -> None:
    """A commit record is written whole (a temporary file, then moved), so one that does not parse is news: its
    videos are redone, or failed as lost at the end of a run, and the reason must not stay silent (a record
    longer than the reader's block was once refused this way). Said once per reason per process."""
    reason = str(exc).splitlines()[0][:200]
    if reason not in _SAID:
        _SAID.add(reason)
        logging.getLogger("vidbatch").warning("a commit record of %d bytes could not be read (%s); its videos are "
                                              "redone, or failed as lost at the end of the run", len(raw), reason)


@dataclass
class Piece:
    """What the second pass over the commit records yields for one chunk of them (and, last, for the videos
    merged from their ranges): the winning entries with their segments and shots, and what the end of a run
    needs to know of the others. Nothing in it outlives the chunk unless its reader keeps it."""

    entries: pa.Table
    """`ENTRIES_SCHEMA`: the chunk's winning entries."""
    segments: pa.Table
    shots: pa.Table
    owners: pa.Table
    """`OWNERS_SCHEMA` plus `live`: the entries whose rows finalize removes from their shards (stale: ok, but
    lost to a later commit), every range, and the live entries of a video in a record with a stale entry or a
    range of that video (whose rows stay)."""
    shards: pa.Table
    """`SHARD_ROWS`: (video_id, record) of each live entry whose rows are in that record's frames shard."""
    records: list[dict[str, Any]]
    """The files each of the chunk's records names, in commit order."""
    fresh: list[dict[str, Any]] = field(default_factory=list)
    """Merged entries of split videos that no record holds yet (the last piece only)."""


SHARD_ROWS = pa.schema([("video_id", pa.string()), ("record", pa.int64())])


def read(chunks: Callable[[], Iterable[Sequence[bytes]]] | Sequence[Sequence[bytes]], commit_format: str) -> Ledger:
    """Replay commit records (raw JSON, oldest first, in chunks) into a `Ledger`, held whole (the end of a run
    streams `pieces` instead). `chunks`: a function that fetches them afresh (or a list of them): they are
    read twice, first each entry's key hash and order alone (`winning_orders`), then the entries (`pieces`)."""
    if not callable(chunks) and iter(chunks) is chunks:  # a one-shot iterator would be empty the second time
        chunks = list(chunks)
    fetch = chunks if callable(chunks) else (lambda: chunks)
    entries, segments, shots, owners, shards, records, fresh = [], [], [], [], [], [], []
    winners = winning_orders(fetch(), commit_format)
    for piece in pieces(fetch(), commit_format, lambda keys, orders: sorted_has(winners, orders)):
        entries.append(piece.entries)
        segments.append(piece.segments)
        shots.append(piece.shots)
        owners.append(piece.owners)
        shards.append(piece.shards)
        records.extend(piece.records)
        fresh.extend(piece.fresh)
    return Ledger(videos=_concat(entries, ENTRIES_SCHEMA), segments=_concat(segments, SEGMENT_ROWS),
                  shots=_concat(shots, SHOT_ROWS), owners=_concat(owners, OWNERS_SCHEMA.append(LIVE)),
                  shards=_concat(shards, SHARD_ROWS), records=records, fresh=fresh)


LIVE = pa.field("live", pa.bool_())


def pieces(chunks: Iterable[Sequence[bytes]], commit_format: str,
           is_winner: Callable[[pa.Array, np.ndarray], np.ndarray]) -> Iterator[Piece]:
    """The second pass: per chunk of records, the entries that win (`is_winner` of their keys and orders: the
    first pass's answer), copied out of the chunk's parse before the next is read, so a video committed twice
    never has both entries held.
    Whole-video entries are parsed straight into Arrow columns; the few records that hold ranges of a long
    video are also read as dicts, since their sums merge in Python (`io.ranges.merge`)."""
    parts: dict[str, dict[str, dict[int, tuple[int, dict[str, Any]]]]] = {}  # see _replay_range
    merged_rows: list[dict[str, Any]] = []
    range_owners: list[dict[str, Any]] = []
    merged_sets: list[tuple[str, str]] = []  # (key, attempt) of each winning entry merged from ranges
    number = 0
    for raw in chunks:
        table, raw = _parse(raw, commit_format)
        if not table.num_rows:
            continue
        numbers = np.arange(number, number + table.num_rows, dtype=np.int64)
        number += table.num_rows
        files = [{name: table.column(name)[i].as_py() for name in RECORD_FILES} for i in range(table.num_rows)]
        videos = table.column("videos").combine_chunks()
        flat = pc.list_flatten(videos)
        parent = pc.list_parent_indices(videos).to_numpy()
        offsets = videos.offsets.to_numpy()
        order = (numbers[parent] << ROW_BITS) | (np.arange(len(parent)) - offsets[parent])
        columns = {name: flat.field(name) for name in RECORD_SCHEMA.field("videos").type.value_type.names}
        status = columns["status"]
        partial = pc.fill_null(pc.equal(status, ranges.PARTIAL), False).to_numpy(zero_copy_only=False)
        ok = pc.fill_null(pc.equal(status, "ok"), False).to_numpy(zero_copy_only=False)
        win = ~partial & is_winner(columns["key"], order)
        entry_table = pa.table({"key": columns["key"], "order": pa.array(order, pa.int64()),
                                **{f.name: columns[f.name] for f in ENTRY_FIELDS},
                                "merged_from": columns["merged_from"]})
        entries = entry_table.filter(pa.array(win))  # a copy: the parse is not kept alive by it
        nested_rows = []
        for name, rows in (("segments", SEGMENT_ROWS), ("shots_table", SHOT_ROWS)):
            nested = columns[name].filter(pa.array(win))  # a null list has no rows and no parent index
            inner = pc.list_flatten(nested)
            owner = pc.list_parent_indices(nested).to_numpy()
            nested_rows.append(pa.table({**{f.name: inner.field(f.name) for f in rows if f.name != "order"},
                                         "order": pa.array(order[win][owner], pa.int64())}))
        # whose rows finalize removes (stale entries), and the live entries of the same video in the same record
        # (a shard keeps their rows): a few per chunk, not every entry of the records it rewrites
        stale = ~partial & ok & ~win
        mine = stale | (~partial & ok & _sharing(columns["video_id"], parent, stale | partial, win & ok))
        held = entry_table.filter(pa.array(mine))
        owners = pa.table({
            "order": held.column("order"), "record": pa.array(held.column("order").to_numpy() >> ROW_BITS, pa.int64()),
            "video_id": held.column("video_id"), "status": held.column("status"),
            "first_index": pa.nulls(held.num_rows, pa.int64()), "last_index": pa.nulls(held.num_rows, pa.int64()),
            "items": pa.nulls(held.num_rows, pa.int64()), "live": pa.array(win[mine])})
        shards = pa.table({"video_id": columns["video_id"].filter(pa.array(win & ok)),
                           "record": pa.array(order[win & ok] >> ROW_BITS, pa.int64())})
        merged = entries.filter(pc.invert(pc.is_null(entries.column("merged_from"))))
        merged_sets.extend(zip(merged.column("key").to_pylist(), merged.column("merged_from").to_pylist()))
        del table, videos, flat, columns, entry_table, held, merged
        for row in sorted(set(parent[partial].tolist())):  # records with ranges: read as dicts, replayed in order
            for entry_order, entry in _range_entries(raw[row], int(numbers[row])):
                range_owners.append({**entry, "order": entry_order, "record": int(numbers[row])})
                whole = _replay_range(parts, entry_order, entry)
                if whole is not None and is_winner(pa.array([entry["key"]], pa.string()), np.array([entry_order]))[0]:
                    merged_rows.append({**whole, "order": entry_order})
                    merged_sets.append((entry["key"], entry["attempt"]))
        yield Piece(entries, *nested_rows, owners, shards, files)
    yield _merged_piece(parts, merged_rows, range_owners, merged_sets)


def _sharing(video_ids: pa.Array, parent: np.ndarray, marked: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Which `candidates` entries share their record and video id with a `marked` one."""
    found = np.zeros(len(parent), bool)
    if not marked.any():
        return found
    ids = video_ids.filter(pa.array(marked))
    maybe = np.flatnonzero(candidates & pc.fill_null(pc.is_in(video_ids, value_set=ids), False).to_numpy(
        zero_copy_only=False))
    if len(maybe):
        pairs = set(zip(parent[marked].tolist(), ids.to_pylist()))
        found[maybe] = [(int(parent[i]), v) in pairs
                        for i, v in zip(maybe, video_ids.take(pa.array(maybe)).to_pylist())]
    return found


def _merged_piece(parts: dict, merged_rows: list[dict[str, Any]], range_owners: list[dict[str, Any]],
                  merged_sets: list[tuple[str, str]]) -> Piece:
    """The last piece: the entries merged from ranges that win, and every range's owner row (live when its
    decode's set is the one its video's winning entry was merged from)."""
    live = {o for key, attempt in merged_sets for o, _ in parts.get(key, {}).get(attempt, {}).values()}
    owners = pa.Table.from_pylist(range_owners, OWNERS_SCHEMA)
    owners = owners.append_column(LIVE, pa.array([o["order"] in live for o in range_owners], pa.bool_()))
    kept = owners.filter(owners.column("live"))
    shards = pa.table({"video_id": kept.column("video_id"), "record": kept.column("record")})
    fresh = [{k: v for k, v in row.items() if k != "order"} for row in merged_rows]
    return Piece(entries=pa.Table.from_pylist(merged_rows, ENTRIES_SCHEMA),
                 segments=pa.Table.from_pylist(
                     [{**s, "order": e["order"]} for e in merged_rows for s in e["segments"]], SEGMENT_ROWS),
                 shots=pa.Table.from_pylist(
                     [{**s, "order": e["order"]} for e in merged_rows for s in e["shots_table"]], SHOT_ROWS),
                 owners=owners, shards=shards, records=[], fresh=fresh)


def winning_orders(chunks: Iterable[Sequence[bytes]], commit_format: str) -> np.ndarray:
    """The first pass: the order of each video's latest entry, sorted (on 128-bit key hashes)."""
    _, order, _ = _latest_by_hash(_status_entries(chunks, commit_format))
    return np.sort(order)


@dataclass
class Winners:
    """The first pass placed by a manifest (`winners_by_position`)."""

    at: np.ndarray
    """Per manifest position, the order of its video's latest entry; -1 where it has none."""
    others: np.ndarray
    """The latest entries' orders of videos the manifest does not hold (an earlier manifest's), sorted."""

    def test(self, index: KeyIndex) -> Callable[[pa.Array, np.ndarray], np.ndarray]:
        """Whether entries (their keys and orders) win: what `pieces` takes, with no sorted copy of every
        winning order."""
        def is_winner(keys: pa.Array, orders: np.ndarray) -> np.ndarray:
            position = index.positions(keys)
            placed = position >= 0
            win = sorted_has(self.others, orders)
            win[placed] = self.at[position[placed]] == orders[placed]
            return win

        return is_winner

    def missing(self) -> np.ndarray:
        """Whether each manifest position has no committed entry."""
        return self.at < 0


def winners_by_position(chunks: Iterable[Sequence[bytes]], commit_format: str, index: KeyIndex) -> Winners:
    """The first pass, each entry placed by the manifest's `index`: a video's latest entry is the largest
    order at its position (8 bytes a video, no sort of every entry). Entries of keys the manifest does not hold
    are resolved apart, on their hashes (`_latest_by_hash`): their rows are kept, not taken for stale."""
    at = np.full(len(index), -1, np.int64)

    def others():
        for key, order, ok in _status_entries(chunks, commit_format):
            position = index.positions(key)
            mine = position >= 0
            np.maximum.at(at, position[mine], order[mine])  # a later entry has a larger order
            if not mine.all():
                yield key.filter(pa.array(~mine)), order[~mine], ok[~mine]

    _, other, _ = _latest_by_hash(others())
    return Winners(at, np.sort(other))


def _latest_by_hash(entries: Iterable[tuple[pa.Array, np.ndarray, np.ndarray]]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each video's latest entry of `entries` (`_status_entries`) as (the 64-bit hash of its key, its order,
    whether it is ok), sorted by hash. Entries are told apart by a 128-bit hash of their keys (two independent
    64-bit ones: 25 bytes an entry where key strings cost 50-70), so two videos' entries are never taken for
    one."""
    first_hashes, second_hashes, orders, oks = [], [], [], []
    for key, order, ok in entries:
        first_hashes.append(key_hashes(key))
        second_hashes.append(key_hashes(key, which=1))
        orders.append(order)
        oks.append(ok)
    if not orders:
        return np.empty(0, np.uint64), np.empty(0, np.int64), np.empty(0, bool)
    hashed, second = np.concatenate(first_hashes), np.concatenate(second_hashes)
    order, ok = np.concatenate(orders), np.concatenate(oks)
    del first_hashes, second_hashes, orders, oks
    rank = np.lexsort((-order, second, hashed))  # by key (its 128-bit hash), the latest entry first
    hashed, second, order, ok = hashed[rank], second[rank], order[rank], ok[rank]
    del rank
    first = np.ones(len(hashed), bool)
    first[1:] = (hashed[1:] != hashed[:-1]) | (second[1:] != second[:-1])
    return hashed[first], order[first], ok[first]


def _range_entries(raw: bytes, number: int) -> Iterable[tuple[int, dict[str, Any]]]:
    """The range entries of record number `number` (raw JSON), with their orders."""
    for place, entry in enumerate(json.loads(raw)["videos"]):
        if entry.get("status") == ranges.PARTIAL:
            yield (number << ROW_BITS) | place, entry


def _replay_range(parts: dict, order: int, entry: dict[str, Any]) -> dict[str, Any] | None:
    """Add a range entry to `parts` (key -> attempt -> range -> (order, entry)); the video's merged entry when
    it completes its attempt's set, else None. A range committed twice keeps its latest copy."""
    attempt = parts.setdefault(entry["key"], {}).setdefault(entry["attempt"], {})
    attempt[entry["range"]] = (order, entry)
    if ranges.complete({i: e for i, (_, e) in attempt.items()}):
        return ranges.merge({i: e for i, (_, e) in attempt.items()})
    return None


STATUS_SCHEMA = pa.schema([("format", pa.string()),
                           ("videos", pa.list_(pa.struct([("key", pa.string()), ("status", pa.string())])))])
_PARSE_STATUS = pajson.ParseOptions(explicit_schema=STATUS_SCHEMA, unexpected_field_behavior="ignore")


def _status_entries(chunks: Iterable[Sequence[bytes]], commit_format: str
                    ) -> Iterator[tuple[pa.Array, np.ndarray, np.ndarray]]:
    """Per chunk of records, the key, order and ok of each whole-video entry, replayed as `read` replays them (a
    split video gets an entry once a whole set of one decode's ranges is in), but with no field, segment or shot."""
    parts: dict = {}
    number = 0
    for raw in chunks:
        table, raw = _parse(raw, commit_format, _PARSE_STATUS)
        if not table.num_rows:
            continue
        numbers = np.arange(number, number + table.num_rows, dtype=np.int64)
        number += table.num_rows
        videos = table.column("videos").combine_chunks()
        flat = pc.list_flatten(videos)
        parent = pc.list_parent_indices(videos).to_numpy()
        order = (numbers[parent] << ROW_BITS) | (np.arange(len(parent)) - videos.offsets.to_numpy()[parent])
        status = flat.field("status")
        partial = pc.fill_null(pc.equal(status, ranges.PARTIAL), False).to_numpy(zero_copy_only=False)
        yield (flat.field("key").filter(pa.array(~partial)), order[~partial],
               pc.fill_null(pc.equal(status, "ok"), False).to_numpy(zero_copy_only=False)[~partial])
        for row in sorted(set(parent[partial].tolist())):
            for entry_order, entry in _range_entries(raw[row], int(numbers[row])):
                merged = _replay_range(parts, entry_order, entry)
                if merged is not None:
                    yield (pa.array([entry["key"]], pa.string()), np.array([entry_order], np.int64),
                           np.array([merged["status"] == "ok"]))


def latest_status(chunks: Iterable[Sequence[bytes]], commit_format: str) -> pa.Table:
    """Each committed video's key and whether its latest entry is ok (`key`, `ok`): `read`'s answer without
    reading any entry's fields (for tests and small runs; resume uses `done_hashes`)."""
    keys, orders, oks = [], [], []
    for key, order, ok in _status_entries(chunks, commit_format):
        keys.append(key)
        orders.append(order)
        oks.append(ok)
    if not keys:
        return pa.table({"key": pa.array([], pa.string()), "ok": pa.array([], pa.bool_())})
    entries = pa.table({"key": pa.chunked_array(keys, pa.string()), "order": np.concatenate(orders),
                        "ok": np.concatenate(oks)})
    ranked = entries.take(pc.sort_indices(entries, [("key", "ascending"), ("order", "descending")]))
    key = ranked.column("key").combine_chunks()
    first = np.ones(len(key), bool)
    if len(key) > 1:
        first[1:] = pc.not_equal(key.slice(1), key.slice(0, len(key) - 1)).to_numpy(zero_copy_only=False)
    return ranked.select(["key", "ok"]).filter(pa.array(first))


def done_hashes(chunks: Iterable[Sequence[bytes]], commit_format: str) -> np.ndarray:
    """The 64-bit hashes (`manifest.key_hashes`) of the keys whose latest entry is ok, sorted: what resume skips
    (`_latest_by_hash`). Two of 10^7 keys share one with a probability of about 3e-6; the manifest's video
    with the other key would then be taken for done, and get a `lost` failed row at the end."""
    hashed, _, ok = _latest_by_hash(_status_entries(chunks, commit_format))
    return np.unique(hashed[ok])


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    tables = [t.select(schema.names).cast(schema) for t in tables]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def in_order(table: pa.Table, orders: pa.Array, within: str) -> pa.Table:
    """`table`'s rows (which carry their entry's `order`) sorted as `orders` lists the entries, then by `within`."""
    return table.take(order_of(table, orders, within)).drop_columns(["order"])


def order_of(table: pa.Table, orders: pa.Array, within: str) -> pa.Array:
    """The row indices that put `table` in `in_order`'s order: taken a slice at a time, the rows are written
    sorted without a second copy of the whole table."""
    position = pc.index_in(table.column("order"), orders)
    keys = pa.table({"_position": position, within: table.column(within)})
    return pc.sort_indices(keys, [("_position", "ascending"), (within, "ascending")])


def owned_rows(owners: Sequence[dict[str, Any]], video: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Which rows of a frames shard (its video_id and frame_index columns) belong to `owners`: all of an ok
    video's rows, a range's rows from its first to its last own frame_index."""
    mask = np.zeros(len(video), bool)
    for owner in owners:
        mine = video == owner["video_id"]
        if owner["status"] == ranges.PARTIAL:
            mine &= ((index >= owner["first_index"]) & (index <= owner["last_index"])) if owner["items"] else False
        mask |= mine
    return mask
