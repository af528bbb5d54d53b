"""One long 720p H.264 video (B-frames) labeled with 1 and with 2 decoders: wall time, and identical answers.

    python benchmarks/long_video.py                 # writes a 10-minute video first (about 5 min), then 4 runs
    python benchmarks/long_video.py --minutes 20 --model tiny
    python benchmarks/long_video.py --engine ray --model tiny   # the Ray engine: 1 decode actor, then 2

The video is made from the shared real 720p clips (`../shared/data/videos`: Big Buck Bunny, the cockatoo and
luma), 10-second scenes with hard cuts between them, a slow pan and a key frame every 10 s (x264 veryfast,
3 B-frames); without the shared clips, from synthetic frames. Each run is `vidbatch.label` in a fresh process
(`--decode-workers N`, the default 2 fps); the speed-up is the ratio of the labeling wall times measured in this
one run of the script, and the tables (frames, shots, segments, summary) of the two runs are compared.

Models: `tiny` (a 32 px Keras CNN: the decoding is the work) and `mobilenet` (the shared int8 MobileNetV2
ImageNet classifier, run by LiteRT on the CPU: the model takes CPU time from the decoders, as a real CPU-only
run does). Results go to results/long_video_<host>.json and .md.

With `--engine ray`, each run is `vidbatch label --engine ray` on a private local Ray instance, with N decode
actors of 1/N CPU each (one FFmpeg thread each; the inference actor holds the other CPU slot), and the results go
to results/long_video_ray_<host>.json and .md (the decoders-alone table is the local engine's).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.abspath(os.path.join(ROOT, "..", "shared", "data"))
CLIPS = ("bigbuckbunny.mp4", "cockatoo.mp4", "luma.mp4")


def write_long_video(path: str, minutes: float, fps: int = 25) -> str:
    """A 720p H.264 video of `minutes`, 10-second scenes (hard cuts), a pan, B-frames, a key frame every 10 s."""
    import av
    import cv2
    import numpy as np

    sources = []
    for name in CLIPS:
        capture, frames = cv2.VideoCapture(os.path.join(SHARED, "videos", name)), []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.resize(frame, (1440, 810)))
        if frames:
            sources.append(frames)
    if not sources:  # no shared clips: moving noise textures
        rng = np.random.default_rng(0)
        sources = [[cv2.GaussianBlur(rng.integers(0, 255, (810, 1440, 3), np.uint8), (0, 0), 3 + s)] * 60
                   for s in range(3)]
    partial = path + ".partial"
    with av.open(partial, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.options = {"preset": "veryfast", "bf": "3", "g": str(10 * fps), "crf": "26"}
        for i in range(int(minutes * 60 * fps)):
            scene, k = divmod(i, 10 * fps)
            clip = sources[scene % len(sources)]
            period = max(1, 2 * len(clip) - 2)  # forwards then backwards through the clip: no cut inside a scene
            j = k % period
            j = j if j < len(clip) else period - j
            x, y = (k * 160) // (10 * fps), (scene * 37) % 90
            image = np.ascontiguousarray(clip[j][y : y + 720, x : x + 1280])
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(partial, path)
    return path


def model_args(name: str, work: str) -> dict:
    if name == "mobilenet":
        weights = os.path.join(SHARED, "weights")
        return {"model": os.path.join(weights, "mobilenet_v2_1.0_224_quant.tflite"),
                "classes": os.path.join(weights, "imagenet_labels.txt")}
    bundle = os.path.join(work, "tiny_bundle")
    if not os.path.exists(bundle):
        sys.path.insert(0, ROOT)
        from tests.support.helpers import make_colour_bundle

        make_colour_bundle(bundle)
    return {"model": bundle}


def child(payload: dict) -> dict:
    """One labeling run in this (fresh) process."""
    sys.path.insert(0, ROOT)
    import vidbatch

    started = time.perf_counter()
    if payload.get("engine") == "ray":
        from vidbatch.core.config import RayOptions

        decoders = payload["decoders"]
        vidbatch.label(payload["manifest"], payload["model"], payload["out"], classes=payload.get("classes"),
                       engine="ray", ray=RayOptions(max_decode_in_flight=decoders, decode_cpus=1.0 / decoders),
                       progress=False)
    else:
        vidbatch.label(payload["manifest"], payload["model"], payload["out"], classes=payload.get("classes"),
                       decode_workers=payload["decoders"], progress=False)
    wall = time.perf_counter() - started
    with open(os.path.join(payload["out"], "run.json")) as handle:
        stages = json.load(handle)["stages"]
    return {"wall_s": round(wall, 2), "labeling_s": stages["wall_s"], "startup_s": stages.get("startup_s"),
            "decoded_frames_per_s": stages.get("decoded_frames_per_s"),
            "split": stages["layout"].get("split_long_videos")}


def decode_child(payload: dict) -> dict:
    """The product's decoders alone (no model): part `part` of `parts` with `threads` FFmpeg threads."""
    sys.path.insert(0, ROOT)
    from vidbatch.stages.decode import DecodeSpec, VideoDecoder
    from vidbatch.stages.sampling import FrameSampling
    from vidbatch.stages.seek import SeekingDecoder

    spec = DecodeSpec(width=224, height=224, sampling=FrameSampling(2.0), shot_threshold=0.3,
                      threads=payload["threads"])
    decoder = (SeekingDecoder(payload["video"], spec, part=payload["part"], parts=payload["parts"])
               if payload["parts"] > 1 else VideoDecoder(payload["video"], spec))
    started = time.perf_counter()
    with decoder:
        items = sum(len(chunk["frame_index"]) for chunk in decoder.chunks())
    return {"seconds": round(time.perf_counter() - started, 2), "items": items}


def decoders_alone(video: str, parts: int, threads: int) -> float:
    """Wall seconds for the video's decode (2 fps, 224 px, shot cuts) in `parts` processes at once."""
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--decode-child",
                               json.dumps({"video": video, "part": k, "parts": parts, "threads": threads})],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for k in range(parts)]
    for proc in procs:
        proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"decode child failed ({proc.returncode})")
    return round(time.perf_counter() - started, 2)


def run_child(payload: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(payload)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def same_tables(a: str, b: str) -> dict:
    """Which tables of two outputs are equal (probabilities to 1e-5: batches are composed differently)."""
    import numpy as np
    import pandas as pd

    result = {}
    fa, fb = (pd.read_parquet(os.path.join(out, "frames")).sort_values("frame_index").reset_index(drop=True)
              for out in (a, b))
    exact = ["frame_index", "timestamp_s", "shot_cut", "raw_label", "smoothed_label"] if "shot_cut" in fa else \
        ["frame_index", "timestamp_s", "raw_label", "smoothed_label"]
    result["frames"] = bool(fa[exact].equals(fb[exact])) and bool(
        np.allclose(fa["smoothed_score"], fb["smoothed_score"], atol=1e-5))
    for table in ("shots", "segments"):
        ta, tb = (pd.read_parquet(os.path.join(out, f"{table}.parquet")) for out in (a, b))
        ta, tb = (t.drop(columns=[c for c in t.columns if "score" in c]) for t in (ta, tb))
        result[table] = bool(ta.equals(tb))
    sa, sb = (pd.read_parquet(os.path.join(out, "summary.parquet")) for out in (a, b))
    keep = ["status", "pred_label", "frames_decoded", "frames_classified", "duration_s"]
    result["summary"] = bool(sa[keep].equals(sb[keep]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--model", action="append", choices=("tiny", "mobilenet"),
                        help="models to run (default: both; mobilenet needs ../shared/data/weights)")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "vidbatch-long"))
    parser.add_argument("--results", default=os.path.join(HERE, "results"))
    parser.add_argument("--engine", choices=("local", "ray"), default="local")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--decode-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.decode_child:
        print(json.dumps(decode_child(json.loads(args.decode_child))))
        return
    os.makedirs(args.work, exist_ok=True)
    video = os.path.join(args.work, f"long_{args.minutes:g}min_720p.mp4")
    if not os.path.exists(video):
        started = time.perf_counter()
        write_long_video(video, args.minutes)
        print(f"wrote {video} in {time.perf_counter() - started:.0f} s", flush=True)
    manifest = os.path.join(args.work, "long.csv")
    with open(manifest, "w") as handle:
        handle.write(f"video_id,uri\nlong,{video}\n")
    models = args.model or (["tiny", "mobilenet"] if os.path.isdir(os.path.join(SHARED, "weights")) else ["tiny"])
    rows = []
    for name in models:
        runs = {}
        for decoders in (1, 2):
            out = os.path.join(args.work, f"out_{name}_{decoders}")
            subprocess.run(["rm", "-rf", out], check=True)
            runs[decoders] = run_child({"manifest": manifest, "out": out, "decoders": decoders,
                                        "engine": args.engine, **model_args(name, args.work)})
            runs[decoders]["out"] = out
            print(name, decoders, runs[decoders], flush=True)
        rows.append({"model": name, "one_decoder": runs[1], "two_decoders": runs[2],
                     "speedup": round(runs[1]["labeling_s"] / runs[2]["labeling_s"], 2),
                     "identical": same_tables(runs[1]["out"], runs[2]["out"])})
        print(rows[-1], flush=True)
    alone = None if args.engine == "ray" else {"one_pass_1_thread_s": decoders_alone(video, 1, 1),
                                               "one_pass_2_threads_s": decoders_alone(video, 1, 2),
                                               "two_parts_1_thread_each_s": decoders_alone(video, 2, 1)}
    print(alone, flush=True)
    import cv2

    capture = cv2.VideoCapture(video)
    info = {"frames": int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), "fps": capture.get(cv2.CAP_PROP_FPS),
            "size": f"{int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))}",
            "mb": round(os.path.getsize(video) / 2**20, 1)}
    host = platform.node() or "host"
    name = "long_video_ray" if args.engine == "ray" else "long_video"
    what = "decode actors (Ray engine)" if args.engine == "ray" else "decoders"
    result = {"video": info, "minutes": args.minutes, "cpus": os.cpu_count(), "rows": rows, "decoders_alone": alone,
              "measured_at": time.strftime("%Y-%m-%d %H:%M")}
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, f"{name}_{host}.json"), "w") as handle:
        json.dump(result, handle, indent=1)
    lines = [f"# One long video, 1 vs 2 {what} ({args.minutes:g} min, {info['size']}, {info['frames']} frames, "
             f"{info['mb']} MB; {os.cpu_count()} CPUs)", "",
             "| model | 1: labeling s (startup s) | 2: labeling s (startup s) | speed-up | parts | identical tables |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        same = ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in row["identical"].items())
        one, two = row["one_decoder"], row["two_decoders"]
        lines.append(f"| {row['model']} | {one['labeling_s']} ({one['startup_s']}) | {two['labeling_s']} "
                     f"({two['startup_s']}) | "
                     f"{row['speedup']}x | {row['two_decoders']['split']['parts']} | {same} |")
    if alone:
        lines += ["", "The decoders alone (2 fps, 224 px, shot cuts; no model), wall seconds:", "",
                  "| one pass, 1 FFmpeg thread | one pass, 2 threads | 2 parts at once, 1 thread each |",
                  "|---|---|---|", f"| {alone['one_pass_1_thread_s']} | {alone['one_pass_2_threads_s']} | "
                  f"{alone['two_parts_1_thread_each_s']} |"]
    with open(os.path.join(args.results, f"{name}_{host}.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
