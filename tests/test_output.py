import json
import os
import subprocess

import pandas as pd
import pyarrow as pa
import pytest

from vidbatch import OutputError
from vidbatch.core.config import LabelConfig
from vidbatch.stages.assemble import assemble_failed, assemble_ok
from vidbatch.io.manifest import Manifest
from vidbatch.io.output import RunOutput

import numpy as np

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
    out.commit(outcome_ok(first))
    out.commit(assemble_failed(second.video_id, second.key, "not found: no file at b.mp4", {}, "m", 0.0))
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


def test_identity_mismatch_needs_overwrite(tmp_path):
    out = RunOutput(str(tmp_path / "out"))
    out.prepare({"model": "A", "fps": 5})
    with pytest.raises(OutputError, match="holds a run with other settings.*--overwrite"):
        RunOutput(str(tmp_path / "out")).prepare({"model": "B", "fps": 5})
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
    with pytest.raises(OutputError, match="no ledger entry"):
        out.finalize(manifest, {})


def test_output_on_memory_filesystem(tmp_path):
    manifest = Manifest.from_records([{"uri": "a.mp4"}], base_dir=str(tmp_path))
    out = RunOutput("memory://runs/r1")
    out.prepare({})
    out.commit(outcome_ok(manifest.tasks[0]))
    summary = out.finalize(manifest, {})
    assert isinstance(summary, pa.Table) and out.fs.exists("/runs/r1/summary.parquet")


def test_resume_removes_stale_temporaries_of_a_killed_run(tmp_path):
    """kill -9 between writing a temporary and renaming it leaves the temporary: the next run removes it."""
    out = RunOutput(str(tmp_path / "out"))
    out.prepare({"x": 1})
    stale = [tmp_path / "out" / "frames" / ".tmp-0123abcd-v.parquet",
             tmp_path / "out" / "_vidbatch" / "ledger" / ".tmp-0123abcd-v.json",
             tmp_path / "out" / "_vidbatch" / ".probe-0123abcd"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    kept = tmp_path / "out" / "frames" / "v.parquet"
    kept.write_bytes(b"committed")
    RunOutput(str(tmp_path / "out")).prepare({"x": 1})
    assert [p for p in stale if p.exists()] == []
    assert kept.read_bytes() == b"committed"
    assert RunOutput(str(tmp_path / "out")).committed() == {}
