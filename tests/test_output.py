import json
import os
import subprocess
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from vidbatch import OutputError
from vidbatch.core.config import LabelConfig
from vidbatch.io.manifest import Manifest
from vidbatch.io.output import BatchCommitter, RunOutput
from vidbatch.stages.assemble import assemble_failed, assemble_ok

OPTIONS = LabelConfig(manifest="m.csv", model="m", out="o", window=2, top_k=2)


def outcome_ok(task):
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.9]], np.float32)
    return assemble_ok(task.video_id, task.key, ["a", "b"], np.array([0, 5, 10]), np.array([0.0, 0.2, 0.4]), probs,
                       {"fps": 25.0, "frames_decoded": 12, "duration_s": 0.48, "width": 64, "height": 48}, OPTIONS, "m", 0.1)


def test_commit_and_finalize_roundtrip(tmp_path):
    manifest = Manifest.from_records([{"uri": "a.mp4", "label": "a", "n": 1}, {"uri": "b.mp4", "label": "b", "n": 2}],
                                     base_dir=str(tmp_path))
    out = RunOutput(str(tmp_path / "out"))
    out.prepare({"x": 1})
    first, second = manifest.tasks
    out.commit_batch([outcome_ok(first), assemble_failed(second.video_id, second.key, "not found: no file at b.mp4", {},
                                                         "m", 0.0)])
    out.finalize(manifest, {"counts": {}})
    summary = pd.read_parquet(tmp_path / "out" / "summary.parquet")
    assert summary["status"].tolist() == ["ok", "failed"]
    assert summary["pred_label"].tolist()[0] == "b" and pd.isna(summary["pred_label"].tolist()[1])
    assert summary["n"].tolist() == [1, 2] and summary["uri"].tolist() == ["a.mp4", "b.mp4"]
    assert [t["label"] for t in summary["top_k"][0]] == ["b", "a"]
    frames = pd.read_parquet(tmp_path / "out" / "frames")
    assert frames["raw_label"].tolist() == ["a", "b", "b"]
    assert frames["smoothed_label"].tolist() == ["a", "a", "b"]  # window 2: (0.9+0.2)/2 > (0.1+0.8)/2
    segments = pd.read_parquet(tmp_path / "out" / "segments.parquet")
    assert segments[["start_s", "end_s", "label"]].values.tolist() == [[0.0, 0.4, "a"], [0.4, 0.48, "b"]]
    assert json.load(open(tmp_path / "out" / "run.json")) == {"counts": {}}
    leftovers = [f for _, _, files in os.walk(tmp_path / "out") for f in files if f.startswith(".tmp")]
    assert leftovers == []


def test_finalize_writes_the_tables_a_slice_at_a_time_in_manifest_order(tmp_path, monkeypatch):
    """With slices of 2 rows, 7 videos committed out of order (one failed, one redone) give one summary file of
    4 row groups in manifest order, with the manifest's columns, and segments in the same order; the failed
    rows are read alone."""
    from vidbatch.io import output as output_module
    from vidbatch.pipeline import RunResult

    monkeypatch.setattr(output_module, "TABLE_SLICE_ROWS", 2)
    manifest = Manifest.from_records([{"uri": f"v{i}.mp4", "n": i} for i in range(7)], base_dir=str(tmp_path))
    out = RunOutput(str(tmp_path / "out"))
    out.prepare({})
    tasks = list(manifest.tasks)
    out.commit_batch([outcome_ok(t) for t in tasks[4:]])
    out.commit_batch([assemble_failed(tasks[1].video_id, tasks[1].key, "timeout: no progress", {}, "m", 0.0)]
                     + [outcome_ok(t) for t in tasks[:4] if t is not tasks[1]])
    out.commit_batch([assemble_failed(tasks[5].video_id, tasks[5].key, "not found: gone", {}, "m", 0.0)])
    out.finalize(manifest, {})
    path = tmp_path / "out" / "summary.parquet"
    assert pq.ParquetFile(path).metadata.num_row_groups == 4
    summary = pd.read_parquet(path)
    assert summary["n"].tolist() == list(range(7)) and summary["video_id"].tolist() == [t.video_id for t in tasks]
    assert summary["status"].tolist() == ["ok", "failed", "ok", "ok", "ok", "failed", "ok"]
    assert str(summary["width"].dtype) == "Int32"  # the nullable integers survive the slices
    segments = pd.read_parquet(tmp_path / "out" / "segments.parquet")
    assert segments["video_id"].drop_duplicates().tolist() == [t.video_id for i, t in enumerate(tasks) if i not in (1, 5)]
    result = RunResult(out=str(tmp_path / "out"), videos=7, ok=5, failed=2, resumed=0, elapsed_s=0.0)
    assert result.failed_videos().values.tolist() == [[tasks[1].video_id, "timeout: no progress"],
                                                      [tasks[5].video_id, "not found: gone"]]
    assert result.summary.num_rows == 7


def test_identity_mismatch_needs_overwrite(tmp_path):
    out = RunOutput(str(tmp_path / "out"))
    out.prepare({"model": "A", "fps": 5})
    with pytest.raises(OutputError, match="holds a run with other settings.*--overwrite"):
        RunOutput(str(tmp_path / "out")).prepare({"model": "B", "fps": 5})


def test_a_settings_mismatch_names_only_what_differs(tmp_path):
    RunOutput(str(tmp_path / "out")).prepare({"model_fingerprint": "aa", "window": 8, "fps": 2.0, "top_k": 3})
    with pytest.raises(OutputError) as info:
        RunOutput(str(tmp_path / "out")).prepare({"model_fingerprint": "bb", "window": 16, "fps": 2.0, "top_k": 3})
    message = str(info.value)
    assert "window 8 there, 16 here" in message and "another model" in message
    assert "fps" not in message and "top_k" not in message and "{" not in message
    RunOutput(str(tmp_path / "out")).prepare({"model": "B", "fps": 5}, overwrite=True)


def test_output_that_is_a_file_fails_fast(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="it is a file"):
        RunOutput(str(blocker)).prepare({})


@pytest.fixture
def small_mount(tmp_path):
    """A real tiny filesystem (tmpfs); needs the right to mount, as root in CI has."""
    mounted = []

    def mount(options):
        target = tmp_path / f"mnt{len(mounted)}"
        target.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); needs root")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_full_disk_fails_fast(small_mount):
    target = small_mount("size=1m")
    with pytest.raises(OutputError, match=r"only 1 MiB free on its disk|only 0 MiB free on its disk"):
        RunOutput(str(target / "out")).prepare({})


def test_read_only_output_fails_fast(small_mount):
    target = small_mount("size=4m,ro")
    with pytest.raises(OutputError, match="Cannot write to --out .*Read-only file system"):
        RunOutput(str(target / "out")).prepare({})


def test_unknown_scheme_for_output():
    with pytest.raises(OutputError, match="unknown URL scheme"):
        RunOutput("ftpx://host/out")


def test_finalize_refuses_missing_videos(tmp_path):
    manifest = Manifest.from_records([{"uri": "a.mp4"}], base_dir=str(tmp_path))
    out = RunOutput(str(tmp_path / "out"))
    out.prepare({})
    with pytest.raises(OutputError, match="no commit record"):
        out.finalize(manifest, {})


def test_output_on_memory_filesystem(tmp_path):
    manifest = Manifest.from_records([{"uri": "a.mp4"}], base_dir=str(tmp_path))
    out = RunOutput("memory://runs/r1")
    out.prepare({})
    out.commit_batch([outcome_ok(manifest.tasks[0])])
    out.finalize(manifest, {})
    summary = out.summary()
    assert isinstance(summary, pa.Table) and out.fs.exists("/runs/r1/summary.parquet")


def test_resume_removes_stale_temporaries_of_a_killed_run(tmp_path):
    """kill -9 between writing a temporary and renaming it leaves the temporary: the next run removes it."""
    out = RunOutput(str(tmp_path / "out"))
    out.prepare({"x": 1})
    stale = [tmp_path / "out" / "frames" / ".tmp-0123abcd-part-1.parquet",
             tmp_path / "out" / "_vidbatch" / "commits" / ".tmp-0123abcd-1.json",
             tmp_path / "out" / "_vidbatch" / ".probe-0123abcd"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    RunOutput(str(tmp_path / "out")).prepare({"x": 1})
    assert [p for p in stale if p.exists()] == []
    assert RunOutput(str(tmp_path / "out")).committed() == {}


def many(tmp_path, n):
    return Manifest.from_records([{"uri": f"v{i:03d}.mp4", "video_id": f"v{i:03d}"} for i in range(n)],
                                 base_dir=str(tmp_path))


def test_many_videos_share_few_files_and_a_one_video_query_reads_one_row_group(tmp_path):
    manifest = many(tmp_path, 40)
    out = RunOutput(str(tmp_path / "out"))
    out.prepare({})
    tasks = manifest.tasks
    for start in range(0, 40, 16):  # three batches: 16, 16, 8
        out.commit_batch([outcome_ok(t) for t in reversed(tasks[start:start + 16])])
    out.finalize(manifest, {})
    shards = sorted((tmp_path / "out" / "frames").iterdir())
    assert len(shards) == 3 and len(list((tmp_path / "out" / "_vidbatch" / "commits").iterdir())) == 3
    for shard in shards:  # rows sorted by video_id inside each shard, whatever order the batch came in
        ids = pq.read_table(shard).column("video_id").to_pylist()
        assert ids == sorted(ids)
    frames = pd.read_parquet(tmp_path / "out" / "frames", filters=[("video_id", "==", "v017")])
    assert frames.frame_index.tolist() == [0, 5, 10]
    dataset = ds.dataset(str(tmp_path / "out" / "frames"), format="parquet")
    touched = [f for f in dataset.get_fragments(filter=ds.field("video_id") == "v017")
               for rg in f.split_by_row_group(ds.field("video_id") == "v017")]
    assert len(touched) == 1  # file statistics rule out the other shards


def test_a_shard_without_its_commit_record_is_removed_on_resume(tmp_path):
    """A crash between writing a shard and its commit record: the shard must not be read as output."""
    manifest = many(tmp_path, 4)
    out = RunOutput(str(tmp_path / "out"))
    out.prepare({})
    out.commit_batch([outcome_ok(t) for t in manifest.tasks[:2]])
    orphan_frames = pa.concat_tables([outcome_ok(t).frames for t in manifest.tasks[2:]])
    orphan = tmp_path / "out" / "frames" / "part-99999999999999999999-deadbeef0000.parquet"
    pq.write_table(orphan_frames, orphan)
    resumed = RunOutput(str(tmp_path / "out"))
    resumed.prepare({})
    assert not orphan.exists() and set(resumed.committed()) == {t.key for t in manifest.tasks[:2]}
    resumed.commit_batch([outcome_ok(t) for t in manifest.tasks[2:]])
    resumed.finalize(manifest, {})
    frames = pd.read_parquet(tmp_path / "out" / "frames")
    assert len(frames) == 12 and not frames.duplicated(["video_id", "frame_index"]).any()


def test_a_failed_video_redone_later_wins_and_keeps_no_stale_rows(tmp_path):
    manifest = many(tmp_path, 2)
    first, second = manifest.tasks
    out = RunOutput(str(tmp_path / "out"))
    out.prepare({})
    out.commit_batch([outcome_ok(first), assemble_failed(second.video_id, second.key, "timeout: no progress", {}, "m", 0.0)])
    assert out.committed()[second.key]["error"] == "timeout: no progress"  # a failed row keeps its message
    out.commit_batch([outcome_ok(second)])  # the rerun
    out.commit_batch([outcome_ok(first)])  # a retried task commits the first video twice
    out.finalize(manifest, {})
    summary = out.summary().to_pandas()
    assert summary.status.tolist() == ["ok", "ok"]
    frames = pd.read_parquet(tmp_path / "out" / "frames")
    assert len(frames) == 6 and not frames.duplicated(["video_id", "frame_index"]).any()
    assert len(list((tmp_path / "out" / "frames").iterdir())) == 2  # the superseded shard is gone


def test_batch_committer_commits_by_count_age_and_close(tmp_path):
    manifest = many(tmp_path, 7)
    out = RunOutput(str(tmp_path / "out"))
    out.prepare({})
    committer = BatchCommitter(out, max_videos=3, max_seconds=0.5)
    for task in manifest.tasks[:6]:
        committer.add(outcome_ok(task))
    deadline = time.monotonic() + 10
    while (len(out.committed()) < 6 or committer.batches < 2) and time.monotonic() < deadline:
        time.sleep(0.05)  # the record becomes visible a moment before the writer counts it
    assert len(out.committed()) == 6 and committer.batches == 2
    committer.add(outcome_ok(manifest.tasks[6]))
    while len(out.committed()) < 7 and time.monotonic() < deadline:
        time.sleep(0.05)  # a lone video is committed once it has waited max_seconds
    assert len(out.committed()) == 7
    committer.close()
    assert committer.batches == 3


def test_batch_committer_raises_a_write_error_in_the_caller(tmp_path):
    manifest = many(tmp_path, 2)
    out = RunOutput(str(tmp_path / "out"))
    out.prepare({})
    committer = BatchCommitter(out, max_videos=1)
    (tmp_path / "out" / "_vidbatch" / "commits").write_text("a file where the folder should be")  # root ignores modes
    committer.add(outcome_ok(manifest.tasks[0]))
    with pytest.raises(OutputError, match="Cannot write to --out"):
        committer.close()


def test_an_option_added_later_and_left_unset_still_resumes(tmp_path):
    """A run made before an option existed has no key for it; leaving the option unset (None) is the same run."""
    RunOutput(str(tmp_path / "out")).prepare({"model_fingerprint": "aa", "window": 8})
    RunOutput(str(tmp_path / "out")).prepare({"model_fingerprint": "aa", "window": 8, "channel_order": None})
    with pytest.raises(OutputError, match="channel_order None there, 'bgr' here"):
        RunOutput(str(tmp_path / "out")).prepare({"model_fingerprint": "aa", "window": 8, "channel_order": "bgr"})
    # an option added later whose default is not None (`embeddings=False`): left at its default, the same run
    defaults = LabelConfig.answer_defaults()
    assert defaults["embeddings"] is False and defaults["window"] == LabelConfig(manifest="m", model="m", out="o").window
    RunOutput(str(tmp_path / "out")).prepare({"model_fingerprint": "aa", "window": 8, "embeddings": False},
                                             defaults=defaults)
    with pytest.raises(OutputError, match="embeddings False there, True here"):
        RunOutput(str(tmp_path / "out")).prepare({"model_fingerprint": "aa", "window": 8, "embeddings": True},
                                                 defaults=defaults)


def prepared(tmp_path, uris):
    """A manifest of `uris` and a prepared output for it."""
    manifest = Manifest.from_records([{"uri": u} for u in uris], base_dir=str(tmp_path))
    out = RunOutput(str(tmp_path / "out"))
    out.prepare({"x": 1})
    return manifest, out


def range_outcomes(task):
    """A 20-item video cut into ranges of 6 (overlap 1): one decode's range outcomes, and the video whole."""
    from vidbatch.stages.assemble import assemble_range
    from vidbatch.stages.ranges import RangeSplitter

    rng = np.random.default_rng(7)
    probs = rng.dirichlet([1, 1], size=20).astype(np.float32)
    arrays = {"frames": np.zeros((20, 1), np.uint8), "frame_index": np.arange(20) * 2, "timestamp_s": np.arange(20) * 0.5,
              "shot_cut": np.arange(20) == 9}
    info = {"fps": 4.0, "frames_decoded": 40, "duration_s": 10.0, "width": 8, "height": 8}
    splitter = RangeSplitter(range_items=6, overlap=1)
    units = splitter.push(arrays) + [splitter.finish()]
    parts = [assemble_range(task.video_id, task.key, ["a", "b"], u, probs[u.frame_index // 2], info, OPTIONS, "m", 0.1)
             for u in units]
    whole = assemble_ok(task.video_id, task.key, ["a", "b"], arrays["frame_index"], arrays["timestamp_s"], probs, info,
                        OPTIONS, "m", 0.1, shot_cut=arrays["shot_cut"])
    return parts, whole


def test_ranges_of_a_retried_decode_and_a_retried_commit_leave_one_copy_of_each_row(tmp_path):
    """Decode A commits two of its four ranges and dies; decode B commits all four, one of them twice (a retried
    write task), in batches shared with another video committed twice. The tables hold each row once, and equal
    those of the unsplit video."""
    manifest, out = prepared(tmp_path, ["long.mp4", "short.mp4"])
    long, short = manifest.tasks
    attempt_a, whole = range_outcomes(long)
    attempt_b, _ = range_outcomes(long)
    assert len(attempt_b) == 4 and attempt_a[0].record["attempt"] != attempt_b[0].record["attempt"]
    out.commit_batch(attempt_a[:2] + [outcome_ok(short)])
    assert long.key not in out.committed()  # an incomplete set is not a video: a resume would redo it
    out.commit_batch([attempt_a[0], attempt_b[0], attempt_b[1]])  # A's range 0 again, next to B's: same rows
    out.commit_batch(attempt_b[1:] + [outcome_ok(short)])
    assert out.committed()[long.key]["status"] == "ok"
    out.finalize(manifest, {})
    frames = pd.read_parquet(tmp_path / "out" / "frames")
    assert not frames.duplicated(["video_id", "frame_index"]).any()
    mine = frames[frames.video_id == long.video_id].sort_values("frame_index").reset_index(drop=True)
    expected = whole.frames.to_pandas()
    assert mine[["frame_index", "raw_label", "smoothed_label", "shot_index"]].equals(
        expected[["frame_index", "raw_label", "smoothed_label", "shot_index"]])
    assert len(frames[frames.video_id == short.video_id]) == 3
    summary = pd.read_parquet(tmp_path / "out" / "summary.parquet").set_index("video_id")
    assert summary.loc[long.video_id, "pred_label"] == whole.record["pred_label"]
    assert summary.loc[long.video_id, "shots"] == whole.record["shots"] == 2
    segments = pd.read_parquet(tmp_path / "out" / "segments.parquet")
    assert segments[segments.video_id == long.video_id][["start_s", "end_s", "label"]].values.tolist() == \
        [[s["start_s"], s["end_s"], s["label"]] for s in whole.segments]
    # finalizing again (a rerun of a finished run) changes nothing
    before = sorted(os.listdir(tmp_path / "out" / "_vidbatch" / "commits"))
    out.finalize(manifest, {})
    assert sorted(os.listdir(tmp_path / "out" / "_vidbatch" / "commits")) == before
    assert len(pd.read_parquet(tmp_path / "out" / "frames")) == len(frames)


def test_a_video_that_fails_after_some_ranges_keeps_no_rows(tmp_path):
    manifest, out = prepared(tmp_path, ["long.mp4"])
    (long,) = manifest.tasks
    parts, _ = range_outcomes(long)
    out.commit_batch(parts[:2])
    out.commit_batch([assemble_failed(long.video_id, long.key, "decoder crashed (signal 11) on this video", {}, "m", 0.0)])
    out.finalize(manifest, {})
    assert pd.read_parquet(tmp_path / "out" / "summary.parquet").status.tolist() == ["failed"]
    assert len(pd.read_parquet(tmp_path / "out" / "frames")) == 0


def test_read_frames_goes_through_the_index_to_the_shards_that_hold_a_video(tmp_path):
    """Videos in three batches, one of them split into ranges across two batches: `read_frames` returns what a
    dataset filter returns, from the index; without the index (an unfinished run) it falls back to the filter."""
    import vidbatch

    manifest, out = prepared(tmp_path, [f"v{i}.mp4" for i in range(5)] + ["long.mp4"])
    *short, long = manifest.tasks
    parts, whole = range_outcomes(long)
    out.commit_batch([outcome_ok(t) for t in short[:2]] + parts[:2])
    out.commit_batch([outcome_ok(t) for t in short[2:]] + parts[2:])
    out.finalize(manifest, {})
    index = pd.read_parquet(tmp_path / "out" / "_vidbatch" / "frames_index.parquet")
    assert index.video_id.is_monotonic_increasing and len(index) == 5 + 2  # the split video is in two shards
    for task in (short[0], short[4], long):
        expected = pd.read_parquet(tmp_path / "out" / "frames", filters=[("video_id", "==", task.video_id)])
        got = vidbatch.read_frames(str(tmp_path / "out"), task.video_id)
        pd.testing.assert_frame_equal(got, expected.sort_values("frame_index").reset_index(drop=True))
    both = vidbatch.read_frames(str(tmp_path / "out"), [short[1].video_id, long.video_id], columns=["video_id", "frame_index"])
    assert list(both.columns) == ["video_id", "frame_index"] and len(both) == 3 + 20
    assert vidbatch.read_frames(str(tmp_path / "out"), "nobody").empty
    os.remove(tmp_path / "out" / "_vidbatch" / "frames_index.parquet")
    assert len(vidbatch.read_frames(str(tmp_path / "out"), long.video_id)) == 20
