"""The `vidbatch` command: builds a config and calls the library; nothing else lives here.

Exit codes: 0 success; 1 the run finished but some videos failed (see the
summary's `error` column); 2 invalid input (manifest, model, options or
output location), reported before any work; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from vidbatch.config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_FPS,
    DEFAULT_SHOT_THRESHOLD,
    DEFAULT_TOP_K,
    DEFAULT_VIDEO_TIMEOUT_S,
    DEFAULT_WINDOW,
    PRECISIONS,
)
from vidbatch.errors import ConfigError, VidbatchError, VideoError


def _storage_options(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"Invalid `--storage-options`: expected a JSON object ({exc.msg})") from None
    if not isinstance(value, dict):
        raise ConfigError("Invalid `--storage-options`: expected a JSON object like '{\"anon\": true}'")
    return value


def _add_label_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="CSV or Parquet manifest (local path or URL) with a `uri` column")
    parser.add_argument("--model", required=True, help="model bundle folder or .keras file (local or URL)")
    parser.add_argument("--out", required=True, help="output folder or URL (rerun into it to resume)")
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS, help=f"frames sampled per second; 0 = every frame (default {DEFAULT_FPS:g})")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW, help=f"rolling-average window in sampled frames (default {DEFAULT_WINDOW})")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help=f"classes kept in the summary's top_k (default {DEFAULT_TOP_K})")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help=f"frames per inference batch (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="inference precision; 16-bit (mixed) is for GPUs with tensor cores (default float32)")
    parser.add_argument("--clip-stride", type=int, default=None, help="clip models: sampled frames between clip starts (default: clip length)")
    parser.add_argument("--shot-threshold", type=float, default=DEFAULT_SHOT_THRESHOLD,
                        help=f"hard-cut detection threshold, 0..1; the rolling window restarts at each cut; 0 = off (default {DEFAULT_SHOT_THRESHOLD:g})")
    parser.add_argument("--frame-threshold", type=float, default=None, help="frame labels scoring below this become --unknown-label")
    parser.add_argument("--video-threshold", type=float, default=None, help="video and shot labels scoring below this become --unknown-label")
    parser.add_argument("--unknown-label", default="unknown", help="label for scores under the thresholds (default unknown)")
    parser.add_argument("--frame-top-k", type=int, default=0, help="also list the best k classes of every frame (frames/ column top_k)")
    parser.add_argument("--classes", default=None, help="class names (JSON list or one per line) for a legacy .h5 model without a sidecar")
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="local (one process) or ray")
    parser.add_argument("--decode-workers", type=int, default=None, help="local engine: decoder processes (default: CPUs - 1; all CPUs when the model runs on a GPU)")
    parser.add_argument("--video-timeout", type=float, default=DEFAULT_VIDEO_TIMEOUT_S,
                        help=f"seconds a decoder may make no progress before its video fails (default {DEFAULT_VIDEO_TIMEOUT_S:g})")
    parser.add_argument("--storage-options", default=None, help="JSON object passed to fsspec/s3fs (e.g. endpoint_url)")
    parser.add_argument("--overwrite", action="store_true", help="discard an earlier run in --out made with other settings")
    parser.add_argument("--trust-model-code", action="store_true",
                        help="load models that carry code (Lambda layers); only for files you trust")
    parser.add_argument("--ray-address", default=None, help="ray engine: cluster address (default: start a local Ray)")
    parser.add_argument("--ray-inference-actors", type=int, default=None, help="ray engine: inference actor pool size")
    parser.add_argument("--ray-inference-gpus", type=float, default=None, help="ray engine: GPUs per inference actor (fractional ok)")
    parser.add_argument("--ray-decode-cpus", type=float, default=1.0, help="ray engine: CPUs per decode actor")
    parser.add_argument("--ray-decoders", type=int, default=None, help="ray engine: decode actors (default: the cluster's CPUs)")
    parser.add_argument("--ray-object-store-gb", type=float, default=None,
                        help="ray engine: object store budget of the pipeline in GB (backpressure beyond it)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidbatch", description="Batch video labeling with a Keras model and rolling-average smoothing.")
    commands = parser.add_subparsers(dest="command", required=True)

    label = commands.add_parser("label", help="label every video of a manifest")
    _add_label_options(label)

    demo = commands.add_parser("demo", help="generate a synthetic set, train a tiny model, label it, print the summary")
    demo.add_argument("--out", default="vidbatch-demo", help="folder for the demo's data, model and labels")
    demo.add_argument("--engine", choices=("local", "ray"), default="local")

    synth = commands.add_parser("synth", help="write synthetic labeled videos and a manifest")
    synth.add_argument("--out", required=True)
    synth.add_argument("--classes", default="ball,box,waves", help="comma-separated; also left_to_right,right_to_left")
    synth.add_argument("--per-class", type=int, default=4)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--seconds", type=float, default=4.0)
    synth.add_argument("--fps", type=float, default=25.0)
    synth.add_argument("--size", default="160x120", help="WIDTHxHEIGHT")
    synth.add_argument("--flicker", type=float, default=0.0, help="fraction of frames showing another class")

    annotate = commands.add_parser("annotate", help="write a copy of a video with the smoothed label drawn on every frame")
    annotate.add_argument("video", help="input video (local path or URL)")
    annotate.add_argument("--model", required=True)
    annotate.add_argument("--out", required=True, help="output video: .mp4 (H.264 or MPEG-4), .webm (VP8) or .avi (MJPG)")
    annotate.add_argument("--window", type=int, default=64,
                          help="rolling-average window in frames of the video (every frame is labeled; default 64, ~2.5 s)")
    annotate.add_argument("--no-raw", action="store_true", help="draw only the smoothed label")
    annotate.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    annotate.add_argument("--classes", default=None, help="class names for a legacy .h5 model")
    annotate.add_argument("--trust-model-code", action="store_true")

    inspect = commands.add_parser("inspect", help="describe a model bundle, or a finished run's counts and failures")
    inspect.add_argument("path", help="a bundle folder / .keras / .h5 file, or an output folder with run.json")
    inspect.add_argument("--classes", default=None)

    report = commands.add_parser("report", help="write a self-contained HTML report of a finished run")
    report.add_argument("run", help="output folder of a finished run")
    report.add_argument("--out", default=None, help="HTML file (default RUN/report.html)")
    report.add_argument("--max-videos", type=int, default=20, help="videos with a timeline plot")

    evalp = commands.add_parser("eval", help="label a labeled manifest; report accuracy, per-class scores, confusion and flicker")
    evalp.add_argument("--manifest", required=True, help="manifest with a `label` column")
    evalp.add_argument("--model", required=True)
    evalp.add_argument("--out", required=True, help="folder for metrics.json, confusion.png/.csv, flicker.png/.csv, labels/")
    evalp.add_argument("--fps", type=float, default=DEFAULT_FPS)
    evalp.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    evalp.add_argument("--windows", default="1,4,8,16,32,64", help="window sizes for the flicker table (1 = raw)")
    evalp.add_argument("--overwrite", action="store_true")
    evalp.add_argument("--no-progress", action="store_true")

    trainp = commands.add_parser("train", help="train a model bundle")
    kinds = trainp.add_subparsers(dest="kind", required=True)
    frames = kinds.add_parser("frames", help="a frame CNN on an image folder or a labeled video manifest")
    frames.add_argument("--backbone", default="small_cnn", choices=("small_cnn", "mobilenet_v2", "resnet50", "efficientnet_b0"))
    frames.add_argument("--weights", default="none", help="imagenet | none | PATH to a weights file")
    frames.add_argument("--image-size", type=int, default=64)
    frames.add_argument("--fine-tune-epochs", type=int, default=0)
    clips = kinds.add_parser("clips", help="a 3D CNN on clips of a labeled video manifest")
    clips.add_argument("--clip-len", type=int, default=10)
    clips.add_argument("--image-size", type=int, default=48)
    for sub in (frames, clips):
        sub.add_argument("--data", required=True, help="image folder (frames only) or labeled video manifest")
        sub.add_argument("--out", required=True, help="bundle folder to write")
        sub.add_argument("--epochs", type=int, default=10)
        sub.add_argument("--batch-size", type=int, default=32)
        sub.add_argument("--learning-rate", type=float, default=1e-3)
        sub.add_argument("--fps", type=float, default=5.0, help="video manifests: frames sampled per second")
        sub.add_argument("--test-fraction", type=float, default=0.25)
        sub.add_argument("--width", type=int, default=32, help="channels of the first layer (small models)")
        sub.add_argument("--max-items-per-video", type=int, default=None)
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--verbose", type=int, default=1)
    return parser


def _label(args: argparse.Namespace) -> int:
    from vidbatch.config import LabelConfig, RayOptions
    from vidbatch.run import run

    config = LabelConfig(
        manifest=args.manifest, model=args.model, out=args.out, fps=args.fps, window=args.window, top_k=args.top_k,
        batch_size=args.batch_size, precision=args.precision, clip_stride=args.clip_stride, engine=args.engine, decode_workers=args.decode_workers,
        shot_threshold=args.shot_threshold or None, frame_threshold=args.frame_threshold,
        video_threshold=args.video_threshold, unknown_label=args.unknown_label, frame_top_k=args.frame_top_k,
        classes=args.classes,
        video_timeout=args.video_timeout, storage_options=_storage_options(args.storage_options), overwrite=args.overwrite,
        trust_model_code=args.trust_model_code, progress=not args.no_progress,
        ray=RayOptions(address=args.ray_address, inference_actors=args.ray_inference_actors,
                       inference_gpus=args.ray_inference_gpus, decode_cpus=args.ray_decode_cpus,
                       max_decode_in_flight=args.ray_decoders,
                       object_store_memory=args.ray_object_store_gb * 1e9 if args.ray_object_store_gb else None),
    )
    result = run(config)
    print(f"{result.videos} videos: {result.ok} ok, {result.failed} failed"
          + (f" ({result.resumed} already done in an earlier run)" if result.resumed else "")
          + f"; {result.elapsed_s:.1f} s. Outputs in {result.out}")
    if result.failed:
        frame = result.summary_frame()
        failed = frame[frame["status"] == "failed"]
        for row in failed.head(20).itertuples():
            print(f"  failed: {row.video_id}: {row.error}", file=sys.stderr)
        if len(failed) > 20:
            print(f"  ... and {len(failed) - 20} more (see summary.parquet)", file=sys.stderr)
    return result.exit_code


def _train(args: argparse.Namespace) -> int:
    from vidbatch.train.trainer import TrainConfig, train

    weights = getattr(args, "weights", "none")
    config = TrainConfig(
        data=args.data, out=args.out, kind="frame" if args.kind == "frames" else "clip",
        backbone=getattr(args, "backbone", "small_cnn"), weights=None if weights in (None, "none") else weights,
        image_size=args.image_size, epochs=args.epochs, fine_tune_epochs=getattr(args, "fine_tune_epochs", 0),
        batch_size=args.batch_size, learning_rate=args.learning_rate, test_fraction=args.test_fraction, fps=args.fps,
        clip_len=getattr(args, "clip_len", 10), seed=args.seed, width=args.width,
        max_items_per_video=args.max_items_per_video, verbose=args.verbose,
    )
    metrics = train(config)
    data = metrics["data"]
    print(f"test accuracy {metrics['test_accuracy']:.4f} on {data['test_items']} held-out items "
          f"({data['train_items']} train); skipped {sum(data['skipped'].values())} broken input(s) {data['skipped']}; "
          f"{metrics['train_seconds']:.0f} s. Bundle: {args.out}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from vidbatch.evaluate import evaluate, format_report

    try:
        windows = [int(w) for w in args.windows.split(",") if w.strip()]
    except ValueError:
        raise ConfigError(f"Invalid `--windows`: expected comma-separated integers. Received: {args.windows!r}") from None
    metrics = evaluate(args.manifest, args.model, args.out, windows=windows, fps=args.fps, window=args.window,
                       overwrite=args.overwrite, progress=not args.no_progress)
    print(format_report(metrics))
    print(f"written: {args.out}/metrics.json, confusion.png, confusion.csv, flicker.png, flicker.csv, labels/")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from vidbatch.synth import SynthSpec, make_dataset

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"Invalid `--size`: expected WIDTHxHEIGHT. Received: {args.size!r}") from None
    spec = SynthSpec(width=width, height=height, fps=args.fps, seconds=args.seconds, flicker=args.flicker)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    try:
        manifest = make_dataset(args.out, classes=classes, videos_per_class=args.per_class, seed=args.seed, spec=spec)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print(f"wrote {len(classes) * args.per_class} videos and {manifest}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "label":
            return _label(args)
        if args.command == "demo":
            from vidbatch.demo import run_demo

            run_demo(out=args.out, engine=args.engine)
            return 0
        if args.command == "synth":
            return _synth(args)
        if args.command == "train":
            return _train(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "annotate":
            from vidbatch.annotate import annotate

            result = annotate(args.video, args.model, args.out, window=args.window, show_raw=not args.no_raw,
                              batch_size=args.batch_size, classes=args.classes, trust_model_code=args.trust_model_code)
            shown = ", ".join(f"{k} {v}" for k, v in sorted(result.labels.items(), key=lambda kv: -kv[1]))
            print(f"wrote {result.out}: {result.frames} frames at {result.fps:g} fps ({result.codec}); labels shown: {shown}")
            return 0
        if args.command == "inspect":
            from vidbatch.inspect_cli import describe

            print(describe(args.path, classes=args.classes))
            return 0
        if args.command == "report":
            from vidbatch.report import write_report

            path = write_report(args.run, args.out, max_videos=args.max_videos)
            print(f"wrote {path}")
            return 0
    except VidbatchError as exc:
        print(f"vidbatch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except VideoError as exc:
        print(f"vidbatch: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vidbatch: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
