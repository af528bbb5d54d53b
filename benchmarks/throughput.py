"""Labeling throughput: the tutorial's loop vs vidbatch's engines vs this machine's limits, in one run.

    python benchmarks/throughput.py                 # full run (about 15-25 min on 2 cores)
    python benchmarks/throughput.py --quick         # smoke run (a few minutes)
    KERAS_BACKEND=jax python benchmarks/throughput.py --no-ray --jit   # e.g. on a GPU machine without TF/Ray
    python benchmarks/throughput.py --encoders      # int8 TFLite encoder (LiteRT) vs float Keras MobileNetV2 only

Every mode runs in a fresh child process (so its peak RSS, process tree
included, is measured by sampling with psutil), first once to warm up, then
`--repeat` times; the table reports medians and the ratios the targets name.
Results go to benchmarks/results/<host>.json and .md.
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
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(ROOT, "..", "shared", "data", "videos")
EMBEDDER = os.path.join(ROOT, "..", "shared", "data", "weights", "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")
SHARED_CLIPS = ("bikes.mp4", "carphone_pristine.mp4", "realshort.mp4", "test.webm", "cockatoo.mp4", "vtest_h264.avi")


# ---------------------------------------------------------------- workload ---
def prepare(work: str, quick: bool, model_name: str, size: int) -> dict:
    """Videos (synthetic 640x360, plus the shared real clips when present), a short and a 20x longer video, a model."""
    sys.path.insert(0, ROOT)
    import pandas as pd

    from vidbatch.apps.synth import SynthSpec, write_video

    os.makedirs(work, exist_ok=True)
    spec = SynthSpec(width=640, height=360, fps=25, seconds=4 if quick else 12)
    rows = []
    for i, label in enumerate(("ball", "box", "waves", "ball")[: 2 if quick else 4]):
        path = os.path.join(work, f"synth_{i}.mp4")
        if not os.path.exists(path):
            write_video(path, label, seed=100 + i, spec=spec)
        rows.append({"video_id": f"synth_{i}", "uri": path, "label": label})
    if os.path.isdir(SHARED):
        for name in SHARED_CLIPS[: 2 if quick else None]:
            path = os.path.abspath(os.path.join(SHARED, name))
            if os.path.exists(path):
                rows.append({"video_id": name, "uri": path, "label": None})
    # enough videos to keep every CPU busy (a 16-CPU GPU node): the same files listed again under new ids
    copies = -(-3 * (os.cpu_count() or 1) // len(rows))
    rows = [{**row, "video_id": row["video_id"] + (f"_copy{k}" if k else "")} for k in range(copies) for row in rows]
    manifest = os.path.join(work, "bench.csv")
    pd.DataFrame(rows).to_csv(manifest, index=False)

    memory = {}
    for name, seconds in (("short", 10), ("long", 200)):
        if quick and name == "long":
            seconds = 40
        path = os.path.join(work, f"{name}.mp4")
        if not os.path.exists(path):
            write_video(path, "ball", seed=7, spec=SynthSpec(width=640, height=360, fps=25, seconds=seconds))
        memory[name] = os.path.join(work, f"{name}.csv")
        pd.DataFrame([{"video_id": name, "uri": path}]).to_csv(memory[name], index=False)

    trivial = os.path.join(work, f"model-near-free-{size}")
    if not os.path.exists(os.path.join(trivial, "bundle.json")):
        import keras

        from vidbatch.model.bundle import BundleSpec, save_bundle

        # costs the CPU next to nothing (the 8x8 centre of each frame): stands in for inference on an accelerator
        edge = max(0, size // 2 - 4)
        near_free = keras.Sequential([keras.Input((size, size, 3)), keras.layers.Cropping2D(edge),
                                      keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
        save_bundle(near_free, BundleSpec(classes=("a", "b", "c"), input_size=(size, size), preprocessing="unit",
                                          name="near_free"), trivial)

    model = os.path.join(work, f"model-{model_name}-{size}")
    if not os.path.exists(os.path.join(model, "bundle.json")):
        from vidbatch.model.architectures import backbone_model, small_cnn
        from vidbatch.model.bundle import BundleSpec, save_bundle

        if model_name == "small_cnn":
            keras_model, preprocessing = small_cnn((size, size, 3), 3), "unit"
        else:  # random weights: throughput does not depend on them, and nothing is downloaded
            keras_model, _, preprocessing = backbone_model(model_name, (size, size, 3), 3, None)
        save_bundle(keras_model, BundleSpec(classes=("a", "b", "c"), input_size=(size, size), preprocessing=preprocessing,
                                            name=model_name), model)
    encoder_model = os.path.join(work, "model-int8-encoder")
    if os.path.exists(EMBEDDER) and not os.path.exists(os.path.join(encoder_model, "bundle.json")):
        import keras

        from vidbatch.model.bundle import BundleSpec, save_bundle
        from vidbatch.model.encoder import open_encoder

        encoder = open_encoder(EMBEDDER)  # a pretrained int8 MobileNetV1 and an untrained head: speed only
        head = keras.Sequential([keras.Input((encoder.features,)), keras.layers.Dense(3, activation="softmax")])
        save_bundle(head, BundleSpec(classes=("a", "b", "c"), input_size=encoder.input_size, name="int8_encoder"),
                    encoder_model, encoder=encoder)
    return {"manifest": manifest, "memory": memory, "model": model, "trivial_model": trivial, "videos": len(rows),
            "work": work, "encoder_model": encoder_model if os.path.exists(EMBEDDER) else None}


# ------------------------------------------------------------ child modes ---
def child(mode: str, workload: dict, options: dict) -> dict:
    sys.path.insert(0, ROOT)
    import numpy as np
    import pandas as pd

    if mode == "tutorial":
        return tutorial_loop(pd.read_csv(workload["manifest"]).uri.tolist(), workload["model"], options)
    if mode in ("model_only", "model_only_encoder"):
        from vidbatch.model.bundle import load_bundle
        from vidbatch.stages.classify import Predictor

        model = workload["encoder_model"] if mode.endswith("_encoder") else workload["model"]
        predictor = Predictor(load_bundle(model), batch_size=options["batch_size"],
                              precision=options["precision"])
        items = np.random.default_rng(0).integers(0, 256, (options["model_items"], *predictor.spec.item_shape), np.uint8)
        predictor.predict(items[: options["batch_size"]])  # warm-up: trace/compile
        started, wall = time.perf_counter(), time.time()
        predictor.predict(items)
        return {"items": len(items), "seconds": time.perf_counter() - started, "measured": [wall, time.time()]}
    if mode == "labels_check":
        return labels_check(workload, options)
    if mode == "decode_pool_all":
        return decode_through_pool(workload, options)
    if mode.startswith("decode_"):
        return decode_only(workload, options, fps=0.0 if mode == "decode_all" else options["fps"])
    if mode.startswith(("local_", "ray_", "mem_")):
        import vidbatch

        engine = "ray" if mode.startswith("ray_") else "local"
        fps = 0.0 if mode.endswith(("_all", "_near_free")) else options["fps"]
        manifest = workload["memory"][mode[4:]] if mode.startswith("mem_") else workload["manifest"]
        model = workload["trivial_model"] if mode.endswith("_near_free") else workload["model"]
        model = workload["encoder_model"] if mode.endswith("_encoder") else model
        if engine == "ray":
            import ray

            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        out = tempfile.mkdtemp(prefix="vidbatch-bench-")
        config = dict(fps=fps, batch_size=options["batch_size"], progress=False, overwrite=True, engine=engine,
                      precision=options["precision"])
        if mode.endswith("_near_free"):  # as on a GPU node, where inference leaves every CPU to the decoders
            config["decode_workers"] = options["decode_workers"] or os.cpu_count() or 1
        vidbatch.label(workload["memory"]["short"], model, out + "/warm", **config)  # warm-up run
        started, wall = time.perf_counter(), time.time()
        result = vidbatch.label(manifest, model, out + "/run", **config)
        seconds = time.perf_counter() - started
        measured = [wall, time.time()]
        run = json.load(open(out + "/run/run.json"))
        summary = result.summary_frame()
        return {"seconds": seconds, "frames_decoded": run["counts"]["frames_decoded"],
                "items": run["counts"]["frames_classified"], "ok": result.ok, "failed": result.failed,
                "labels": dict(zip(summary.video_id, summary.pred_label)), "stages": run["stages"], "measured": measured}
    raise SystemExit(f"unknown mode {mode}")


def labels_check(workload: dict, options: dict) -> dict:
    """With a trained model (the demo's), video-level labels at default sampling vs every frame."""
    import pandas as pd

    import vidbatch
    from vidbatch.apps.demo import run_demo

    demo_dir = os.path.join(workload["work"], "demo")
    if not os.path.exists(os.path.join(demo_dir, "model", "bundle.json")):
        run_demo(out=demo_dir, stream=open(os.devnull, "w"), progress=False)
    rows = pd.read_csv(os.path.join(demo_dir, "data", "manifest.csv"))
    rows["uri"] = [os.path.join(demo_dir, "data", u) for u in rows.uri]
    real = pd.read_csv(workload["manifest"]).dropna(subset=["uri"])
    rows = pd.concat([rows, real[~real.video_id.str.startswith("synth_")]], ignore_index=True)
    manifest = os.path.join(workload["work"], "labels_check.csv")
    rows.to_csv(manifest, index=False)
    labels = {}
    for fps in (0.0, options["fps"]):
        out = tempfile.mkdtemp(prefix="vidbatch-labels-")
        summary = vidbatch.label(manifest, os.path.join(demo_dir, "model"), out, fps=fps, progress=False).summary_frame()
        labels[str(fps)] = dict(zip(summary.video_id, summary.pred_label))
    every, sampled = labels["0.0"], labels[str(options["fps"])]
    return {"items": len(every), "seconds": 1.0, "videos": len(every),
            "differences": {k: [every[k], sampled[k]] for k in every if every[k] != sampled[k]}}


def tutorial_loop(paths: list[str], model_dir: str, options: dict) -> dict:
    """The Keras tutorial, faithfully: read, preprocess and predict one frame at a time, rolling average."""
    from collections import deque

    import cv2
    import keras
    import numpy as np

    model = keras.saving.load_model(os.path.join(model_dir, "model.keras"), compile=False)
    size = model.input_shape[1:3]
    mean = np.array([123.68, 116.779, 103.939], dtype="float32")
    model.predict(np.zeros((1, *size, 3), "float32"), verbose=0)  # warm-up
    frames, labels, started = 0, {}, time.perf_counter()
    for path in paths:
        capture, queue = cv2.VideoCapture(path), deque(maxlen=options["window"])
        count, label = 0, None
        while count < options["tutorial_frames"]:
            grabbed, frame = capture.read()
            if not grabbed:
                break
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            frame = cv2.resize(frame, (size[1], size[0])).astype("float32")
            frame -= mean
            preds = model.predict(np.expand_dims(frame, axis=0), verbose=0)[0]
            queue.append(preds)
            label = int(np.array(queue).mean(axis=0).argmax())
            count += 1
        capture.release()
        frames += count
        labels[path] = label
    return {"items": frames, "frames_decoded": frames, "seconds": time.perf_counter() - started}


def _decode_file(uri: str, size: int, fps: float) -> tuple[int, int]:
    """Decode one video as vidbatch's decoder does (sampling, resize to the model's size), keeping nothing."""
    from vidbatch.stages.decode import DecodeSpec, VideoDecoder
    from vidbatch.stages.sampling import FrameSampling

    decoder = VideoDecoder(uri, DecodeSpec(width=size, height=size, sampling=FrameSampling(fps), chunk_frames=32))
    sampled = sum(len(chunk["frames"]) for chunk in decoder.chunks())
    decoder.close()
    return sampled, decoder.info.frames_decoded


def decode_only(workload: dict, options: dict, fps: float) -> dict:
    """The decode limit: one OpenCV process per CPU, each decoding whole videos and dropping the frames."""
    from concurrent.futures import ProcessPoolExecutor

    import pandas as pd

    uris = pd.read_csv(workload["manifest"]).uri.tolist()
    workers = options["decode_workers"] or (os.cpu_count() or 1)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        counts = list(pool.map(_decode_file, uris, [options["size"]] * len(uris), [fps] * len(uris)))
    seconds = time.perf_counter() - started
    return {"items": sum(c[0] for c in counts), "frames_decoded": sum(c[1] for c in counts), "seconds": seconds,
            "workers": workers}


def decode_through_pool(workload: dict, options: dict) -> dict:
    """Every frame decoded by vidbatch's decoder pool (one process per CPU, started) and shipped to this process."""
    from vidbatch.engines.decode_pool import DecodePool
    from vidbatch.io.manifest import Manifest
    from vidbatch.stages.decode import DecodeSpec
    from vidbatch.stages.decode_job import Chunk, DecodeJob, Finished
    from vidbatch.stages.sampling import FrameSampling

    size = options["size"]
    spec = DecodeSpec(width=size, height=size, sampling=FrameSampling(0.0), chunk_frames=32)
    jobs = [DecodeJob(t.key, t.video_id, t.uri, t.location, spec) for t in Manifest.from_path(workload["manifest"]).tasks]
    workers = options["decode_workers"] or (os.cpu_count() or 1)
    pool = DecodePool(workers=workers, slot_bytes=spec.chunk_nbytes, persistent=True)
    for _ in pool.run(jobs[:workers]):  # warm-up: the processes start (and stay) before the measured run
        pass
    decoded = sampled = 0
    started, cpu = time.perf_counter(), time.process_time()
    for event in pool.run(jobs):
        if isinstance(event, Chunk):
            sampled += len(event)
        elif isinstance(event, Finished):
            decoded += event.info["frames_decoded"]
    seconds = time.perf_counter() - started
    pool.close()
    return {"items": sampled, "frames_decoded": decoded, "seconds": seconds, "workers": workers,
            "receiver_cpu_us_per_frame": (time.process_time() - cpu) / max(1, sampled) * 1e6}


# ---------------------------------------------------------------- parent ---
def run_child(mode: str, workload: dict, options: dict) -> dict:
    import psutil

    command = [sys.executable, __file__, "--child", mode, "--payload", json.dumps({"workload": workload, "options": options})]
    # keep the caller's PYTHONPATH (packages installed with --target, as on a borrowed GPU machine)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(process.pid)
        while not stop.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)

    gpu_samples: list[tuple[float, float, float]] = []

    def sample_gpu() -> None:
        """GPU utilisation (%) and memory (MiB) from nvidia-smi every 0.5 s, where there is one."""
        while not stop.wait(0.5):
            try:
                line = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                                       "--id=0"], capture_output=True, text=True, timeout=5).stdout.strip()
                utilisation, memory = (float(v) for v in line.split(","))
                gpu_samples.append((time.time(), utilisation, memory))
            except (OSError, ValueError, subprocess.SubprocessError):
                return

    samplers = [threading.Thread(target=sample, daemon=True)]
    if shutil.which("nvidia-smi"):
        samplers.append(threading.Thread(target=sample_gpu, daemon=True))
    for thread in samplers:
        thread.start()
    stdout, stderr = process.communicate()
    stop.set()
    for thread in samplers:
        thread.join()
    if process.returncode != 0:
        raise RuntimeError(f"mode {mode} failed:\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = round(peak / 2**20, 1)
    start, end = result.get("measured", (0.0, float("inf")))
    during = [(u, m) for t, u, m in gpu_samples if start <= t <= end]  # the measured run, not loading or warm-up
    if during:
        result["gpu_util_mean"] = statistics.mean(u for u, _ in during)
        result["gpu_util_max"] = max(u for u, _ in during)
        result["gpu_memory_max_mb"] = max(m for _, m in during)
    return result


def median_of(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def machine() -> dict:
    import psutil

    info = {"host": platform.node(), "cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
            "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow")}
    try:
        from importlib.metadata import version

        info.update({name: version(name) for name in ("keras", "opencv-python-headless") if _has(name)})
        info.update({name: version(name) for name in ("tensorflow", "jax", "ray") if _has(name)})
    except Exception:
        pass
    if shutil.which("nvidia-smi"):
        try:
            info["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "--id=0"],
                                         capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def _has(name: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(name)
        return True
    except PackageNotFoundError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", default="mobilenet_v2", choices=("mobilenet_v2", "resnet50", "small_cnn"))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--fps", type=float, default=None, help="sampling rate of the 'default sampling' modes (default: vidbatch's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16", "float16"),
                        help="inference precision of the model modes (vidbatch --precision)")
    parser.add_argument("--decode-workers", type=int, default=None)
    parser.add_argument("--tutorial-frames", type=int, default=100, help="frames per video for the (slow) tutorial loop")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--encoders", action="store_true",
                        help="only compare the shared int8 TFLite encoder with the float Keras model (needs ../shared)")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "vidbatch-bench"))
    parser.add_argument("--results", default=os.path.join(HERE, "results"))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--payload", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        payload = json.loads(args.payload)
        print(json.dumps(child(args.child, payload["workload"], payload["options"])))
        return

    repeat = 1 if args.quick else args.repeat
    if args.fps is None:
        sys.path.insert(0, ROOT)
        from vidbatch.core.config import DEFAULT_FPS

        args.fps = DEFAULT_FPS
    workload = prepare(args.work, args.quick, args.model, args.size)
    options = {"fps": args.fps, "batch_size": args.batch_size, "precision": args.precision, "size": args.size, "window": 16,
               "tutorial_frames": 30 if args.quick else args.tutorial_frames, "decode_workers": args.decode_workers,
               "model_items": 256 if args.quick else 1024}
    modes = ["tutorial", "decode_all", "decode_sampled", "decode_pool_all", "model_only", "local_all", "local_sampled",
             "local_near_free", "mem_short", "mem_long", "labels_check"]
    if not args.no_ray:
        modes[8:8] = ["ray_all", "ray_sampled"]
    if args.encoders:
        if not workload["encoder_model"]:
            raise SystemExit(f"--encoders needs the shared embedder at {EMBEDDER}")
        modes = ["model_only", "model_only_encoder", "local_sampled", "local_sampled_encoder"]
    results: dict[str, dict] = {}
    for mode in modes:
        runs = [run_child(mode, workload, options) for _ in range(1 if mode.startswith(("mem_", "labels")) else repeat)]
        for r in runs:
            r["items_per_s"] = r["items"] / r["seconds"]
            r["video_frames_per_s"] = r.get("frames_decoded", r["items"]) / r["seconds"]
        median = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
        results[mode] = {"items_per_s": median("items_per_s"), "video_frames_per_s": median("video_frames_per_s"),
                         "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "runs": runs}
        for key in ("gpu_util_mean", "gpu_util_max", "gpu_memory_max_mb"):
            if all(key in r for r in runs):
                results[mode][key] = median_of([r[key] for r in runs])
        if "receiver_cpu_us_per_frame" in runs[0]:
            results[mode]["receiver_cpu_us_per_frame"] = median_of([r["receiver_cpu_us_per_frame"] for r in runs])
        if all("stages" in r for r in runs):
            results[mode]["steady_items_per_s"] = median_of([r["stages"]["steady_classified_items_per_s"] for r in runs])
            results[mode]["startup_s"] = median_of([r["stages"]["startup_s"] for r in runs])
        print(f"{mode:>15}: {results[mode]['items_per_s']:8.1f} items/s, {results[mode]['video_frames_per_s']:8.1f} "
              f"video frames/s, peak RSS {results[mode]['peak_rss_mb']:.0f} MB", flush=True)
    report = summarise_encoders(results, options, args) if args.encoders else summarise(results, workload, options, args)
    os.makedirs(args.results, exist_ok=True)
    name = ("quick" if args.quick else platform.node() or "machine") + ("-encoders" if args.encoders else "")
    with open(os.path.join(args.results, f"{name}.json"), "w") as handle:
        json.dump(report, handle, indent=2, default=str)
    with open(os.path.join(args.results, f"{name}.md"), "w") as handle:
        handle.write(report["markdown"])
    print(report["markdown"])


def summarise(results: dict, workload: dict, options: dict, args) -> dict:
    tutorial = results["tutorial"]["items_per_s"]
    limit = min(results["decode_all"]["items_per_s"], results["model_only"]["items_per_s"])
    ratios = {
        "every_frame_vs_tutorial": results["local_all"]["items_per_s"] / tutorial,
        "every_frame_vs_limit": results["local_all"]["items_per_s"] / limit,
        "sampled_coverage_vs_tutorial": results["local_sampled"]["video_frames_per_s"] / tutorial,
        "long_minus_short_rss_mb": results["mem_long"]["peak_rss_mb"] - results["mem_short"]["peak_rss_mb"],
        "every_frame_vs_decode_only": results["local_all"]["items_per_s"] / results["decode_all"]["items_per_s"],
        "near_free_vs_decode_only": results["local_near_free"]["items_per_s"] / results["decode_all"]["items_per_s"],
        "pool_vs_decode_only": results["decode_pool_all"]["items_per_s"] / results["decode_all"]["items_per_s"],
    }
    check = results.pop("labels_check")["runs"][0]
    labels_equal = not check["differences"]
    if "ray_all" in results:
        ratios["ray_vs_local_every_frame"] = results["ray_all"]["items_per_s"] / results["local_all"]["items_per_s"]
        ratios["ray_vs_local_sampled"] = results["ray_sampled"]["video_frames_per_s"] / results["local_sampled"]["video_frames_per_s"]
        for mode in ("all", "sampled"):
            ray_steady, local_steady = results[f"ray_{mode}"].get("steady_items_per_s"), results[f"local_{mode}"].get("steady_items_per_s")
            if ray_steady and local_steady:
                ratios[f"ray_vs_local_{mode}_steady"] = ray_steady / local_steady
    info = machine()
    lines = [
        f"Machine: {info['cpus']} CPUs ({info['processor']}), {info['memory_gb']} GB; Keras {info.get('keras')} on "
        f"{info['keras_backend']}{', ' + info['gpu'] if info.get('gpu') else ', no GPU'}; model {args.model} "
        f"{args.size}x{args.size}, {options['precision']}, batch {options['batch_size']}; "
        f"{workload['videos']} videos; sampling {options['fps']:g} fps; medians of {1 if args.quick else args.repeat} runs.",
        "",
    ]
    gpu = any("gpu_util_mean" in r for r in results.values())
    header = "| mode | items classified/s | video frames covered/s | steady state items/s (start-up s) | peak RSS (MB) |"
    lines += [header + (" GPU util % (mean / max) |" if gpu else ""), "|---|---:|---:|---:|---:|" + ("---:|" if gpu else "")]
    names = {"tutorial": "tutorial loop (predict per frame)", "decode_all": "limit: decode only, every frame",
             "decode_sampled": "limit: decode only, sampled", "model_only": "limit: model only (batched, in memory)",
             "decode_pool_all": "decode through vidbatch's pool into one process, every frame",
             "local_near_free": "vidbatch local, every frame, near-free model",
             "local_all": "vidbatch local, every frame", "local_sampled": "vidbatch local, default sampling",
             "ray_all": "vidbatch ray, every frame", "ray_sampled": "vidbatch ray, default sampling",
             "mem_short": "memory: short video (local, sampled)", "mem_long": "memory: 20x longer video"}
    for mode, r in results.items():
        items = "" if mode.startswith("decode") else f"{r['items_per_s']:.1f}"
        steady = f"{r['steady_items_per_s']:.1f} ({r['startup_s']:.1f})" if r.get("steady_items_per_s") else ""
        utilisation = f" {r['gpu_util_mean']:.0f} / {r['gpu_util_max']:.0f} |" if "gpu_util_mean" in r else (" |" if gpu else "")
        lines.append(f"| {names[mode]} | {items} | {r['video_frames_per_s']:.1f} | {steady} | {r['peak_rss_mb']:.0f} |"
                     + utilisation)
    lines += ["", "| ratio | value | target |", "|---|---:|---|",
              f"| every frame / tutorial | {ratios['every_frame_vs_tutorial']:.1f}x | >= 5x |",
              f"| every frame / min(decode-only, model-only) | {ratios['every_frame_vs_limit']:.0%} | >= 85% |",
              f"| default sampling coverage / tutorial | {ratios['sampled_coverage_vs_tutorial']:.1f}x | >= 25x |",
              f"| peak RSS long - short | {ratios['long_minus_short_rss_mb']:+.0f} MB | <= 100 MB |",
              f"| every frame / decode-only (the GPU target) | {ratios['every_frame_vs_decode_only']:.0%} | >= 80% on a GPU |",
              f"| near-free model, every frame / decode-only (CPU stand-in for the GPU target) | "
              f"{ratios['near_free_vs_decode_only']:.0%} | >= 80% |",
              f"| decode through the pool / decode-only (frame transport) | {ratios['pool_vs_decode_only']:.0%} | |"]
    if "ray_all" in results:
        lines += [f"| ray / local, every frame, end to end | {ratios['ray_vs_local_every_frame']:.0%} | >= 70% |",
                  f"| ray / local, default sampling, end to end | {ratios['ray_vs_local_sampled']:.0%} | >= 70% |"]
        for mode, label in (("all", "every frame"), ("sampled", "default sampling")):
            if f"ray_vs_local_{mode}_steady" in ratios:
                lines.append(f"| ray / local, {label}, steady state (start-up excluded) | "
                             f"{ratios[f'ray_vs_local_{mode}_steady']:.0%} | >= 70% |")
    lines += ["", f"Video-level labels with a trained model (the demo's), every frame vs default sampling, on "
              f"{check['videos']} videos (the demo set and the shared real clips present): "
              + ("identical." if labels_equal else f"{len(check['differences'])} differ: {check['differences']}.")]
    return {"machine": info, "options": options, "results": results, "ratios": ratios, "labels_equal": labels_equal,
            "labels_check": check,
            "markdown": "\n".join(lines) + "\n"}


def summarise_encoders(results: dict, options: dict, args) -> dict:
    """What a quantised encoder buys on the CPU: items/s of the int8 TFLite MobileNetV1 embedder (LiteRT) against
    the float Keras model (`--model`, MobileNetV2 by default), alone and inside the labeling job."""
    info = machine()
    ratios = {"model_only_int8_vs_float": results["model_only_encoder"]["items_per_s"] / results["model_only"]["items_per_s"],
              "labeling_int8_vs_float": results["local_sampled_encoder"]["items_per_s"] / results["local_sampled"]["items_per_s"]}
    names = {"model_only": f"model only: Keras {args.model} float32", "model_only_encoder": "model only: int8 TFLite encoder + head",
             "local_sampled": f"vidbatch local, default sampling: Keras {args.model}",
             "local_sampled_encoder": "vidbatch local, default sampling: int8 TFLite encoder + head"}
    lines = [f"Machine: {info['cpus']} CPUs ({info['processor']}), {info['memory_gb']} GB; Keras {info.get('keras')} on "
             f"{info['keras_backend']}; {args.size}x{args.size}, batch {options['batch_size']}; medians of {args.repeat} runs.",
             "", "| mode | items/s | peak RSS (MB) |", "|---|---:|---:|"]
    lines += [f"| {names[m]} | {r['items_per_s']:.1f} | {r['peak_rss_mb']:.0f} |" for m, r in results.items()]
    lines += ["", f"int8 encoder / float model: {ratios['model_only_int8_vs_float']:.1f}x alone, "
              f"{ratios['labeling_int8_vs_float']:.1f}x in the labeling job."]
    return {"machine": info, "options": options, "results": results, "ratios": ratios, "markdown": "\n".join(lines) + "\n"}


if __name__ == "__main__":
    main()
