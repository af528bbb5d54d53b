"""What every engine shares: a video's items are collected (a Ray retry may send them twice) and it is
finished and committed exactly once."""

import numpy as np
import pandas as pd

from vidbatch.core.config import LabelConfig
from vidbatch.engines.base import COLUMNS, VideoCollector
from vidbatch.engines.progress import Progress, StageCounters
from vidbatch.io.manifest import Manifest
from vidbatch.io.output import RunOutput
from vidbatch.model.spec import BundleSpec, ModelBundle


def collector(tmp_path, rows):
    manifest = Manifest.from_records(rows, base_dir=str(tmp_path))
    bundle = ModelBundle(spec=BundleSpec(classes=("a", "b"), input_size=(8, 8), name="tiny"), model=None,
                         fingerprint="f", source=str(tmp_path / "tiny"))
    output = RunOutput(str(tmp_path / "out"))
    output.prepare({"x": 1})
    counters = StageCounters()
    config = LabelConfig(manifest="m.csv", model="m", out=str(tmp_path / "out"), window=2)
    return manifest, output, counters, VideoCollector(manifest.tasks, bundle, config, output, counters,
                                                      Progress(len(manifest.tasks), False, counters))


def items(indices):
    indices = np.asarray(indices)
    probs = np.tile(np.array([[0.8, 0.2]], np.float32), (len(indices), 1))
    columns = {"frame_index": indices, "timestamp_s": indices / 10.0, "shot_cut": np.zeros(len(indices), bool)}
    assert set(columns) == set(COLUMNS)
    return probs, columns


def test_each_video_commits_once(tmp_path):
    manifest, output, counters, collect = collector(tmp_path, [{"uri": "v.mp4"}, {"uri": "w.mp4"}])
    first, second = (collect.videos[t.key] for t in manifest.tasks)
    first.add(*items([10, 15]))
    first.add(*items([0, 5]))  # items arrive in any order
    collect.finish_ok(first)
    collect.finish_ok(first)  # a second finish is a no-op
    collect.finish_failed(second, "decoder crashed (SIGSEGV) while reading this video")
    collect.finish_missing("lost")  # everything already has a row: nothing changes
    collect.close()
    assert counters.videos_ok == 1 and counters.commits == 1 and counters.videos_failed == 1
    ledger = output.committed()
    assert ledger[first.task.key]["frames_classified"] == 4 and ledger[first.task.key]["model"] == "tiny"
    assert ledger[second.task.key]["error"] == "decoder crashed (SIGSEGV) while reading this video"
    frames = pd.read_parquet(tmp_path / "out" / "frames")
    assert frames.frame_index.tolist() == [0, 5, 10, 15]


def test_a_video_that_never_reported_gets_a_failed_row(tmp_path):
    manifest, output, counters, collect = collector(tmp_path, [{"uri": "v.mp4"}])
    collect.finish_missing("lost: no result came back from the cluster for this video")
    collect.close()
    (entry,) = output.committed().values()
    assert entry["status"] == "failed" and entry["error"].startswith("lost:")


def test_a_video_with_no_items_fails_in_words(tmp_path):
    manifest, output, counters, collect = collector(tmp_path, [{"uri": "v.mp4"}])
    collect.finish_ok(collect.videos[manifest.tasks[0].key])
    collect.close()
    (entry,) = output.committed().values()
    assert entry["error"] == "no frames: nothing was sampled from this video"
