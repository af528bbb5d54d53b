"""Archive scale: what each video costs when there are very many short ones, in one run.

    python benchmarks/archive_scale.py                      # N = 1,000 and 10,000 (about 10 minutes on 2 cores)
    python benchmarks/archive_scale.py --sizes 1000 10000 100000
    python benchmarks/archive_scale.py --quick              # N = 200 and 500, a smoke run

Measured on tiny videos (2 s, 96x96, 10 fps: user clips at archive-thumbnail size) with the demo's model
architecture (small_cnn, 64x64, untrained: throughput does not depend on the weights):

- videos/s of `vidbatch label` (local engine, defaults) against the decode-only limit (one process per CPU,
  each opening, decoding, sampling and resizing whole videos with vidbatch's decoder and keeping nothing);
- the per-video cost at the margin, (T(N2) - T(N1)) / (N2 - N1), so start-up does not count, for every N;
- objects under `--out` per 1,000 videos; the one-video frames query (`pd.read_parquet(out/frames, filters=...)`);
- the resume of a finished run (every video already committed);
- S3 (a moto server on 127.0.0.1) against local disk at 500 videos: outputs on S3, then videos and outputs;
- the Ray engine against the local one: per-video cost at the margin between 500 and 2,000 videos;
- one long video (20 minutes) on the Ray engine, whole and cut into time ranges of 200 items, against the
  local engine: time, ranges committed, and whether the tables agree.

Every `vidbatch label` runs as a user runs it, in a fresh process; times are the pipeline's own
(`run.json` elapsed_s: model load and decoder start-up included, interpreter and import excluded), and the
process wall time is kept too. Results: benchmarks/results/archive_<host>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
DISTINCT = 300
"""Distinct video files; larger archives list hard links to them under new names (decoding costs the same)."""


def make_videos(work: str, n: int) -> str:
    """A manifest of n tiny videos: DISTINCT real files, hard-linked under new names up to n."""
    import pandas as pd

    from vidbatch.apps.synth import SynthSpec, write_video

    source = os.path.join(work, "distinct")
    os.makedirs(source, exist_ok=True)
    spec = SynthSpec(width=96, height=96, fps=10, seconds=2)
    labels = ("ball", "box", "waves")
    for i in range(DISTINCT):
        path = os.path.join(source, f"d{i:04d}.mp4")
        if not os.path.exists(path):
            write_video(path, labels[i % 3], seed=i, spec=spec)
    folder = os.path.join(work, f"set{n}")
    os.makedirs(folder, exist_ok=True)
    rows = []
    for i in range(n):
        path = os.path.join(folder, f"v{i:07d}.mp4")
        if not os.path.exists(path):
            os.link(os.path.join(source, f"d{i % DISTINCT:04d}.mp4"), path)
        rows.append({"video_id": f"v{i:07d}", "uri": f"v{i:07d}.mp4", "label": labels[i % DISTINCT % 3]})
    manifest = os.path.join(folder, "manifest.csv")
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def make_models(work: str) -> dict[str, str]:
    """The demo's architecture, and a near-free model: what a GPU node looks like to its CPUs."""
    import keras

    from vidbatch.model.architectures import small_cnn
    from vidbatch.model.bundle import BundleSpec, save_bundle

    folders = {"demo": os.path.join(work, "model"), "near_free": os.path.join(work, "model-near-free")}
    if not os.path.exists(os.path.join(folders["demo"], "bundle.json")):
        spec = BundleSpec(classes=("ball", "box", "waves"), input_size=(64, 64), preprocessing="unit", name="small_cnn")
        save_bundle(small_cnn((64, 64, 3), 3, width=16), spec, folders["demo"])
    if not os.path.exists(os.path.join(folders["near_free"], "bundle.json")):
        inputs = keras.Input((64, 64, 3))
        outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
        spec = BundleSpec(classes=("ball", "box", "waves"), input_size=(64, 64), preprocessing="unit", name="near_free")
        save_bundle(keras.Model(inputs, outputs), spec, folders["near_free"])
    return folders


def model_limit(model: str, items: int = 4096) -> float:
    """Items/s of the model alone (batched predict on frames already in memory), in a fresh process."""
    code = (
        "import sys, time, numpy as np\n"
        "from vidbatch.model.bundle import load_bundle\nfrom vidbatch.stages.classify import Predictor\n"
        "p = Predictor(load_bundle(sys.argv[1]), batch_size=32); x = np.zeros((int(sys.argv[2]), 64, 64, 3), np.uint8)\n"
        "p.predict(x[:64]); t = time.perf_counter(); p.predict(x); print(len(x) / (time.perf_counter() - t))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, model, str(items)], capture_output=True, text=True, env=ENV,
                            check=True)
    return float(result.stdout.strip().splitlines()[-1])


def _decode_file(path: str) -> int:
    from vidbatch.stages.decode import DecodeSpec, VideoDecoder
    from vidbatch.stages.sampling import FrameSampling

    decoder = VideoDecoder(path, DecodeSpec(width=64, height=64, sampling=FrameSampling(2.0), chunk_frames=32))
    items = sum(len(chunk["frames"]) for chunk in decoder.chunks())
    decoder.close()
    return items


def decode_limit(manifest: str) -> dict:
    """One process per CPU decoding whole videos (vidbatch's decoder, 2 fps, 64x64), keeping nothing."""
    from concurrent.futures import ProcessPoolExecutor

    import pandas as pd

    folder = os.path.dirname(manifest)
    paths = [os.path.join(folder, u) for u in pd.read_csv(manifest).uri]
    workers = os.cpu_count() or 1
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_decode_file, paths[: 4 * workers]))  # start-up and imports out of the measurement
        started = time.perf_counter()
        list(pool.map(_decode_file, paths, chunksize=16))
        seconds = time.perf_counter() - started
    return {"videos": len(paths), "seconds": seconds, "videos_per_s": len(paths) / seconds, "workers": workers}


def label(manifest: str, model: str, out: str, *extra: str) -> dict:
    """`vidbatch label` as a user runs it; the pipeline's time from run.json, the process's wall time."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "vidbatch.cli", "label", manifest, "--model", model, "--out", out,
                             "--no-progress", *extra], capture_output=True, text=True, env=ENV)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"vidbatch label failed ({result.returncode}): {result.stderr[-3000:]}")
    record = json.loads(_read(out, "run.json"))
    return {"elapsed_s": record["elapsed_s"], "process_wall_s": round(wall, 3), "videos": record["counts"]["videos"],
            "resumed": record["counts"]["resumed_from_previous_run"], "layout": record["stages"].get("layout"),
            "commits": record["stages"].get("commits")}


def _read(out: str, name: str) -> bytes:
    import fsspec

    with fsspec.open(out.rstrip("/") + "/" + name, "rb") as handle:
        return handle.read()


def objects_under(out: str) -> int:
    return sum(len(files) for _, _, files in os.walk(out))


QUERIES = {
    "pandas": "pd.read_parquet(out + '/frames', filters=[('video_id', '==', vid)])",
    "read_frames": "vidbatch.read_frames(out, vid)",
}
"""The README's one-video query (a filter over the frames dataset), and vidbatch's through the frames index."""


def query_time(out: str, ids: list[str], how: str = "pandas") -> dict:
    """A one-video query, timed in a fresh process (no warm caches of this one)."""
    code = (
        "import json, sys, time, pandas as pd, vidbatch\n"
        "out, ids = sys.argv[1], json.loads(sys.argv[2]); times = []\n"
        "for vid in ids:\n"
        f"    t = time.perf_counter(); f = {QUERIES[how]}\n"
        "    times.append(time.perf_counter() - t); assert len(f) > 0 and set(f.video_id) == {vid}\n"
        "print(json.dumps(times))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, out, json.dumps(ids)], capture_output=True, text=True, env=ENV,
                            check=True)
    times = json.loads(result.stdout)
    return {"median_s": statistics.median(times[1:]), "first_s": times[0], "max_s": max(times)}


class MotoServer:
    """A real S3 endpoint on 127.0.0.1 (moto in server mode), as the tests use."""

    def __enter__(self):
        import socket
        import urllib.request

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.process = subprocess.Popen([shutil.which("moto_server") or "moto_server", "-H", "127.0.0.1", "-p", str(port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1)
                break
            except Exception:
                if time.monotonic() > deadline:
                    self.process.kill()
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.1)
        ENV.update({"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                    "AWS_DEFAULT_REGION": "us-east-1"})
        os.environ.update({k: ENV[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                               "AWS_DEFAULT_REGION")})
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(timeout=10)


def s3_runs(manifest: str, model: str, work: str) -> dict:
    import pandas as pd
    import s3fs

    with MotoServer() as server:
        fs = s3fs.S3FileSystem(endpoint_url=server.endpoint)
        fs.mkdir("archive")
        baseline = os.path.join(work, "s3-baseline-out")
        shutil.rmtree(baseline, ignore_errors=True)
        local = label(manifest, model, baseline)
        out_only = label(manifest, model, "s3://archive/out-only")
        folder = os.path.dirname(manifest)
        rows = pd.read_csv(manifest)
        fs.put([os.path.join(folder, u) for u in rows.uri], "archive/videos/")
        remote = os.path.join(work, "s3-manifest.csv")
        rows.assign(uri=["s3://archive/videos/" + u for u in rows.uri]).to_csv(remote, index=False)
        both = label(remote, model, "s3://archive/out-both")
        objects = len(fs.find("archive/out-both"))
    return {"videos": local["videos"], "local": local, "out_on_s3": out_only, "videos_and_out_on_s3": both,
            "ratio_out_on_s3": out_only["elapsed_s"] / local["elapsed_s"],
            "ratio_videos_and_out_on_s3": both["elapsed_s"] / local["elapsed_s"], "objects_on_s3": objects}


SHARED_VIDEOS = os.path.join(os.path.dirname(ROOT), "shared", "data", "videos")


def _decode_all(paths: list[str], sampling) -> tuple[float, int]:
    from vidbatch.stages.decode import DecodeSpec
    from vidbatch.stages.decode_job import make_decoder

    started, items = time.perf_counter(), 0
    for path in paths:
        decoder = make_decoder(path, DecodeSpec(width=224, height=224, sampling=sampling))
        items += sum(len(chunk["frames"]) for chunk in decoder.chunks())
        decoder.close()
    return time.perf_counter() - started, items


def keyframes_vs_rate(work: str, archive_manifest: str) -> dict:
    """--sampling keyframes against the default 2 fps: decode speed, end-to-end speed, video-label agreement.

    On the shared real clips (when present) with a model whose labels mean something without training: the
    hand-set colour model of the tests (red, blue or green dominance); and on the tiny synthetic archive.
    """
    import pandas as pd

    from tests.support.helpers import make_colour_bundle
    from vidbatch.stages.sampling import FrameSampling, KeyframeSampling

    result = {}
    model = os.path.join(work, "model-colour")
    if not os.path.exists(os.path.join(model, "bundle.json")):
        make_colour_bundle(model, size=64)
    sets = {"synthetic_archive": archive_manifest}
    if os.path.isdir(SHARED_VIDEOS):
        rows = [{"video_id": name, "uri": os.path.join(SHARED_VIDEOS, name)} for name in sorted(os.listdir(SHARED_VIDEOS))]
        sets["shared_clips"] = os.path.join(work, "shared-clips.csv")
        pd.DataFrame(rows).to_csv(sets["shared_clips"], index=False)
    for name, manifest in sets.items():
        frame = pd.read_csv(manifest)
        paths = [u if os.path.isabs(u) else os.path.join(os.path.dirname(manifest), u) for u in frame.uri]
        rate_s, rate_items = min(_decode_all(paths, FrameSampling(2.0)) for _ in range(3))
        key_s, key_items = min(_decode_all(paths, KeyframeSampling()) for _ in range(3))
        outs = {mode: os.path.join(work, f"kf-{name}-{mode}") for mode in ("rate", "keyframes")}
        for out in outs.values():
            shutil.rmtree(out, ignore_errors=True)
        rate = label(manifest, model, outs["rate"])
        keys = label(manifest, model, outs["keyframes"], "--sampling", "keyframes")
        a = pd.read_parquet(os.path.join(outs["rate"], "summary.parquet"))
        b = pd.read_parquet(os.path.join(outs["keyframes"], "summary.parquet"))
        record = json.loads(_read(outs["keyframes"], "run.json"))
        result[name] = {
            "videos": len(frame), "decode_s": {"rate_2fps": rate_s, "keyframes": key_s},
            "decode_speedup": rate_s / key_s, "items": {"rate_2fps": rate_items, "keyframes": key_items},
            "label_s": {"rate_2fps": rate["elapsed_s"], "keyframes": keys["elapsed_s"]},
            "label_speedup": rate["elapsed_s"] / keys["elapsed_s"],
            "video_label_agreement": float((a.pred_label.values == b.pred_label.values).mean()),
            "few_keyframes": record["counts"].get("few_keyframes"),
        }
        print(f"keyframes vs 2 fps, {name}: decode {rate_s / key_s:.1f}x faster, labeling {rate['elapsed_s'] / keys['elapsed_s']:.1f}x; "
              f"video labels agree on {result[name]['video_label_agreement']:.0%}; {result[name]['few_keyframes']} of "
              f"{len(frame)} videos have fewer than 3 key frames", flush=True)
    return result


def long_video_runs(work: str, model: str, minutes: float, range_items: int) -> dict:
    """One long video on the Ray engine, whole and cut into time ranges of `range_items` items, and on the local
    engine: wall times, how many ranges were committed, and whether the tables agree."""
    import pandas as pd

    from vidbatch.apps.synth import SynthSpec, write_video
    from vidbatch.io.output import RunOutput

    folder = os.path.join(work, "long")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"long-{minutes:g}min.mp4")
    if not os.path.exists(path):
        write_video(path, "waves", seed=1, spec=SynthSpec(width=96, height=96, fps=10, seconds=int(minutes * 60)))
    manifest = os.path.join(folder, "manifest.csv")
    pd.DataFrame([{"video_id": "long", "uri": os.path.basename(path)}]).to_csv(manifest, index=False)
    runs, tables = {}, {}
    for name, extra in (("local", ()), ("ray_whole", ("--engine", "ray")),
                        ("ray_ranges", ("--engine", "ray", "--ray-range-items", str(range_items)))):
        out = os.path.join(work, f"out-long-{name}")
        shutil.rmtree(out, ignore_errors=True)
        runs[name] = label(manifest, model, out, *extra)
        records = RunOutput(out)._records()
        runs[name]["ranges_committed"] = sum(e["status"] == "range" for r in records for e in r["videos"])
        frames = pd.read_parquet(os.path.join(out, "frames")).sort_values("frame_index").reset_index(drop=True)
        tables[name] = (frames, pd.read_parquet(os.path.join(out, "summary.parquet")),
                        pd.read_parquet(os.path.join(out, "segments.parquet")))
    base_frames, base_summary, base_segments = tables["local"]
    agree = {}
    for name in ("ray_whole", "ray_ranges"):
        frames, summary, segments = tables[name]
        agree[name] = {
            "frames_rows": len(frames) == len(base_frames),
            "smoothed_labels": frames.smoothed_label.tolist() == base_frames.smoothed_label.tolist(),
            "shot_index": frames.shot_index.tolist() == base_frames.shot_index.tolist(),
            "max_smoothed_score_diff": float((frames.smoothed_score - base_frames.smoothed_score).abs().max()),
            "video_label": summary.pred_label.tolist() == base_summary.pred_label.tolist(),
            "segments": segments[["start_s", "end_s", "label"]].equals(base_segments[["start_s", "end_s", "label"]]),
        }
    return {"video": f"{minutes:g} min, 96x96, 10 fps, sampled at 2 fps", "items": len(base_frames),
            "range_items": range_items, "runs": runs, "agree_with_local": agree}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--no-keyframes", action="store_true")
    parser.add_argument("--no-long-video", action="store_true")
    parser.add_argument("--long-minutes", type=float, default=20.0, help="length of the long video (Ray, time ranges)")
    parser.add_argument("--no-margins", action="store_true", help="only the --sizes given (not 500 and 2,000 too)")
    parser.add_argument("--results", default=None, help="results file name (default archive_vm, or archive_quick)")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "vidbatch-archive-bench"))
    args = parser.parse_args()
    sizes = [200, 500] if args.quick else sorted(args.sizes)
    margin_sizes = (200, 500) if args.quick else (500, 2000)
    os.makedirs(args.work, exist_ok=True)
    models = make_models(args.work)
    model = models["demo"]
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "host": platform.node()},
                     "video": "2 s, 96x96, 10 fps (MPEG-4), sampled at 2 fps", "model": "small_cnn 64x64, width 16",
                     "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "local": {}}

    for n in sorted(set(sizes) | (set() if args.no_margins else set(margin_sizes))):
        manifest = make_videos(args.work, n)
        out = os.path.join(args.work, f"out-local-{n}")
        shutil.rmtree(out, ignore_errors=True)
        limit = decode_limit(manifest)
        run = label(manifest, model, out)
        resume = label(manifest, model, out)
        shutil.rmtree(out + "-near-free", ignore_errors=True)
        near_free = label(manifest, models["near_free"], out + "-near-free")
        entry = {"videos": n, "decode_limit": limit, "run": run, "resume": resume, "near_free_run": near_free,
                 "videos_per_s": n / run["elapsed_s"], "share_of_decode_limit": n / run["elapsed_s"] / limit["videos_per_s"],
                 "near_free_videos_per_s": n / near_free["elapsed_s"],
                 "near_free_share_of_decode_limit": n / near_free["elapsed_s"] / limit["videos_per_s"],
                 "objects_under_out": objects_under(out), "objects_per_1000_videos": objects_under(out) * 1000 / n,
                 "one_video_query": query_time(out, [f"v{i:07d}" for i in range(0, n, max(1, n // 6))][:6]),
                 "one_video_read_frames": query_time(out, [f"v{i:07d}" for i in range(0, n, max(1, n // 6))][:6],
                                                     "read_frames")}
        results["local"][str(n)] = entry
        print(f"N={n}: demo model {entry['videos_per_s']:.0f} videos/s = {entry['share_of_decode_limit']:.0%} of the decode "
              f"limit ({limit['videos_per_s']:.0f}); near-free model {entry['near_free_videos_per_s']:.0f} = "
              f"{entry['near_free_share_of_decode_limit']:.0%}; {entry['objects_under_out']} objects; query "
              f"{entry['one_video_query']['median_s'] * 1000:.0f} ms (read_frames "
              f"{entry['one_video_read_frames']['median_s'] * 1000:.0f} ms); resume {resume['elapsed_s']:.2f} s", flush=True)

    local = results["local"]
    ordered = sorted(int(n) for n in local)
    for key, name in (("run", "local_margin_ms_per_video"), ("near_free_run", "near_free_margin_ms_per_video")):
        results[name] = {f"{a}->{b}": (local[str(b)][key]["elapsed_s"] - local[str(a)][key]["elapsed_s"]) / (b - a) * 1000
                         for a, b in zip(ordered, ordered[1:])}
        print(name, results[name], flush=True)
    results["model_limit_items_per_s"] = {name: model_limit(path) for name, path in models.items()}
    print("model-only limit (items/s):", results["model_limit_items_per_s"], flush=True)

    if not args.no_keyframes:
        results["keyframes"] = keyframes_vs_rate(args.work, make_videos(args.work, margin_sizes[0]))

    if not args.no_s3:
        n = margin_sizes[1]
        results["s3"] = s3_runs(make_videos(args.work, n), model, args.work)
        print(f"S3 / local at {n} videos: outputs on S3 {results['s3']['ratio_out_on_s3']:.2f}, videos and outputs "
              f"{results['s3']['ratio_videos_and_out_on_s3']:.2f}", flush=True)

    if not args.no_ray:
        a, b = margin_sizes
        ray_runs = {}
        for n in (a, b):
            out = os.path.join(args.work, f"out-ray-{n}")
            shutil.rmtree(out, ignore_errors=True)
            ray_runs[str(n)] = label(make_videos(args.work, n), model, out, "--engine", "ray")
        ray_margin = (ray_runs[str(b)]["elapsed_s"] - ray_runs[str(a)]["elapsed_s"]) / (b - a) * 1000
        local_margin = (local[str(b)]["run"]["elapsed_s"] - local[str(a)]["run"]["elapsed_s"]) / (b - a) * 1000
        results["ray"] = {"runs": ray_runs, "margin_ms_per_video": ray_margin, "local_margin_ms_per_video": local_margin,
                          "ratio": ray_margin / local_margin}
        print(f"Ray per-video cost at the margin: {ray_margin:.2f} ms vs local {local_margin:.2f} ms "
              f"({ray_margin / local_margin:.2f}x)", flush=True)
        if not args.no_long_video:
            minutes = 2.0 if args.quick else args.long_minutes
            results["long_video"] = long = long_video_runs(args.work, model, minutes, range_items=200)
            print("long video:", json.dumps({k: (v["elapsed_s"], v["ranges_committed"]) for k, v in long["runs"].items()}),
                  json.dumps(long["agree_with_local"]), flush=True)

    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    folder = os.path.join(HERE, "results")
    os.makedirs(folder, exist_ok=True)
    name = args.results or ("archive_quick" if args.quick else "archive_vm")
    with open(os.path.join(folder, name + ".json"), "w") as handle:
        json.dump(results, handle, indent=2, sort_keys=True)
    print("wrote", os.path.join(folder, name + ".json"))


if __name__ == "__main__":
    main()
