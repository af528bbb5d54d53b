"""The end of a run killed (SIGKILL) at any moment, then run again, writes the tables a clean end writes."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd

from tests.test_output import outcome_ok
from vidbatch.io.manifest import Manifest
from vidbatch.io.output import RunOutput
from vidbatch.stages.assemble import assemble_failed

VIDEOS = 3000
FINALIZE = ("import sys, time; from vidbatch.io.manifest import Manifest; from vidbatch.io.output import RunOutput; "
            "m = Manifest.from_path(sys.argv[1]); print('go', flush=True); t = time.monotonic(); "
            "RunOutput(sys.argv[2]).finalize(m, {'counts': {}}); print(time.monotonic() - t, flush=True)")


def _committed(tmp_path):
    """A manifest and an output where every video is committed: most once, some failed then redone, some twice."""
    manifest_path = tmp_path / "manifest.csv"
    manifest_path.write_text("uri,n\n" + "".join(f"v{i}.mp4,{i}\n" for i in range(VIDEOS)))
    manifest = Manifest.from_path(str(manifest_path))
    out = RunOutput(str(tmp_path / "out"))
    out.prepare({})
    tasks = list(manifest.tasks)
    for start in range(0, VIDEOS, 256):
        out.commit_batch([outcome_ok(t) if i % 7 else assemble_failed(t.video_id, t.key, "timeout: no progress", {}, "m", 0.0)
                          for i, t in enumerate(tasks[start:start + 256], start)])
    out.commit_batch([outcome_ok(t) for t in tasks[::7]] + [outcome_ok(t) for t in tasks[1::50]])
    return str(manifest_path), str(tmp_path / "out")


def _tables(out):
    frames = pd.read_parquet(os.path.join(out, "frames")).sort_values(["video_id", "frame_index"], ignore_index=True)
    return {name: pd.read_parquet(os.path.join(out, name)) for name in
            ("summary.parquet", "segments.parquet", "shots.parquet", "_vidbatch/frames_index.parquet")} | {"frames": frames}


def test_a_finalize_killed_at_any_moment_then_rerun_gives_the_clean_tables(tmp_path):
    manifest, out = _committed(tmp_path)
    clean = str(tmp_path / "clean")
    shutil.copytree(out, clean)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    lines = subprocess.run([sys.executable, "-c", FINALIZE, manifest, clean], check=True, env=env, text=True,
                           capture_output=True).stdout.split()
    work = float(lines[-1])  # the finalize itself, after imports and the manifest
    expected = _tables(clean)
    assert len(expected["summary.parquet"]) == VIDEOS and (expected["summary.parquet"]["status"] == "ok").all()
    rng = random.Random(0)  # jitter, so the kills do not always land on the same instruction
    for fraction in (0.25, 0.5, 0.75, 0.9, 1.0):  # killed early, in the middle, late, one after the other
        process = subprocess.Popen([sys.executable, "-c", FINALIZE, manifest, out], env=env, text=True,
                                   stdout=subprocess.PIPE)
        assert process.stdout.readline().strip() == "go"
        time.sleep(work * fraction * rng.uniform(0.8, 1.2))
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()
    RunOutput(out).finalize(Manifest.from_path(manifest), {"counts": {}})
    got = _tables(out)
    for name, table in expected.items():
        pd.testing.assert_frame_equal(got[name], table, obj=name)
    leftovers = [f for _, _, files in os.walk(out) for f in files if f.startswith(".tmp")]
    assert leftovers == []
