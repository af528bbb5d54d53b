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
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from vidbatch.io import ranges
from vidbatch.io.manifest import key_hashes
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
    """`OWNERS_SCHEMA` plus `live`: whether the entry's rows are the video's current rows."""
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
_READ = pajson.ReadOptions(use_threads=False)  # the reader's threads would each keep freed memory (measured)
_PARSE = pajson.ParseOptions(explicit_schema=RECORD_SCHEMA, unexpected_field_behavior="ignore")


def _parse(raw: Sequence[bytes], commit_format: str, parse: pajson.ParseOptions = _PARSE
           ) -> tuple[pa.Table, list[bytes]]:
    """Records (one JSON object each) into one table row each, natively: no Python object per video. A record
    that does not parse is left out (its videos are simply redone), as is one of another format."""
    def native(parts):
        return pajson.read_json(io.BytesIO(b"\n".join(parts)), read_options=_READ, parse_options=parse)

    try:
        table, kept = native(raw), list(raw)
    except (pa.ArrowInvalid, ValueError):
        tables, kept = [], []
        for one in raw:
            try:
                tables.append(native([one]))
                kept.append(one)
            except (pa.ArrowInvalid, ValueError):
                continue
        table = pa.concat_tables(tables) if tables else parse.explicit_schema.empty_table()
    mine = pc.fill_null(pc.equal(table.column("format"), commit_format), False).to_pylist()
    return table.filter(pa.array(mine, pa.bool_())), [r for r, ok in zip(kept, mine) if ok]


def read(chunks: Callable[[], Iterable[Sequence[bytes]]] | Sequence[Sequence[bytes]], commit_format: str) -> Ledger:
    """Replay commit records (raw JSON, oldest first, in chunks) into a `Ledger`. `chunks`: a function that
    fetches them afresh (or a list of them): they are read twice.

    First each entry's key hash and order alone (`_winning_orders`: 25 bytes an entry), then the entries again, and
    of each chunk only the winners' fields, segments and shots are copied out before the next is parsed: a
    video committed twice never has both entries held, nor a chunk's parse outlives it. Whole-video entries
    are parsed straight into Arrow columns; the few records that hold ranges of a long video are also read as
    dicts, since their sums merge in Python (`io.ranges.merge`).
    """
    if not callable(chunks) and iter(chunks) is chunks:  # a one-shot iterator would be empty the second time
        chunks = list(chunks)
    fetch = chunks if callable(chunks) else (lambda: chunks)
    winners = _winning_orders(fetch(), commit_format)
    entries, segments, shots, owners, files = [], [], [], [], []
    parts: dict[str, dict[str, dict[int, tuple[int, dict[str, Any]]]]] = {}  # see _replay_range
    merged_now: dict[int, dict[str, Any]] = {}
    merged_rows: list[dict[str, Any]] = []
    number = 0
    for raw in fetch():
        table, raw = _parse(raw, commit_format)
        if not table.num_rows:
            continue
        numbers = np.arange(number, number + table.num_rows, dtype=np.int64)
        number += table.num_rows
        files.extend({name: table.column(name)[i].as_py() for name in RECORD_FILES} for i in range(table.num_rows))
        videos = table.column("videos").combine_chunks()
        flat = pc.list_flatten(videos)
        parent = pc.list_parent_indices(videos).to_numpy()
        offsets = videos.offsets.to_numpy()
        order = (numbers[parent] << ROW_BITS) | (np.arange(len(parent)) - offsets[parent])
        columns = {name: flat.field(name) for name in RECORD_SCHEMA.field("videos").type.value_type.names}
        status = columns["status"]
        partial = pc.fill_null(pc.equal(status, ranges.PARTIAL), False).to_numpy(zero_copy_only=False)
        ok = pc.fill_null(pc.equal(status, "ok"), False).to_numpy(zero_copy_only=False)
        win = ~partial & sorted_has(winners, order)
        entry_table = pa.table({"key": columns["key"], "order": pa.array(order, pa.int64()),
                                **{f.name: columns[f.name] for f in ENTRY_FIELDS},
                                "merged_from": columns["merged_from"]})
        entries.append(entry_table.filter(pa.array(win)))  # a copy: the parse is not kept alive by it
        for name, rows, out in (("segments", SEGMENT_ROWS, segments), ("shots_table", SHOT_ROWS, shots)):
            nested = columns[name].filter(pa.array(win))  # a null list has no rows and no parent index
            inner = pc.list_flatten(nested)
            owner = pc.list_parent_indices(nested).to_numpy()
            out.append(pa.table({**{f.name: inner.field(f.name) for f in rows if f.name != "order"},
                                 "order": pa.array(order[win][owner], pa.int64())}))
        mine = entry_table.filter(pa.array(~partial & ok))  # every ok entry, winner or not: whose rows to keep
        owners.append(pa.table({
            "order": mine.column("order"), "record": pa.array(mine.column("order").to_numpy() >> ROW_BITS, pa.int64()),
            "video_id": mine.column("video_id"), "status": mine.column("status"),
            "first_index": pa.nulls(mine.num_rows, pa.int64()), "last_index": pa.nulls(mine.num_rows, pa.int64()),
            "items": pa.nulls(mine.num_rows, pa.int64())}))
        del table, videos, flat, columns, entry_table, mine
        for row in sorted(set(parent[partial].tolist())):  # records with ranges: read as dicts, replayed in order
            for entry_order, entry in _range_entries(raw[row], int(numbers[row])):
                owners.append(pa.Table.from_pylist([{**entry, "order": entry_order, "record": int(numbers[row])}],
                                                   OWNERS_SCHEMA))
                merged = _replay_range(parts, entry_order, entry)
                if merged is not None and sorted_has(winners, np.array([entry_order]))[0]:
                    merged_now[entry_order] = merged
                    merged_rows.append({**merged, "order": entry_order})
    if merged_rows:
        entries.append(pa.Table.from_pylist(merged_rows, ENTRIES_SCHEMA))
        segments.append(pa.Table.from_pylist(
            [{**s, "order": e["order"]} for e in merged_rows for s in e["segments"]], SEGMENT_ROWS))
        shots.append(pa.Table.from_pylist(
            [{**s, "order": e["order"]} for e in merged_rows for s in e["shots_table"]], SHOT_ROWS))
    videos = _concat(entries, ENTRIES_SCHEMA)
    del entries
    ranges_live = [o for key, attempt, _ in (_merged_winners(videos) if parts else ())
                   for o, _ in parts.get(key, {}).get(attempt, {}).values()]  # a split video's winning decode
    owner_table = _concat(owners, OWNERS_SCHEMA)
    live_orders = pa.array(np.concatenate([winners, np.asarray(ranges_live, np.int64)]), pa.int64())
    owner_table = owner_table.append_column("live", pc.is_in(owner_table.column("order"), live_orders))
    fresh = []
    if merged_now:
        merged = videos.filter(pc.is_in(videos.column("order"), pa.array(sorted(merged_now), pa.int64())))
        fresh = [dict(merged_now[o], key=k) for k, o in zip(merged.column("key").to_pylist(),
                                                            merged.column("order").to_pylist())]
    return Ledger(videos=videos, segments=_concat(segments, SEGMENT_ROWS), shots=_concat(shots, SHOT_ROWS),
                  owners=owner_table, records=files, fresh=fresh)


def _winning_orders(chunks: Iterable[Sequence[bytes]], commit_format: str) -> np.ndarray:
    """The order of each video's latest entry, sorted: `read`'s first pass (`_latest_by_hash`, on 128-bit key
    hashes)."""
    _, order, _ = _latest_by_hash(chunks, commit_format)
    return np.sort(order)


def _latest_by_hash(chunks: Iterable[Sequence[bytes]], commit_format: str
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each video's latest entry as (the 64-bit hash of its key, its order, whether it is ok), sorted by hash.
    Entries are told apart by a 128-bit hash of their keys (two independent 64-bit ones: 25 bytes an entry
    where key strings cost 50-70), so two videos' entries are never taken for one."""
    first_hashes, second_hashes, orders, oks = [], [], [], []
    for key, order, ok in _status_entries(chunks, commit_format):
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


def sorted_has(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Whether each of `values` is in `sorted_values` (binary search: no copy of either)."""
    if not len(sorted_values):
        return np.zeros(len(values), bool)
    where = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
    return sorted_values[where] == values


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
    hashed, _, ok = _latest_by_hash(chunks, commit_format)
    return np.unique(hashed[ok])


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    tables = [t.select(schema.names).cast(schema) for t in tables]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _merged_winners(videos: pa.Table):
    merged = videos.filter(pc.invert(pc.is_null(videos.column("merged_from"))))
    return zip(merged.column("key").to_pylist(), merged.column("merged_from").to_pylist(),
               merged.column("order").to_pylist())


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
