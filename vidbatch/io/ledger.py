"""The ledger: a run's commit records read into Arrow columns, and the latest commit of each video.

Resume and the end of a run read every commit record. Parsed into Python
dicts, an entry costs about 3.9 KB on the driver (39 GB for 10^7 videos); as
Arrow columns it costs a few hundred bytes, and the records are fetched and
parsed a few hundred at a time, so no more than that is ever held as JSON.

Replaying the records in commit order decides each video's entry: a whole
video's entry replaces what came before; a video cut into time ranges gets an
entry when the last missing range of one decode commits (`io.ranges.merge`),
and a range committed twice keeps its latest copy. The entries whose frames
rows lost to a later commit are the ledger's `owners` rows with `live` false:
`RunOutput.finalize` removes those rows from their shards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidbatch.io import ranges
from vidbatch.io.schema import SEGMENTS_SCHEMA, SHOTS_SCHEMA, SUMMARY_SCHEMA

ROW_BITS = 20
"""An entry's `order` is (record number << ROW_BITS) | its place in the record: unique, and later is larger."""
ENTRY_FIELDS = [f for f in SUMMARY_SCHEMA if f.name != "uri"]
ENTRIES_SCHEMA = pa.schema([("key", pa.string()), ("order", pa.int64()), *ENTRY_FIELDS, ("merged_from", pa.string())])
OWNERS_SCHEMA = pa.schema([("order", pa.int64()), ("record", pa.int64()), ("key", pa.string()),
                           ("video_id", pa.string()), ("status", pa.string()), ("first_index", pa.int64()),
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

    def column_for(self, keys: Sequence[str], name: str) -> list:
        """`name` of each of `keys`' entries, None where a key has none (one vectorised lookup)."""
        where = pc.index_in(pa.array(list(keys), pa.string()), self.videos.column("key"))
        return self.videos.column(name).take(where).to_pylist()

    def entries(self) -> dict[str, dict[str, Any]]:
        """Every video's entry as a dict, by key: for small runs and tests (the pipeline stays on columns)."""
        return {row["key"]: row for row in self.videos.drop_columns(["order"]).to_pylist()}


def read(records: Iterable[dict[str, Any]]) -> Ledger:
    """Replay commit records, oldest first, into a `Ledger`."""
    entries, segments, shots, owners, files = [], [], [], [], []
    parts: dict[str, dict[str, dict[int, tuple[int, dict[str, Any]]]]] = {}
    merged_now: dict[int, dict[str, Any]] = {}
    for number, record in enumerate(records):
        files.append({name: record.get(name) for name in RECORD_FILES})
        whole, owned = [], []
        for place, entry in enumerate(record["videos"]):
            order = (number << ROW_BITS) | place
            if entry.get("status") == ranges.PARTIAL:
                owned.append({**entry, "order": order, "record": number})
                attempt = parts.setdefault(entry["key"], {}).setdefault(entry["attempt"], {})
                attempt[entry["range"]] = (order, entry)
                if ranges.complete({i: e for i, (_, e) in attempt.items()}):
                    merged = ranges.merge({i: e for i, (_, e) in attempt.items()})
                    merged_now[order] = merged
                    whole.append({**merged, "order": order})
                continue
            whole.append({**entry, "order": order})
            if entry.get("status") == "ok":
                owned.append({"key": entry["key"], "video_id": entry["video_id"], "status": "ok", "order": order,
                              "record": number})
        entries.append(pa.Table.from_pylist(whole, ENTRIES_SCHEMA))
        segments.append(pa.Table.from_pylist(
            [{**s, "order": e["order"]} for e in whole for s in e.get("segments") or ()], SEGMENT_ROWS))
        shots.append(pa.Table.from_pylist(
            [{**s, "order": e["order"]} for e in whole for s in e.get("shots_table") or ()], SHOT_ROWS))
        owners.append(pa.Table.from_pylist(owned, OWNERS_SCHEMA))
    every = pa.concat_tables(entries) if entries else ENTRIES_SCHEMA.empty_table()
    winners = _latest(every)
    videos = every.filter(pc.is_in(every.column("order"), winners))
    live = set(winners.to_pylist())
    for key, attempt, order in _merged_winners(videos):  # a split video's rows are its winning decode's ranges
        live.update(o for o, _ in parts.get(key, {}).get(attempt, {}).values())
    owner_table = pa.concat_tables(owners) if owners else OWNERS_SCHEMA.empty_table()
    owner_table = owner_table.append_column("live", pc.is_in(owner_table.column("order"), pa.array(sorted(live), pa.int64())))
    fresh = [dict(merged_now[o], key=k) for k, o in zip(videos.column("key").to_pylist(),
                                                        videos.column("order").to_pylist()) if o in merged_now]
    return Ledger(
        videos=videos,
        segments=_of(pa.concat_tables(segments) if segments else SEGMENT_ROWS.empty_table(), winners),
        shots=_of(pa.concat_tables(shots) if shots else SHOT_ROWS.empty_table(), winners),
        owners=owner_table, records=files, fresh=fresh,
    )


def _latest(entries: pa.Table) -> pa.Array:
    """The order of each key's latest entry."""
    if not entries.num_rows:
        return pa.array([], pa.int64())
    return entries.group_by("key").aggregate([("order", "max")]).column("order_max").combine_chunks()


def _of(table: pa.Table, orders: pa.Array) -> pa.Table:
    return table.filter(pc.is_in(table.column("order"), orders))


def _merged_winners(videos: pa.Table):
    merged = videos.filter(pc.invert(pc.is_null(videos.column("merged_from"))))
    return zip(merged.column("key").to_pylist(), merged.column("merged_from").to_pylist(),
               merged.column("order").to_pylist())


def in_order(table: pa.Table, orders: pa.Array, within: str) -> pa.Table:
    """`table`'s rows (which carry their entry's `order`) sorted as `orders` lists the entries, then by `within`."""
    position = pc.index_in(table.column("order"), orders)
    ranked = table.append_column("_position", position)
    return ranked.sort_by([("_position", "ascending"), (within, "ascending")]).drop_columns(["_position", "order"])


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
