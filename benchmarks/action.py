"""Action recognition on real clips: each model family vidbatch trains, on five UCF101 classes, held out by group.

    python benchmarks/action.py                 # about 20-30 min on 2 cores; needs ../shared/data/ucf101 and weights
    python benchmarks/action.py --only seq_gru  # one model (names below), merged into the committed results

Every model trains on the clips of groups g12-g25 and is judged the way users
meet it: `vidbatch label` on the clips of groups g08-g11, which no model saw
(clips of one group come from one long video, so a clip-level split would
leak). Video accuracy is the summary's `pred_label` against the manifest's
label. The temporal pair (synthetic, frame order only) runs too. Results go to
benchmarks/results/action_<host>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.abspath(os.path.join(ROOT, "..", "shared", "data"))
UCF = os.path.join(SHARED, "ucf101", "manifest.csv")
EMBEDDER = os.path.join(SHARED, "weights", "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")
MOVINET = os.path.join(SHARED, "weights", "movinet_a0_stream_kinetics600_int8.tflite")
KINETICS = os.path.join(SHARED, "weights", "kinetics600_labels.txt")
LABEL_MAP = os.path.join(ROOT, "examples", "ucf101_from_kinetics600.json")
MOVINET_PARAMETERS = 3_100_000
"""MoViNet-A0 (Kondratyuk et al. 2021: 3.1M parameters), run at 5 fps, its training rate."""
HOLDOUT = (8, 9, 10, 11)
FPS = 8.0
"""Sampling rate for training and labeling: the shortest clip (1.2 s) still gives a window of 8 frames."""
ENCODER_PARAMETERS = 3_228_864
"""MobileNetV1 1.0/224 without its classifier (4.2M with it, Howard et al. 2017)."""

MODELS = {
    # name: (family, TrainConfig fields)
    "frame_cnn": ("frame CNN from scratch (64x64)", dict(kind="frame", backbone="small_cnn", image_size=64, epochs=10,
                                                          max_items_per_video=8, width=32)),
    "frame_encoder": ("frame head on the int8 MobileNet encoder", dict(kind="frame", encoder=EMBEDDER, epochs=15)),
    "clip_3d_cnn": ("3D CNN from scratch (8 x 48x48)", dict(kind="clip", image_size=48, clip_len=8, epochs=10,
                                                            max_items_per_video=4, width=32)),
    **{f"clip_{arch}": (f"{label} from scratch (8 x 48x48)", dict(kind="clip", arch=arch, image_size=48, clip_len=8,
                                                                   epochs=10, max_items_per_video=4, width=32))
       for arch, label in (("early_fusion", "early fusion"), ("late_fusion", "late fusion (two frames half a clip apart)"),
                           ("r2plus1d", "(2+1)D CNN"), ("slowfast", "SlowFast-style two-pathway CNN"),
                           ("two_stream", "two-stream (middle RGB frame + stacked optical flow)"))},
    "seq_gru": ("CNN + GRU (encoder, 8-frame windows)", dict(kind="sequence", encoder=EMBEDDER, head="gru", clip_len=8)),
    "seq_attention": ("CNN + attention pooling (encoder)", dict(kind="sequence", encoder=EMBEDDER, head="attention",
                                                                clip_len=8)),
    "seq_mean": ("CNN + mean pooling (encoder)", dict(kind="sequence", encoder=EMBEDDER, head="mean", clip_len=8)),
    "video_encoder_movinet": ("linear head on MoViNet-A0-Stream logits at its reset windows' ends (video encoder, 5 fps)",
                              dict(kind="sequence", encoder=MOVINET, fps=5.0)),
    "video_encoder_movinet_prior": ("the same head mixed with MoViNet's own classes (`--prior-map`, max, 0.5)",
                                    dict(kind="sequence", encoder=MOVINET, fps=5.0, prior_map=LABEL_MAP,
                                         prior_classes=KINETICS)),
    "zero_shot_movinet": ("MoViNet-A0-Stream, no training: Kinetics-600 + label map (max, drop), 5 fps", None),
}
PUBLISHED = [
    ("3D CNN, 5 UCF101 classes", "88%", "the seed articles, another 5-class subset"),
    ("Keras video transformer over CNN features, 5 UCF101 classes", "about 83%", "the seed articles (a keras.io example)"),
    ("KTH, single-frame CNN", "63.4%", "the seed articles"),
    ("KTH, 3D CNN", "about 90%", "the seed articles (Ji et al., 3D CNNs for human action recognition)"),
]


def split_manifests(work: str) -> tuple[str, str]:
    import pandas as pd

    table = pd.read_csv(UCF)
    table["uri"] = [os.path.join(os.path.dirname(UCF), u) for u in table.uri]
    held = table.group.isin(HOLDOUT)
    paths = os.path.join(work, "train.csv"), os.path.join(work, "test.csv")
    table[~held].to_csv(paths[0], index=False)
    table[held].to_csv(paths[1], index=False)
    return paths


def run_model(name: str, work: str, train_csv: str, test_csv: str, reuse: bool = False) -> dict:
    sys.path.insert(0, ROOT)
    import keras

    import vidbatch
    from vidbatch.apps.train.trainer import TrainConfig, train

    family, fields = MODELS[name]
    out = os.path.join(work, f"{name}-labels")
    shutil.rmtree(out, ignore_errors=True)  # a fresh run (an equal earlier one would only be resumed)
    if fields is None:  # no training: the streaming video model and a label map
        labeled = vidbatch.label(test_csv, MOVINET, out, classes=KINETICS, label_map=LABEL_MAP,
                                 label_map_rest="drop", window=8, shot_threshold=None, progress=False)
        metrics, head, fps = {"test_accuracy": None, "train_seconds": 0.0}, 0, 5.0
    else:
        fps = fields.get("fps", FPS)
        bundle = os.path.join(work, name)
        config = TrainConfig(data=train_csv, out=bundle, test_fraction=0.15, batch_size=32,
                             feature_cache=os.path.join(work, "features"), **{"fps": FPS, **fields})
        saved = os.path.join(bundle, "metrics.json")
        if reuse and os.path.exists(saved):  # --reuse: a bundle this work folder already trained
            with open(saved) as handle:
                metrics = json.load(handle)
        else:
            metrics = train(config)
        labeled = vidbatch.label(test_csv, bundle, out, fps=fps, window=8, shot_threshold=None, progress=False)
        head = keras.saving.load_model(os.path.join(bundle, "model.keras"), compile=False).count_params()
    summary = labeled.summary_frame()  # the manifest's columns (label) pass through
    run = json.load(open(os.path.join(out, "run.json")))
    stages = run["stages"]
    encoder = (fields or {}).get("encoder")
    encoder_parameters = MOVINET_PARAMETERS if encoder == MOVINET or fields is None else (
        ENCODER_PARAMETERS if encoder else 0)
    return {
        "family": family,
        "video_accuracy": float((summary.pred_label == summary.label).mean()),
        "test_videos": int(len(summary)),
        "failed_videos": int((summary.status != "ok").sum()),
        "validation_item_accuracy": metrics["test_accuracy"],
        "inference_items_per_s": stages["inference_items_per_busy_s"],
        "labeling_videos_per_s": len(summary) / labeled.elapsed_s,
        "items_classified": stages["items_classified"],
        "parameters": head + encoder_parameters,
        "trained_parameters": head,
        "train_seconds": metrics["train_seconds"],
        "items_per_video": (stages["items_classified"] / max(1, len(summary))),
        "encode_seconds": metrics.get("encoder", {}).get("encode_seconds"),
    }


def run_temporal(work: str) -> dict:
    sys.path.insert(0, HERE)
    import temporal_pair

    return temporal_pair.run(os.path.join(work, "temporal"), encoder=EMBEDDER if os.path.exists(EMBEDDER) else None)


def markdown(results: dict) -> str:
    lines = [f"UCF101, 5 classes; trained on groups g12-g25 ({results['train_videos']} clips), labeled by `vidbatch label` "
             f"on groups g08-g11 ({results['test_videos']} clips), {FPS:g} fps. {results['machine']}.", "",
             "| model | video accuracy | inference frames/s | parameters (trained) | training time |",
             "|---|---:|---:|---:|---:|"]
    for name, r in results["models"].items():
        fields = (MODELS[name][1] if name in MODELS else {}) or {}
        per_item = fields.get("clip_len", 1) if fields.get("kind") in ("clip", "sequence") and fields.get(
            "encoder") != MOVINET else 1
        encode = (f" (encoding {r['encode_seconds']:.0f} s)" if (r.get("encode_seconds") or 0) >= 1
                  else " (features from the cache)" if fields.get("encoder") else "")
        lines.append(f"| {r['family']} | {r['video_accuracy']:.1%} ({r['test_videos']} clips) | "
                     f"{r['inference_items_per_s'] * per_item:.0f} | {r['parameters'] / 1e6:.2f}M ({r['trained_parameters'] / 1e3:.0f}k) | "
                     f"{r['train_seconds']:.0f} s{encode} |")
    lines += ["", "Published figures (other subsets and splits; for scale, not a like-for-like comparison):", "",
              "| model | accuracy | source |", "|---|---:|---|"]
    lines += [f"| {m} | {a} | {s} |" for m, a, s in PUBLISHED]
    if results.get("temporal"):
        t = results["temporal"]
        lines += ["", "Temporal pair (synthetic `left_to_right` / `right_to_left`, frame order only), video accuracy:", "",
                  "| model | video accuracy |", "|---|---:|"]
        lines += [f"| {k} | {v['video_accuracy']:.0%} of {v['test_videos']} |" for k, v in t.items() if isinstance(v, dict)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "vidbatch-action"))
    parser.add_argument("--only", nargs="*", default=None, choices=sorted(MODELS) + ["temporal"])
    parser.add_argument("--results", default=os.path.join(HERE, "results"))
    parser.add_argument("--reuse", action="store_true", help="label with bundles already trained in --work")
    args = parser.parse_args()
    if not (os.path.exists(UCF) and os.path.exists(EMBEDDER)):
        raise SystemExit(f"needs {UCF} and {EMBEDDER}")
    os.makedirs(args.work, exist_ok=True)
    sys.path.insert(0, ROOT)
    from vidbatch.core.quiet import start_keras_quietly

    start_keras_quietly()
    train_csv, test_csv = split_manifests(args.work)
    import pandas as pd

    started = time.monotonic()
    stem = f"action_{platform.node() or 'machine'}"
    results = {"machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
               "train_videos": len(pd.read_csv(train_csv)), "test_videos": len(pd.read_csv(test_csv)), "models": {}}
    previous = os.path.join(args.results, stem + ".json")
    if args.only is not None and os.path.exists(previous):  # a partial run updates the committed table
        with open(previous) as handle:
            earlier = json.load(handle)
        results["models"], results["temporal"] = earlier.get("models", {}), earlier.get("temporal")
    for name in MODELS:
        if args.only is None or name in args.only:
            results["models"][name] = run_model(name, args.work, train_csv, test_csv, reuse=args.reuse)
            r = results["models"][name]
            print(f"{name:>14}: video accuracy {r['video_accuracy']:.1%}, {r['inference_items_per_s']:.0f} items/s, "
                  f"{r['train_seconds']:.0f} s training", flush=True)
    if args.only is None or "temporal" in args.only:
        results["temporal"] = run_temporal(args.work)
        print(json.dumps(results["temporal"], indent=1), flush=True)
    results["models"] = {k: results["models"][k] for k in MODELS if k in results["models"]}  # table order
    results["seconds"] = round(time.monotonic() - started, 1)
    results["markdown"] = markdown(results)
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, stem + ".json"), "w") as handle:
        json.dump(results, handle, indent=2, default=str)
    with open(os.path.join(args.results, stem + ".md"), "w") as handle:
        handle.write(results["markdown"])
    print(results["markdown"])


if __name__ == "__main__":
    main()
