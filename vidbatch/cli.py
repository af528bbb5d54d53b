"""The `vidbatch` command: builds a config and calls the library; nothing else lives here.

Exit codes: 0 success; 1 the run finished but some videos failed (see the
summary's `error` column); 2 invalid input (manifest, model, options or
output location), reported before any work; 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from typing import Sequence

import vidbatch
from vidbatch.core.config import (
    CLIP_ARCHITECTURES,
    DEFAULT_BATCH_SIZE,
    DEFAULT_FEATURE_CACHE,
    DEFAULT_FPS,
    DEFAULT_WINDOW,
    SEQUENCE_HEADS,
    LabelConfig,
    RayOptions,
)
from vidbatch.core.errors import ConfigError, VidbatchError, VideoError
from vidbatch.core.quiet import quiet_native_logs, start_keras_quietly
from vidbatch.io.memory import prefer_system_pool


def _json_object(flag: str):
    def parse(text: str) -> dict:
        if not text:
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"Invalid `{flag}`: expected a JSON object ({exc.msg})") from None
        if not isinstance(value, dict):
            raise ConfigError(f"Invalid `{flag}`: expected a JSON object like '{{\"anon\": true}}'")
        return value

    return parse


def _cli_fields(cls) -> list:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", False)]


MODEL_OPTIONS = ("classes", "preprocessing", "channel_order", "label_map", "label_map_combine", "label_map_rest",
                 "state_reset_s")
"""`label`'s options that say how a model is read and what it labels with: `annotate` and `eval` take them too."""


def _add_config_options(parser: argparse.ArgumentParser, cls, prefix: str = "", only=None) -> None:
    """Command-line options generated from a config dataclass's fields (`core.config.option`): one source.
    `only`: just these fields (another command sharing some of `label`'s options)."""
    for f in _cli_fields(cls):
        if only is not None and f.name not in only:
            continue
        meta, kind = f.metadata, str(f.type)
        if kind.endswith("Options"):  # a nested group: its fields become --<group>-<name>
            _add_config_options(parser, RayOptions, prefix=f"{f.name}-")
            continue
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            if f.name == "manifest":
                parser.add_argument(f.name, help=meta["help"])
            else:
                parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, required=True, help=meta["help"])
            continue
        flag = meta["flag"] or "--" + prefix + f.name.replace("_", "-")
        dest = prefix.replace("-", "_") + f.name
        if kind == "bool":
            action = "store_false" if flag.startswith("--no-") else "store_true"
            parser.add_argument(flag, dest=dest, action=action, help=meta["help"])
            continue
        number = float if "float" in kind else int if "int" in kind else str
        default = None if meta["convert"] or kind.startswith("Mapping") else f.default
        parser.add_argument(flag, dest=dest, type=number, default=default, choices=meta["choices"], help=meta["help"],
                            metavar=None if meta["choices"] else flag.lstrip("-").replace("-", "_").upper())


def _config_values(args: argparse.Namespace, cls, prefix: str = "") -> dict:
    values = {}
    for f in _cli_fields(cls):
        if str(f.type).endswith("Options"):
            values[f.name] = RayOptions(**_config_values(args, RayOptions, prefix=f"{f.name}_"))
            continue
        value = getattr(args, prefix + f.name)
        if str(f.type).startswith("Mapping"):
            value = _json_object(f.metadata["flag"] or "--" + f.name.replace("_", "-"))(value)
        values[f.name] = f.metadata["convert"](value) if f.metadata["convert"] else value
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidbatch", description="Batch video labeling with a Keras model and rolling-average smoothing.")
    parser.add_argument("--version", action="version", version=f"vidbatch {vidbatch.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    label = commands.add_parser("label", help="label every video of a manifest")
    _add_config_options(label, LabelConfig)

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
    annotate.add_argument("--fps", type=float, default=None, help="streaming video models: frames sampled per second "
                                                                  "(default: the model's rate); other models label every frame")
    _add_config_options(annotate, LabelConfig, only=MODEL_OPTIONS)  # the same options as `label`, from the same fields
    annotate.add_argument("--trust-model-code", action="store_true")

    inspect = commands.add_parser("inspect", help="describe a model bundle, or a finished run's counts and failures")
    inspect.add_argument("path", help="a bundle folder / .keras / .h5 file, or an output folder with run.json")
    inspect.add_argument("--classes", default=None)

    packp = commands.add_parser("pack", help="pack a pretrained .tflite classifier, its classes and settings into a "
                                "bundle folder (then `label --model FOLDER` needs nothing else)")
    packp.add_argument("model", help="a pretrained classifier file (.tflite): a frame or a streaming video model")
    packp.add_argument("--classes", required=True, help="its class names (one a line, or a JSON list)")
    packp.add_argument("--out", required=True, help="the bundle folder to write (new or empty; local or URL)")
    packp.add_argument("--fps", type=float, default=None, help="a streaming model's sampling rate (default 5)")
    packp.add_argument("--state-reset-s", type=float, default=None,
                       help="a streaming model's reset period inside a shot (default 4)")

    report = commands.add_parser("report", help="write a self-contained HTML report of a finished run")
    report.add_argument("run", help="output folder of a finished run")
    report.add_argument("--out", default=None, help="HTML file (default RUN/report.html)")
    report.add_argument("--max-videos", type=int, default=20, help="videos with a timeline plot")

    evalp = commands.add_parser("eval", help="label a labeled manifest; report accuracy, per-class scores, confusion and flicker")
    evalp.add_argument("--manifest", required=True, help="manifest with a `label` column")
    evalp.add_argument("--model", required=True)
    evalp.add_argument("--out", required=True, help="folder for metrics.json, confusion.png/.csv, flicker.png/.csv, labels/")
    evalp.add_argument("--fps", type=float, default=None,
                       help=f"frames sampled per second (default {DEFAULT_FPS:g}, or a clip model's training rate)")
    evalp.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    evalp.add_argument("--windows", default="1,4,8,16,32,64", help="window sizes for the flicker table (1 = raw)")
    evalp.add_argument("--overwrite", action="store_true")
    evalp.add_argument("--no-progress", action="store_true")
    _add_config_options(evalp, LabelConfig, only=MODEL_OPTIONS)

    trainp = commands.add_parser("train", help="train a model bundle")
    kinds = trainp.add_subparsers(dest="kind", required=True)
    frames = kinds.add_parser("frames", help="a frame CNN on an image folder or a labeled video manifest")
    frames.add_argument("--backbone", default="small_cnn", choices=("small_cnn", "mobilenet_v2", "resnet50", "efficientnet_b0"))
    frames.add_argument("--weights", default="none", help="imagenet | none | PATH to a weights file")
    frames.add_argument("--image-size", type=int, default=64)
    frames.add_argument("--fine-tune-epochs", type=int, default=0)
    clips = kinds.add_parser("clips", help="a clip model (3D CNN, early or late fusion, (2+1)D, SlowFast) on clips "
                             "of a labeled video manifest")
    clips.add_argument("--arch", default="3d_cnn", choices=CLIP_ARCHITECTURES,
                       help="the model family (default 3d_cnn; see the README's guide)")
    clips.add_argument("--clip-len", type=int, default=10)
    clips.add_argument("--image-size", type=int, default=48)
    sequence = kinds.add_parser("sequence", help="a CNN + RNN: a frozen encoder's features of consecutive sampled "
                                "frames into a GRU (or LSTM, attention, mean) head, on a labeled video manifest")
    sequence.add_argument("--encoder", required=True, help="frozen frame encoder: a .tflite or .keras file")
    sequence.add_argument("--clip-len", type=int, default=8, help="sampled frames per window (default 8)")
    sequence.add_argument("--clip-stride", type=int, default=None, help="sampled frames between training windows "
                          "(default: half a window)")
    sequence.add_argument("--head", default="gru", choices=SEQUENCE_HEADS, help="what reads the window (default gru)")
    sequence.add_argument("--head-input", default=None, choices=("logits", "pooled", "both"),
                          help="a streaming video encoder (MoViNet): what the head reads per sampled frame: the "
                          "model's logits (default: measured best on UCF101), its pooled features, or both (for "
                          "classes far from the model's own, try both)")
    sequence.add_argument("--prior-map", default=None,
                          help="a streaming video encoder (MoViNet): a label map (JSON: each training class -> the "
                          "model's classes) whose zero-shot probabilities the bundle averages with the head's")
    sequence.add_argument("--prior-classes", default=None, help="the video model's class names, for --prior-map "
                          "(e.g. kinetics600_labels.txt)")
    sequence.add_argument("--prior-weight", type=float, default=None, help="the prior's share (default 0.5)")
    sequence.add_argument("--prior-combine", default="max", choices=("max", "sum"),
                          help="how the prior's map combines a class's model classes (default max)")
    frames.add_argument("--encoder", default=None, help="train only a head on this frozen encoder's features "
                        "(.tflite or .keras file); --backbone and --weights are then unused")
    for sub in (frames, sequence):
        sub.add_argument("--feature-cache", default=DEFAULT_FEATURE_CACHE,
                         help=f"folder caching encoder features between runs, or 'none' (default {DEFAULT_FEATURE_CACHE})")
        sub.add_argument("--holdout-groups", default=None,
                         help="comma-separated values of the manifest's `group` column to hold out for testing "
                         "(default: a stratified --test-fraction of the groups)")
    for sub in (frames, clips, sequence):
        sub.add_argument("--data", required=True, help="image folder (frames only) or labeled video manifest")
        sub.add_argument("--out", required=True, help="bundle folder to write")
        sub.add_argument("--epochs", type=int, default=30 if sub is sequence else 10)
        sub.add_argument("--batch-size", type=int, default=32)
        sub.add_argument("--learning-rate", type=float, default=1e-3)
        sub.add_argument("--fps", type=float, default=None,
                         help="video manifests: frames sampled per second (default 5; sequence over a frame encoder: "
                              "8; over a streaming video encoder such as MoViNet: 5)")
        sub.add_argument("--test-fraction", type=float, default=0.25)
        sub.add_argument("--refit", action=argparse.BooleanOptionalAction, default=None,
                         help="after measuring on the held-out split, train again on every video and ship that "
                         "model (default: on for heads on an --encoder, unless --holdout-groups names a test set)")
        sub.add_argument("--width", type=int, default=32, help="channels of the first layer (small models)")
        sub.add_argument("--max-items-per-video", type=int, default=None)
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--verbose", type=int, default=1)
    return parser


def _label(args: argparse.Namespace) -> int:
    config = LabelConfig(**_config_values(args, LabelConfig))
    # what needs no Keras is checked before TensorFlow even starts (seconds): the manifest, where the model is, --out
    from vidbatch.io.manifest import Manifest
    from vidbatch.io.output import RunOutput
    from vidbatch.model.location import locate_model

    manifest = Manifest.from_path(config.manifest, config.storage_options)
    locate_model(config.model, config.storage_options)
    if config.engine == "ray" and not config.dry_run:
        from vidbatch.engines.ray_connect import check_reachable, cluster_address

        check_reachable(cluster_address(config.ray.address))
    RunOutput(config.out, config.storage_options).check_writable(leave_no_trace=True)
    start_keras_quietly()
    from vidbatch.pipeline import run

    result = run(config, manifest=manifest)
    if result.dry_run:
        print("\n".join(result.notes))
        return result.exit_code
    print(f"{result.videos} videos: {result.ok} ok, {result.failed} failed"
          + (f" ({result.resumed} already done in an earlier run)" if result.resumed else "")
          + f"; {result.elapsed_s:.1f} s. Outputs in {result.out}")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if result.failed:
        failed = result.failed_videos()
        for row in failed.head(20).itertuples():
            print(f"  failed: {row.video_id}: {row.error}", file=sys.stderr)
        if len(failed) > 20:
            print(f"  ... and {len(failed) - 20} more (see summary.parquet)", file=sys.stderr)
    return result.exit_code


def _train(args: argparse.Namespace) -> int:
    from vidbatch.apps.train.trainer import TrainConfig, train

    weights = getattr(args, "weights", "none")
    cache = getattr(args, "feature_cache", None)
    holdout = getattr(args, "holdout_groups", None)
    config = TrainConfig(
        data=args.data, out=args.out, kind={"frames": "frame", "clips": "clip"}.get(args.kind, args.kind),
        encoder=getattr(args, "encoder", None), head=getattr(args, "head", "gru"), arch=getattr(args, "arch", "3d_cnn"),
        clip_stride=getattr(args, "clip_stride", None),
        feature_cache=None if cache in (None, "none") else cache,
        holdout_groups=tuple(g.strip() for g in holdout.split(",") if g.strip()) if holdout else None,
        backbone=getattr(args, "backbone", "small_cnn"), weights=None if weights in (None, "none") else weights,
        image_size=getattr(args, "image_size", 64), epochs=args.epochs, fine_tune_epochs=getattr(args, "fine_tune_epochs", 0),
        batch_size=args.batch_size, learning_rate=args.learning_rate, test_fraction=args.test_fraction, fps=args.fps,
        clip_len=getattr(args, "clip_len", 10), seed=args.seed, width=args.width,
        max_items_per_video=args.max_items_per_video, verbose=args.verbose,
        prior_map=getattr(args, "prior_map", None), prior_classes=getattr(args, "prior_classes", None),
        prior_combine=getattr(args, "prior_combine", "max"),
        refit=args.refit,
        **({"head_input": args.head_input} if getattr(args, "head_input", None) else {}),
        **({"prior_weight": args.prior_weight} if getattr(args, "prior_weight", None) is not None else {}),
    )
    metrics = train(config)
    data = metrics["data"]
    video = f"; video accuracy {metrics['video_accuracy']:.4f}" if metrics.get("video_accuracy") is not None else ""
    print(f"test accuracy {metrics['test_accuracy']:.4f}{video} on {data['test_items']} held-out items "
          f"({data['train_items']} train); skipped {sum(data['skipped'].values())} broken input(s) {data['skipped']}; "
          f"{metrics['train_seconds']:.0f} s. Bundle: {args.out}")
    if metrics.get("refit"):
        print(f"then trained again on {metrics['refit']['trained_on']}, held-out ones included: the bundle holds "
              f"that model (--no-refit ships the measured one{'' if os.path.isdir(args.data) else ' and writes heldout.csv'})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from vidbatch.apps.evaluate import evaluate, format_report

    try:
        windows = [int(w) for w in args.windows.split(",") if w.strip()]
    except ValueError:
        raise ConfigError(f"Invalid `--windows`: expected comma-separated integers. Received: {args.windows!r}") from None
    metrics = evaluate(args.manifest, args.model, args.out, windows=windows, fps=args.fps, window=args.window,
                       overwrite=args.overwrite, progress=not args.no_progress,
                       **{name: getattr(args, name) for name in MODEL_OPTIONS})
    print(format_report(metrics))
    print(f"written: {args.out}/metrics.json, confusion.png, confusion.csv, flicker.png, flicker.csv, labels/")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from vidbatch.apps.synth import SynthSpec, make_dataset

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


MODEL_COMMANDS = ("demo", "train", "eval", "annotate", "inspect", "pack")
"""Commands that start Keras at once: its backend's start-up lines are silenced (`label` does it after its checks)."""


def _say_notes_on_stderr() -> None:
    """The library's notes (`logging`, logger "vidbatch") reach a command-line user as one line each."""
    logger = logging.getLogger("vidbatch")
    if not any(getattr(h, "_vidbatch_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("vidbatch: note: %(message)s"))
        handler._vidbatch_cli = True
        logger.addHandler(handler)
        logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    prefer_system_pool()  # before pyarrow loads: the driver's passes over the archive stay flat (io/memory.py)
    quiet_native_logs()
    args = build_parser().parse_args(argv)
    if args.command in MODEL_COMMANDS:
        start_keras_quietly()
    _say_notes_on_stderr()
    try:
        if args.command == "label":
            return _label(args)
        if args.command == "demo":
            from vidbatch.apps.demo import run_demo

            run_demo(out=args.out, engine=args.engine)
            return 0
        if args.command == "synth":
            return _synth(args)
        if args.command == "train":
            return _train(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "annotate":
            from vidbatch.apps.annotate import annotate

            result = annotate(args.video, args.model, args.out, window=args.window, show_raw=not args.no_raw,
                              batch_size=args.batch_size, classes=args.classes, trust_model_code=args.trust_model_code,
                              preprocessing=args.preprocessing, channel_order=args.channel_order,
                              label_map=args.label_map, label_map_combine=args.label_map_combine,
                              label_map_rest=args.label_map_rest, fps=args.fps, state_reset_s=args.state_reset_s)
            shown = ", ".join(f"{k} {v}" for k, v in sorted(result.labels.items(), key=lambda kv: -kv[1]))
            sampled = f", {result.classified} of them classified" if result.classified != result.frames else ""
            print(f"wrote {result.out}: {result.frames} frames at {result.fps:g} fps ({result.codec}{sampled}); "
                  f"labels shown: {shown}")
            return 0
        if args.command == "inspect":
            from vidbatch.apps.describe import describe

            print(describe(args.path, classes=args.classes))
            return 0
        if args.command == "pack":
            from vidbatch.apps.pack import pack

            out = pack(args.model, args.classes, args.out, fps=args.fps, state_reset_s=args.state_reset_s)
            print(f"wrote {out}: `vidbatch label MANIFEST --model {out} --out OUT` needs nothing else")
            return 0
        if args.command == "report":
            from vidbatch.apps.report import write_report

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
