"""The ledger: commit records replayed into columns, each video's latest commit, and whose rows are live."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_output import outcome_ok, prepared, range_outcomes
from vidbatch.io import ledger
from vidbatch.io import output as output_module
from vidbatch.io import tables
from vidbatch.pipeline import fail_lost  # imported here: it imports modules that raise the recursion limit
from vidbatch.stages.assemble import assemble_failed


def test_the_latest_commit_wins_and_lookups_are_by_column(tmp_path):
    manifest, out = prepared(tmp_path, [f"{name}.mp4" for name in "abc"])
    a, b, c = manifest.tasks
    out.commit_batch([assemble_failed(a.video_id, a.key, "timeout: no progress", {}, "m", 0.0), outcome_ok(b)])
    out.commit_batch([outcome_ok(a), outcome_ok(b)])  # a redone, b committed twice
    book = out.ledger()
    assert len(book) == 2 and book.column_for([a.key, b.key, c.key], "status") == ["ok", "ok", None]
    assert book.column_for([b.key], "frames_classified") == [3]
    owners = book.owners.to_pylist()  # only the records finalize rewrites: the one with b's stale entry
    assert [(o["record"], o["video_id"], o["live"]) for o in owners] == [(0, b.video_id, False)]
    assert sorted(zip(*book.shards.to_pydict().values())) == [(a.video_id, 1), (b.video_id, 1)]
    assert book.segments.num_rows == 4 and set(book.segments.column("video_id").to_pylist()) == {a.video_id, b.video_id}
    assert out.committed()[a.key]["status"] == "ok" and "order" not in out.committed()[a.key]


def test_a_complete_set_of_ranges_becomes_one_fresh_merged_entry(tmp_path):
    manifest, out = prepared(tmp_path, ["long.mp4"])
    (long,) = manifest.tasks
    parts, whole = range_outcomes(long)
    out.commit_batch(parts[:3])
    assert len(out.ledger()) == 0
    out.commit_batch(parts[3:])
    book = out.ledger()
    (fresh,) = book.fresh
    assert fresh["key"] == long.key and fresh["merged_from"] == parts[0].record["attempt"]
    assert book.column_for([long.key], "pred_label") == [whole.record["pred_label"]]
    assert book.owners.column("live").to_pylist() == [True] * 4
    ordered = ledger.in_order(book.segments, book.videos.column("order").combine_chunks(), "segment_index")
    assert ordered.column("start_s").to_pylist() == [s["start_s"] for s in whole.segments]
    out._commit_merges(book.fresh)  # written once: the next read finds nothing fresh, and the ranges stay live
    again = out.ledger()
    assert again.fresh == [] and again.owners.column("live").to_pylist() == [True] * 4  # its ranges' records


def test_owned_rows_of_a_range_are_its_own_frame_span():
    video = np.array(["v", "v", "v", "w"])
    index = np.array([0, 2, 4, 0])
    span = {"video_id": "v", "status": "range", "first_index": 2, "last_index": 4, "items": 2}
    whole = {"video_id": "w", "status": "ok", "first_index": None, "last_index": None, "items": None}
    assert ledger.owned_rows([span], video, index).tolist() == [False, True, True, False]
    assert ledger.owned_rows([whole], video, index).tolist() == [False, False, False, True]


def _history_tasks():
    from hypothesis import strategies as st

    action = st.tuples(st.integers(0, 2), st.sampled_from(["ok", "failed", "ranges_a", "ranges_b"]),
                       st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True))
    return st.lists(action, min_size=1, max_size=10), st.lists(st.integers(1, 4), min_size=1, max_size=10)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(*_history_tasks(), st.integers(1, 5))
def test_latest_status_is_the_ledgers_answer_for_any_commit_history(tmp_path_factory, actions, sizes, chunk):
    """Random histories: videos failed, redone, committed twice; ranges of two decodes, in any order, retried,
    some sets never completed. The compact status pass agrees with the whole ledger, however records are
    fetched."""
    import copy

    from vidbatch.io.output import COMMIT_FORMAT, COMMITS_DIR

    manifest, out = prepared(tmp_path_factory.mktemp("h"), [f"{name}.mp4" for name in "abc"])
    tasks = list(manifest.tasks)
    outcomes = []
    for video, kind, which in actions:
        task = tasks[video]
        if kind == "ok":
            outcomes.append(outcome_ok(task))
        elif kind == "failed":
            outcomes.append(assemble_failed(task.video_id, task.key, "timeout: no progress", {}, "m", 0.0))
        else:
            parts, _ = range_outcomes(task)
            for i in which:
                part = copy.deepcopy(parts[i % len(parts)])
                part.record["attempt"] = f"{task.video_id}-{kind}"
                outcomes.append(part)
    start, step = 0, 0
    while start < len(outcomes):
        size = sizes[step % len(sizes)]
        out.commit_batch(outcomes[start:start + size])
        start, step = start + size, step + 1
    folder = os.path.join(out.path, COMMITS_DIR)
    raw = [open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))]
    chunks = [raw[i:i + chunk] for i in range(0, len(raw), chunk)]
    book = ledger.read(chunks, COMMIT_FORMAT)
    expected = dict(zip(book.videos.column("key").to_pylist(),
                        [s == "ok" for s in book.videos.column("status").to_pylist()]))
    latest = ledger.latest_status(chunks, COMMIT_FORMAT)
    assert dict(zip(latest.column("key").to_pylist(), latest.column("ok").to_pylist())) == expected
    assert sorted(out.done_keys().to_pylist()) == sorted(k for k, ok in expected.items() if ok)
    # what resume uses: the same set, as sorted 64-bit hashes
    from vidbatch.io.manifest import key_hashes

    done = [k for k, ok in expected.items() if ok]
    assert out.done_hashes().tolist() == sorted(set(key_hashes(pa.array(done, pa.string())).tolist()))
    # the end of a run, streamed a slice at a time (one video a slice here), writes what a whole read gives
    fail_lost(out, manifest, "m", commit_videos=256)
    whole = out.ledger()
    where = pc.index_in(manifest.tasks.keys(), whole.videos.column("key"))
    orders = whole.videos.column("order").take(where).combine_chunks()
    expected = {"summary": tables.with_nullable_integers(tables.build_summary(
                    whole.videos.take(where), manifest.passthrough)),
                "segments": ledger.in_order(whole.segments, orders, "segment_index"),
                "shots": ledger.in_order(whole.shots, orders, "shot_index")}
    names = [r["frames_file"] for r in whole.records]
    expected_index = sorted({(v, names[r]) for v, r in zip(*whole.shards.to_pydict().values()) if names[r]})
    saved = output_module.TABLE_SLICE_ROWS, output_module.INDEX_ROW_GROUP_ROWS
    output_module.TABLE_SLICE_ROWS = output_module.INDEX_ROW_GROUP_ROWS = 1
    try:
        out.finalize(manifest, {})
    finally:
        output_module.TABLE_SLICE_ROWS, output_module.INDEX_ROW_GROUP_ROWS = saved
    for name, table in expected.items():
        assert pq.read_table(os.path.join(out.path, f"{name}.parquet")).to_pylist() == table.to_pylist(), name
    index = pq.read_table(os.path.join(out.path, output_module.FRAMES_INDEX))
    assert sorted(zip(index.column("video_id").to_pylist(), index.column("file").to_pylist())) == expected_index
    # and frames/ holds each video's latest rows once: as many as it classified, none for a failed video
    frames = pq.read_table(os.path.join(out.path, "frames"), schema=output_module.FRAMES_SCHEMA).select(
        ["video_id", "frame_index"]).to_pylist()
    pairs = [(r["video_id"], r["frame_index"]) for r in frames]
    assert len(pairs) == len(set(pairs))
    # (a shard's row names its video, not its entry: a range and a whole entry of one video in one record cannot
    # be told apart there. No engine commits that mix: a video is cut into ranges or not by its length, the same
    # on every retry; this generator does, so those videos are left out of the count)
    mixed = {e["video_id"] for r in out._records() for e in r["videos"] if e["status"] == "ok" and any(
        o["video_id"] == e["video_id"] and o["status"] == "range" for o in r["videos"])}
    summary = [s for s in expected["summary"].to_pylist() if s["video_id"] not in mixed]
    rows = {v: sum(1 for video, _ in pairs if video == v) for v in (s["video_id"] for s in summary)}
    assert rows == {s["video_id"]: (s["frames_classified"] if s["status"] == "ok" else 0) for s in summary}


def test_a_commit_record_of_many_megabytes_is_read(tmp_path):
    """A record is one JSON line, read natively (`ledger._parse`); the reader's default block is 1 MB, and a
    longer line failed to parse, so every video of the record was taken as never done (a run with
    `--model-top-k 600`, or a long video with thousands of segments, lost every video). Now any length is read."""
    from tests.test_output import OPTIONS
    from vidbatch.stages.assemble import assemble_ok

    manifest, out = prepared(tmp_path, ["long.mp4", "short.mp4"])
    long, short = manifest.tasks
    items = 40_000  # a label that changes every 2 items: 20,000 segments, about 2 MB of JSON
    probs = np.zeros((items, 2), np.float32)
    probs[np.arange(items) // 2 % 2 == 0, 0] = 1.0
    probs[:, 1] = 1.0 - probs[:, 0]
    flickering = assemble_ok(long.video_id, long.key, ["a", "b"], np.arange(items) * 5, np.arange(items) * 0.2, probs,
                             {"fps": 25.0, "frames_decoded": items * 5, "duration_s": items * 0.2, "width": 64,
                              "height": 48}, OPTIONS, "m", 0.1)
    out.commit_batch([flickering, outcome_ok(short)])
    (record,) = out.fs.find(str(tmp_path / "out" / "_vidbatch" / "commits"))
    assert out.fs.size(record) > 1.5 * 2**20
    book = out.ledger()
    assert book.column_for([long.key, short.key], "status") == ["ok", "ok"]
    assert book.segments.num_rows > 10_000
    winners = fail_lost(out, manifest, "m", 100)  # nothing is lost, so nothing is failed
    assert not winners.missing().any()


def test_an_unreadable_commit_record_is_said_not_silently_skipped(tmp_path, caplog):
    """Records are committed whole, so one that does not parse is news: its videos are redone (or failed as lost
    at the end), and a warning says why, once per reason."""
    from vidbatch.io.output import COMMITS_DIR

    manifest, out = prepared(tmp_path, ["a.mp4", "b.mp4"])
    a, b = manifest.tasks
    out.commit_batch([outcome_ok(a)])
    with open(os.path.join(out.path, COMMITS_DIR, "99999999999999999999-broken.json"), "wb") as handle:
        handle.write(b'{"format": "vidbatch-commit/1", "videos": [{"key": ')  # cut short
    ledger._SAID.clear()  # once per reason per process: another test may have met this one
    with caplog.at_level("WARNING", logger="vidbatch"):
        book = out.ledger()
        out.ledger()
    assert book.column_for([a.key, b.key], "status") == ["ok", None]
    said = [r.getMessage() for r in caplog.records if "could not be read" in r.getMessage()]
    assert len(said) == 1 and "its videos are redone" in said[0], said
