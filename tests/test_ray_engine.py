"""The Ray engine on a local Ray instance: the same answers as the local engine."""

import json
import os

import numpy as np
import pandas as pd
import pytest

import vidbatch
from tests.support.badfiles import random_bytes, text_file, zero_bytes
from tests.support.raytools import assert_same_answers, assert_same_embeddings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def mixed_manifest(synth_set, folder, extra=()):
    rows = pd.read_csv(synth_set)
    rows["uri"] = [os.path.join(os.path.dirname(synth_set), u) for u in rows.uri]
    os.makedirs(folder, exist_ok=True)
    bad = [
        {"video_id": "missing", "uri": os.path.join(folder, "missing.mp4")},
        {"video_id": "zero", "uri": zero_bytes(folder)},
        {"video_id": "random", "uri": random_bytes(folder)},
        {"video_id": "text", "uri": text_file(folder)},
    ]
    rows = pd.concat([rows.iloc[:2], pd.DataFrame(bad), rows.iloc[2:], pd.DataFrame(list(extra))], ignore_index=True)
    path = os.path.join(folder, "m.csv")
    rows.to_csv(path, index=False)
    return path


def test_ray_engine_matches_local_engine(ray_local, synth_set, colour_bundle, tmp_path):
    manifest = mixed_manifest(synth_set, str(tmp_path / "in"))
    options = dict(fps=5, window=4, batch_size=8, progress=False, embeddings=True)
    ray_result = vidbatch.label(manifest, colour_bundle, str(tmp_path / "ray"), engine="ray", **options)
    local_result = vidbatch.label(manifest, colour_bundle, str(tmp_path / "local"), **options)
    assert (ray_result.ok, ray_result.failed) == (local_result.ok, local_result.failed) == (6, 4)
    assert_same_answers(tmp_path / "ray", tmp_path / "local")
    # --embeddings: the same vectors from both engines
    assert_same_embeddings(tmp_path / "ray", tmp_path / "local", videos=6)

    run = json.load(open(tmp_path / "ray" / "run.json"))
    assert run["engine"] == "ray" and run["stages"]["layout"]["inference_actors"] >= 1
    assert run["stages"]["items_classified"] >= 60


def test_ray_engine_resumes(ray_local, synth_set, colour_bundle, tmp_path):
    first = vidbatch.label(synth_set, colour_bundle, str(tmp_path / "out"), engine="ray", progress=False)
    second = vidbatch.label(synth_set, colour_bundle, str(tmp_path / "out"), engine="ray", progress=False)
    assert first.ok == 6 and second.resumed == 6


@pytest.mark.shared_data
def test_ray_engine_on_shared_real_clips(ray_local, synth_set, colour_bundle, tmp_path, shared_video_paths):
    extra = [{"video_id": os.path.basename(p), "uri": p} for p in shared_video_paths]
    manifest = mixed_manifest(synth_set, str(tmp_path / "in"), extra)
    options = dict(fps=5, progress=False)
    vidbatch.label(manifest, colour_bundle, str(tmp_path / "ray"), engine="ray", **options)
    vidbatch.label(manifest, colour_bundle, str(tmp_path / "local"), **options)
    assert_same_answers(tmp_path / "ray", tmp_path / "local")


def test_ray_engine_s3_round_trip(ray_local, s3, synth_set, colour_bundle, tmp_path):
    """Manifest, videos, model bundle and outputs on S3 (moto server); credentials reach the actors via storage options."""

    from tests.test_s3 import upload_set

    fs, bucket = s3
    manifest, model = upload_set(fs, bucket, synth_set, colour_bundle)
    options = {"key": "testing-key-id", "secret": "testing-secret", "endpoint_url": os.environ["AWS_ENDPOINT_URL"]}
    out = f"s3://{bucket}/labels/ray"
    result = vidbatch.label(manifest, model, out, engine="ray", storage_options=options, progress=False)
    assert (result.ok, result.failed) == (6, 0)
    summary = pd.read_parquet(f"{out}/summary.parquet", storage_options=options)
    assert (summary.pred_label == summary.label).all()
    assert len(pd.read_parquet(f"{out}/frames", storage_options=options)) == summary.frames_classified.sum()
    assert b"testing-secret" not in fs.cat_file(f"{bucket}/labels/ray/run.json")
    assert json.loads(fs.cat_file(f"{bucket}/labels/ray/run.json"))["engine"] == "ray"


def test_videos_cut_into_time_ranges_give_the_unsplit_answers(ray_local, synth_set, colour_bundle, tmp_path):
    """Ranges of 3 items (the synthetic videos have 10-20 at 5 fps), a window of 4: every ok video is split, its
    ranges classified and assembled apart and merged; the tables equal the local engine's, which never splits."""

    from vidbatch.core.config import RayOptions
    from vidbatch.io.output import RunOutput

    manifest = mixed_manifest(synth_set, str(tmp_path / "in"))
    options = dict(fps=5, window=4, batch_size=8, progress=False, embeddings=True, keep_probs=True)
    split = vidbatch.label(manifest, colour_bundle, str(tmp_path / "ray"), engine="ray",
                           ray=RayOptions(range_items=3), **options)
    whole = vidbatch.label(manifest, colour_bundle, str(tmp_path / "local"), **options)
    assert (split.ok, split.failed) == (whole.ok, whole.failed) == (6, 4)
    assert_same_answers(tmp_path / "ray", tmp_path / "local")
    shots = [pd.read_parquet(tmp_path / name / "shots.parquet").drop(columns="score") for name in ("ray", "local")]
    pd.testing.assert_frame_equal(*shots)
    frames = pd.read_parquet(tmp_path / "ray" / "frames")
    assert not frames.duplicated(["video_id", "frame_index"]).any()
    assert len(frames) == split.summary.to_pandas().frames_classified.sum()
    records = RunOutput(str(tmp_path / "ray"))._records()
    partial = [e for r in records for e in r["videos"] if e["status"] == "range"]
    assert len({e["video_id"] for e in partial}) == 6 and len(partial) > 18  # every ok video, in several ranges
    merged = [e for r in records for e in r["videos"] if e.get("merged_from")]
    assert len(merged) == 6  # written once, by finalize
    assert_same_embeddings(tmp_path / "ray", tmp_path / "local", videos=6)
    run = json.load(open(tmp_path / "ray" / "run.json"))
    assert run["stages"]["layout"]["range_items"] == 3
    assert run["stages"]["items_classified"] == run["counts"]["frames_classified"]
    # a rerun resumes every video, split ones included, and leaves the tables as they were
    again = vidbatch.label(manifest, colour_bundle, str(tmp_path / "ray"), engine="ray", ray=RayOptions(range_items=3),
                           **options)
    assert again.resumed == 6
    assert_same_answers(tmp_path / "ray", tmp_path / "local")
    assert len([e for r in RunOutput(str(tmp_path / "ray"))._records() for e in r["videos"] if e.get("merged_from")]) == 6


def test_an_interrupted_run_keeps_its_finished_videos(ray_local, colour_bundle, tmp_path, monkeypatch):
    """Ctrl-C while finished videos wait for a batch that would fill only at the end (--commit-videos 1000, no age
    commit within the run): the interruption commits them, and a rerun resumes from there."""
    import _thread
    import signal
    import threading
    import time

    import ray

    from vidbatch.apps.synth import SynthSpec, make_dataset, write_video
    from vidbatch.engines import ray_engine
    from vidbatch.io.output import RunOutput

    manifest = make_dataset(str(tmp_path / "data"), videos_per_class=16, seed=9,
                            spec=SynthSpec(width=64, height=48, seconds=3))
    # a long video last: the run goes on for seconds after the others wait in the committers (a warm Ray
    # instance in a busy suite otherwise finished all 48 before the watcher saw two waiting)
    write_video(str(tmp_path / "data" / "videos" / "long.mp4"), "ball", seed=1,
                spec=SynthSpec(width=64, height=48, seconds=90))
    with open(manifest, "a") as handle:
        handle.write("long,videos/long.mp4,ball\n")
    assert len(pd.read_csv(manifest)) == 49
    made = {}
    original = ray_engine.RayEngine._committers

    def keep_handles(self, count):
        made["committers"] = original(self, count)
        return made["committers"]

    monkeypatch.setattr(ray_engine.RayEngine, "_committers", keep_handles)

    def interrupt_once_work_waits():
        deadline = time.monotonic() + 240
        try:
            while time.monotonic() < deadline:
                if made.get("committers"):
                    waiting = sum(ray.get([c.waiting.remote() for c in made["committers"]]))
                    made["seen"] = max(made.get("seen", 0), waiting)
                    if waiting >= 2:
                        made["waiting"] = waiting
                        _thread.interrupt_main()  # what Ctrl-C does to the driver
                        return
                time.sleep(0.02)
        except BaseException as exc:  # said in the failure below, not lost with this thread
            made["error"] = repr(exc)

    # Ctrl-C raises KeyboardInterrupt only under Python's default handler (this process ran other tests first)
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = threading.Thread(target=interrupt_once_work_waits, daemon=True)
    watcher.start()
    out = str(tmp_path / "out")
    options = dict(engine="ray", fps=5, batch_size=8, progress=False, commit_videos=1000, commit_seconds=1000)
    try:
        vidbatch.label(manifest, colour_bundle, out, **options)
    except KeyboardInterrupt:
        pass
    else:
        pytest.fail(f"the run was not interrupted: {made}; SIGINT's handler before the test: {handler!r}")
    finally:
        signal.signal(signal.SIGINT, handler)
    watcher.join()
    kept = len(RunOutput(out).committed())
    assert made["waiting"] >= 2 and made["waiting"] <= kept < 49, (made, kept)
    result = vidbatch.label(manifest, colour_bundle, out, **options)
    assert (result.resumed, result.ok, result.failed) == (kept, 49, 0)


def test_a_slow_run_commits_by_age(ray_local, synth_set, colour_bundle, tmp_path):
    """--commit-seconds bounds how long a finished video waits for its batch on Ray too."""

    out = tmp_path / "out"
    result = vidbatch.label(synth_set, colour_bundle, str(out), engine="ray", fps=5, batch_size=8, progress=False,
                            commit_videos=1000, commit_seconds=0.01)
    assert result.ok == 6
    assert json.load(open(out / "run.json"))["stages"]["commits"] >= 2  # not one batch at the end


def test_streaming_ranges_label_like_the_local_engine(ray_local, synth_set, tmp_path):
    """A streaming model (state in, state out) on ranges of 4 items: each range starts at the last reset point
    (every 3 frames here) before it, so the tables equal the local engine's, which never splits; a .tflite
    model's inference actors take CPU slots, not GPUs."""

    from tests.support.encoders import make_streaming_classifier
    from vidbatch.core.config import RayOptions

    model = make_streaming_classifier(str(tmp_path / "stream.tflite"))
    labels = tmp_path / "labels.txt"
    labels.write_text("ball\nbox\nwaves\n")
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"round": ["ball"], "square": ["box"]}))
    options = dict(classes=str(labels), batch_size=8, window=3, state_reset_s=0.6, progress=False,
                   label_map=str(mapping), model_top_k=2)  # the model's own classes kept beside the mapped ones
    split = vidbatch.label(synth_set, model, str(tmp_path / "ray"), engine="ray", ray=RayOptions(range_items=4),
                           **options)
    whole = vidbatch.label(synth_set, model, str(tmp_path / "local"), **options)
    assert (split.ok, whole.ok) == (6, 6)
    assert_same_answers(tmp_path / "ray", tmp_path / "local")
    (ray_top, local_top), frames = (
        [pd.read_parquet(tmp_path / side / "summary.parquet").sort_values("video_id").model_top_k
         for side in ("ray", "local")],
        [pd.read_parquet(tmp_path / side / "frames").sort_values(["video_id", "frame_index"]).model_top_k
         for side in ("ray", "local")])
    for a, b in zip(ray_top, local_top):  # merged from the ranges' weighted sums as the whole video's mean
        assert [t["label"] for t in a] == [t["label"] for t in b] and len(a) == 2
        np.testing.assert_allclose([t["score"] for t in a], [t["score"] for t in b], atol=1e-4)
    assert [[t["label"] for t in row] for row in frames[0]] == [[t["label"] for t in row] for row in frames[1]]
    run = json.load(open(tmp_path / "ray" / "run.json"))
    assert run["stages"]["layout"]["gpus_per_inference_actor"] == 0.0
    assert run["stages"]["layout"]["range_items"] == 4
    # weighed at window ends (a trained head's bundle asks for it): a range knows whether the item after it starts
    # over (`RangeUnit.closes`, carried from the decoder to the writer), so the merged labels still equal the local
    options.update(state_weights="window_end")
    vidbatch.label(synth_set, model, str(tmp_path / "ray_ends"), engine="ray", ray=RayOptions(range_items=4), **options)
    vidbatch.label(synth_set, model, str(tmp_path / "local_ends"), **options)
    assert_same_answers(tmp_path / "ray_ends", tmp_path / "local_ends")
    ends, context = (pd.read_parquet(tmp_path / side / "summary.parquet").sort_values("video_id")
                     for side in ("local_ends", "local"))
    assert not np.allclose(ends.pred_score, context.pred_score)  # ...and they are not the context-weighed ones


def test_a_streaming_model_on_a_block_of_only_bad_videos_fails_them_alone(ray_local, tmp_path):
    """A block whose every video failed still gives the inference stage columns of the right widths; a streaming
    model then needs a state of its own for its blank item (it crashed the whole job: found by hand with a manifest
    of missing files)."""
    from tests.support.encoders import make_streaming_classifier

    model = make_streaming_classifier(str(tmp_path / "stream.tflite"))
    labels = tmp_path / "labels.txt"
    labels.write_text("ball\nbox\nwaves\n")
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"uri": [str(tmp_path / f"missing{i}.mp4") for i in range(3)] + [text_file(str(tmp_path))]}
                 ).to_csv(manifest, index=False)
    result = vidbatch.label(str(manifest), str(tmp_path / "stream.tflite"), str(tmp_path / "out"), engine="ray",
                            classes=str(labels), progress=False)
    summary = pd.read_parquet(tmp_path / "out" / "summary.parquet")
    assert (result.ok, result.failed) == (0, 4) and len(summary) == 4
    assert summary.error.str.contains("not found").sum() == 3 and (summary.status == "failed").all()


def test_manifest_blocks_balance_the_decoders_and_keep_a_big_manifest_out_of_the_drivers_memory():
    from vidbatch.engines.ray_engine import (INLINE_ROWS, MAX_BLOCK_ROWS, MIN_BLOCKS, MIN_STORED_BLOCK_ROWS,
                                             manifest_blocks)

    assert manifest_blocks(5, decoders=1) == 5  # never an empty block
    assert manifest_blocks(1000, decoders=1) == MIN_BLOCKS  # a small job streams in steps
    assert manifest_blocks(1000, decoders=64) == 1000 // 4  # four blocks a decode actor
    assert manifest_blocks(100_000, decoders=1) == -(-100_000 // MAX_BLOCK_ROWS)  # Ray Data's costs are per block
    big = INLINE_ROWS + 1  # Ray keeps a result under 100 KB in its owner's memory: here, the driver's
    assert manifest_blocks(big, decoders=10_000) == -(-big // MIN_STORED_BLOCK_ROWS)
    assert manifest_blocks(10**7, decoders=64) == -(-10**7 // MAX_BLOCK_ROWS)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_manifest_on_s3_is_read_on_the_workers_as_the_driver_reads_it(ray_local, s3, tmp_path, kind):
    """Ray Data reads the manifest file on the workers, derives ids and keys there and drops the finished videos
    (the driver's hashes, shipped once): the rows equal the driver's own streamed read, in the pipeline's blocks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vidbatch.engines.ray_engine import manifest_dataset
    from vidbatch.io.manifest import Manifest, Pending, StreamedManifest, key_hashes

    fs, bucket = s3
    rows = pd.DataFrame({"uri": [f"videos/{i}.mp4" for i in range(1000)], "label": ["a", "b"] * 500})
    path = tmp_path / f"m.{kind}"
    rows.to_csv(path, index=False) if kind == "csv" else pq.write_table(pa.Table.from_pandas(rows), path)
    fs.put_file(str(path), f"{bucket}/in/m.{kind}")
    options = {"key": "testing-key-id", "secret": "testing-secret", "endpoint_url": os.environ["AWS_ENDPOINT_URL"]}
    manifest = Manifest.from_path(f"s3://{bucket}/in/m.{kind}", options)
    assert isinstance(manifest, StreamedManifest)
    done = np.unique(key_hashes(manifest.tasks.keys().take(pa.array(range(0, 1000, 3)))))  # a third finished
    todo = Pending(manifest, done)
    dataset = manifest_dataset(todo, blocks=11)
    got = pa.Table.from_pylist(dataset.take_all())
    expected = todo.columns()
    got = got.select(expected.column_names).sort_by("key")  # the pipeline's order is free: the tables are not
    assert got.num_rows == len(todo) == 666 and got.equals(expected.sort_by("key"))
    assert dataset.num_blocks() == 11
    assert not set(got.column("video_id").to_pylist()) & {t.video_id for t in manifest.tasks if t.row % 3 == 0}
    assert f"s3://{bucket}/in/videos/1.mp4" in got.column("location").to_pylist()  # resolved against the manifest
