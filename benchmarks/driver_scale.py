"""The driver at archive scale: peak memory and time of resume and of the end of a run, on synthesized outputs.

    python benchmarks/driver_scale.py --videos 100000     # one size; the last line printed is one JSON object
    python benchmarks/driver_scale.py --sizes 100000 500000 1000000   # several, each in fresh processes; results file

What is measured is what the driver does with no video decoded (its imports include TensorFlow, as the
`vidbatch label` driver's do): at resume, reading the manifest and the commit
records to find the videos left to label (`pipeline.pending`); at the end of a run, a failed row for every video
with no commit, the counts, and the tables (`pipeline.finish`: `RunOutput.finalize`). Each runs in its own fresh
process, and its peak RSS is that process's own (VmHWM), with the RSS it had after its imports beside it.

The outputs are synthesized as the product writes them: one real `vidbatch label` of two tiny generated videos
gives a commit record; each synthesized record holds `--commit-videos` (256) copies of its video entry under new
video ids, and names a frames shard holding the entry's frame rows for each of its videos. A finished run has
every video committed, and 1% of them committed a second time in a later record (a retried task, whose earlier
rows finalize removes from their shard); a half-finished run has the first half of the manifest committed.

Results: benchmarks/results/driver_scale_<host>.json (and .md with --sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
       "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
COMMIT_VIDEOS = 256
RETRIED = 0.01


def template(work: str) -> dict:
    """A real commit record's video entry and its frame rows, from `vidbatch label` on two tiny videos."""
    import pyarrow.parquet as pq

    from archive_scale import make_models
    from vidbatch.apps.synth import SynthSpec, write_video

    folder = os.path.join(work, "template")
    os.makedirs(folder, exist_ok=True)
    spec = SynthSpec(width=96, height=96, fps=10, seconds=2)
    with open(os.path.join(folder, "manifest.csv"), "w") as handle:
        handle.write("video_id,uri,label\n")
        for i, label in enumerate(("ball", "box")):
            write_video(os.path.join(folder, f"t{i}.mp4"), label, seed=i, spec=spec)
            handle.write(f"t{i},t{i}.mp4,{label}\n")
    model = make_models(work)["demo"]
    out = os.path.join(folder, "out")
    subprocess.run([sys.executable, "-m", "vidbatch.cli", "label", os.path.join(folder, "manifest.csv"), "--model",
                    model, "--out", out, "--overwrite", "--no-progress"], check=True, env=ENV,
                   stdout=subprocess.DEVNULL)
    commits = os.path.join(out, "_vidbatch", "commits")
    record = json.load(open(os.path.join(commits, sorted(os.listdir(commits))[0])))
    entry = record["videos"][0]
    frames = pq.read_table(os.path.join(out, record["frames_file"]))
    frames = frames.filter([v == entry["video_id"] for v in frames.column("video_id").to_pylist()])
    return {"entry": entry, "frames": frames, "format": record["format"]}


def synthesize(out: str, n: int, committed: int, retried: float, base: dict) -> str:
    """A manifest of n videos, and an output folder where the first `committed` of them are committed (and a
    `retried` share of those a second time, later). Returns the manifest's path."""
    import numpy as np
    import pyarrow as pa

    from vidbatch.io.manifest import output_key
    from vidbatch.io.output import COMMITS_DIR, FRAMES_DIR, ROW_GROUP_ROWS, SHARD_PREFIX, table_to_parquet_bytes

    os.makedirs(out, exist_ok=True)
    ids = [f"v{i:08d}" for i in range(n)]
    manifest = os.path.join(os.path.dirname(out), f"manifest_{n}.csv")
    if not os.path.exists(manifest):
        with open(manifest, "w") as handle:
            handle.write("video_id,uri,label\n")
            for i, video_id in enumerate(ids):
                handle.write(f"{video_id},videos/{video_id}.mp4,{('ball', 'box', 'waves')[i % 3]}\n")
    entry, frames = base["entry"], base["frames"]
    rows = frames.num_rows
    before = json.dumps({k: v for k, v in entry.items() if k not in ("video_id", "key", "segments", "shots_table")})
    segments, shots = json.dumps(entry["segments"]), json.dumps(entry["shots_table"])
    old_id = json.dumps(entry["video_id"])
    order = list(range(committed))
    rng = np.random.default_rng(0)
    order += sorted(rng.choice(committed, int(committed * retried), replace=False).tolist()) if committed else []
    os.makedirs(os.path.join(out, COMMITS_DIR), exist_ok=True)
    os.makedirs(os.path.join(out, FRAMES_DIR), exist_ok=True)
    for number, start in enumerate(range(0, len(order), COMMIT_VIDEOS)):
        batch = f"{number:020d}-{number:012x}"
        mine = [ids[i] for i in order[start:start + COMMIT_VIDEOS]]
        shard = f"{FRAMES_DIR}/{SHARD_PREFIX}{batch}.parquet"
        table = pa.concat_tables([frames] * len(mine))
        table = table.set_column(table.schema.get_field_index("video_id"), "video_id",
                                 pa.array(np.repeat(mine, rows).tolist(), pa.string()))
        with open(os.path.join(out, shard), "wb") as handle:
            handle.write(table_to_parquet_bytes(table, ROW_GROUP_ROWS))
        videos = []
        for video_id in mine:
            quoted = json.dumps(video_id)
            videos.append(f'{{"video_id": {quoted}, "key": {json.dumps(output_key(video_id))}, {before[1:-1]}, '
                          f'"segments": {segments.replace(old_id, quoted)}, '
                          f'"shots_table": {shots.replace(old_id, quoted)}}}')
        text = (f'{{"format": {json.dumps(base["format"])}, "batch": "{batch}", "frames_file": "{shard}", '
                f'"videos": [{", ".join(videos)}]}}')
        with open(os.path.join(out, COMMITS_DIR, batch + ".json"), "w") as handle:
            handle.write(text)
    return manifest


def _rss_mb() -> float:
    """This process's peak RSS (VmHWM: its own address space's high-water mark; `ru_maxrss` would start from
    the forking parent's peak)."""
    with open("/proc/self/status") as handle:
        line = next(line for line in handle if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def measure(what: str, manifest: str, out: str) -> dict:
    """In this process (a fresh one): the driver's resume or end of run. Peak RSS is this process's own. Arrow's
    default pool is the system allocator, as in the `vidbatch` command (`io/memory.py`)."""
    from vidbatch.io.memory import prefer_system_pool

    prefer_system_pool()
    from vidbatch import pipeline
    from vidbatch.core.config import LabelConfig
    from vidbatch.io.manifest import Manifest
    from vidbatch.io.output import RunOutput

    imported = _rss_mb()
    started = time.perf_counter()
    loaded = Manifest.from_path(manifest)
    output = RunOutput(out)
    if what == "resume":
        todo, resumed = pipeline.pending(output, loaded)
        result = {"todo": len(todo), "resumed": resumed}
    elif what == "resume_whole_ledger":  # how resume read the commits before `ledger.latest_status`
        statuses = output.ledger().column_for(pipeline.keys(loaded), "status")
        todo = loaded.tasks.where([status != "ok" for status in statuses])
        result = {"todo_whole_ledger": len(todo)}
    else:
        config = LabelConfig(manifest=manifest, model="model", out=out, commit_videos=COMMIT_VIDEOS)
        record = {"config": config.to_record(), "model": {"name": "synthesized"}, "stages": {}}
        ok, failed, _ = pipeline.finish(config, output, loaded, record, time.monotonic(), 0, 0)
        result = {"ok": ok, "failed": failed}
    return {**result, f"{what}_s": round(time.perf_counter() - started, 2),
            f"{what}_peak_rss_mb": round(_rss_mb(), 1), f"{what}_rss_after_imports_mb": round(imported, 1)}


def one_size(n: int, work: str, base: dict) -> dict:
    """Resume (half the videos committed) and finalize (all committed, 1% twice), each in a fresh process."""
    result = {"videos": n}
    for what, committed in (("resume", n // 2), ("resume_whole_ledger", n // 2), ("finalize", n)):
        out = os.path.join(work, f"out_{what}_{n}")
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        manifest = synthesize(out, n, committed, RETRIED if what == "finalize" else 0.0, base)  # a fresh copy each
        synthesized = time.perf_counter() - started
        line = subprocess.run([sys.executable, __file__, "--measure", what, manifest, out], env=ENV, check=True,
                              capture_output=True, text=True).stdout.strip().splitlines()[-1]
        result.update(json.loads(line), **{f"{what}_synthesis_s": round(synthesized, 1)})
        shutil.rmtree(out, ignore_errors=True)
    return result


def markdown(results: dict) -> str:
    rows = results["sizes"]
    lines = ["# The driver at archive scale (synthesized outputs)", "",
             "Peak RSS of the process that does the work (MB), the RSS it had after its imports, and its time. "
             "Resume: half the videos committed, resolved from 64-bit key hashes (`ledger.done_hashes`); "
             "`whole ledger`: resume as it read the commits before `ledger.latest_status` (`RunOutput.ledger`, "
             "every entry's fields).", "",
             "| videos | resume | whole ledger | finalize |", "|---|---|---|---|"]
    lines += [f"| {r['videos']:,} | " + " | ".join(
        f"{r[w + '_peak_rss_mb']:.0f} ({r[w + '_rss_after_imports_mb']:.0f}), {r[w + '_s']:.1f} s"
        for w in ("resume", "resume_whole_ledger", "finalize")) + " |" for r in rows]
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        for what in ("resume", "resume_whole_ledger", "finalize"):
            per = (b[f"{what}_peak_rss_mb"] - a[f"{what}_peak_rss_mb"]) * 2**20 / (b["videos"] - a["videos"])
            lines.append(f"\n{what}: peak RSS grows {per:,.0f} bytes a video between {a['videos']:,} and "
                         f"{b['videos']:,} videos")
    return "\n".join(lines) + "\n"


def save(name: str, rows: list, markdown) -> None:
    """`rows` and this machine as results/<name>_<host>.json, and `markdown` of them as .md (printed too)."""
    results = {"sizes": rows, "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    path = os.path.join(HERE, "results", f"{name}_{platform.node() or 'host'}.json")
    with open(path, "w") as handle:
        json.dump(results, handle, indent=2)
    with open(path[:-5] + ".md", "w") as handle:
        handle.write(markdown(results))
    print(markdown(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, help="one size: print its JSON as the last line")
    parser.add_argument("--sizes", type=int, nargs="+", help="several sizes: a results file and a table")
    parser.add_argument("--measure", nargs=3, metavar=("WHAT", "MANIFEST", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--work", help="a folder for the synthesized outputs (default: a temporary one)")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    sizes = args.sizes or [args.videos or 100_000]
    work = args.work or tempfile.mkdtemp(prefix="vidbatch-driver-")
    try:
        base = template(work)
        rows = []
        for n in sizes:
            rows.append(one_size(n, work, base))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if args.sizes:
        save("driver_scale", rows, markdown)
        print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()
