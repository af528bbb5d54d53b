"""The Ray engine's driver at archive scale: its peak memory against the manifest's size, in real runs.

    python benchmarks/ray_driver.py                         # 1,000 and 100,000 tiny videos (about 15 minutes)
    python benchmarks/ray_driver.py --sizes 1000 10000      # a quicker pair

Each size is one real `vidbatch label --engine ray` (a private local Ray instance with every CPU) of that many
tiny videos (2 s, 96x96, 10 fps; hard links to archive_scale's 300 distinct files) with the demo's model
architecture (small_cnn, 64x64), in a fresh process, as a user runs it. The driver's peak RSS is that process's
own (VmHWM, read when the command returns); Ray's workers are other processes. What the driver does with the manifest: it
validates it in one streamed pass, ships the finished videos' hashes (none here), and at the end writes the
tables a manifest slice at a time; Ray Data reads the manifest's rows on the workers.

Done when (issue 22): the peak at 100,000 videos is within 100 MB of the peak at 1,000.
Results: benchmarks/results/ray_driver_<host>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

WRAPPER = (
    "import sys\n"
    "target = sys.argv[1]\n"
    "def peak():\n"
    "    with open('/proc/self/status') as handle:\n"
    "        kb = next(int(l.split()[1]) for l in handle if l.startswith('VmHWM:'))\n"
    "    with open(target, 'w') as out:\n"
    "        out.write(str(kb))\n"
    "sys.argv = ['vidbatch'] + sys.argv[2:]\n"
    "from vidbatch.cli import main\n"
    "code = main()\n"
    "peak()\n"
    "sys.exit(code)\n"
)


def run(manifest: str, model: str, out: str, work: str) -> dict:
    """One `vidbatch label --engine ray` in a fresh process: its peak RSS, wall time and run.json counts."""
    from archive_scale import ENV

    peak_file = os.path.join(work, "peak_kb")
    shutil.rmtree(out, ignore_errors=True)  # a fresh run, never a resume of an earlier one
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", WRAPPER, peak_file, "label", manifest, "--model", model, "--out",
                             out, "--engine", "ray", "--no-progress"],
                            capture_output=True, text=True, env=ENV)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"vidbatch label failed ({result.returncode}): {result.stderr[-3000:]}")
    record = json.load(open(os.path.join(out, "run.json")))
    return {"videos": record["counts"]["videos"], "ok": record["counts"]["ok"], "elapsed_s": record["elapsed_s"],
            "process_wall_s": round(wall, 1), "driver_peak_rss_mb": round(int(open(peak_file).read()) / 1024, 1),
            "layout": record["stages"].get("layout")}


def markdown(results: dict) -> str:
    rows = results["sizes"]
    lines = ["# The Ray engine's driver against the manifest's size (real runs)", "",
             "`vidbatch label --engine ray` of N tiny videos on this machine (a private local Ray instance); the "
             "driver process's peak RSS (VmHWM), its wall time, and the pipeline's time (run.json).", "",
             "| videos | ok | driver peak RSS | process wall | pipeline |", "|---|---|---|---|---|"]
    lines += [f"| {r['videos']:,} | {r['ok']:,} | {r['driver_peak_rss_mb']:.0f} MB | {r['process_wall_s']:.0f} s | "
              f"{r['elapsed_s']:.0f} s |" for r in rows]
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        lines.append(f"\nDriver peak RSS at {b['videos']:,} videos minus at {a['videos']:,}: "
                     f"{b['driver_peak_rss_mb'] - a['driver_peak_rss_mb']:+.0f} MB "
                     f"({(b['driver_peak_rss_mb'] - a['driver_peak_rss_mb']) * 2**20 / (b['videos'] - a['videos']):.0f} "
                     "bytes a video).")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--work", help="a folder for the videos and outputs (default: a temporary one)")
    args = parser.parse_args()
    from archive_scale import make_models, make_videos
    from driver_scale import save

    work = args.work or tempfile.mkdtemp(prefix="vidbatch-ray-driver-")
    model = make_models(work)["demo"]
    rows = []
    for n in args.sizes:
        manifest = make_videos(work, n)
        rows.append(run(manifest, model, os.path.join(work, f"out{n}"), work))
        print(json.dumps(rows[-1]), flush=True)
    save("ray_driver", rows, markdown)


if __name__ == "__main__":
    main()
