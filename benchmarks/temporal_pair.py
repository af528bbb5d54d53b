"""What a 3D CNN buys: two classes that differ only in the order of frames.

`left_to_right` and `right_to_left` show the same ball crossing the frame; any
single frame of one could belong to the other. A frame CNN with rolling
averaging cannot separate them; a 3D CNN over clips can.

    python benchmarks/temporal_pair.py            # prints both video-level accuracies
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(work: str, train_per_class: int = 16, test_per_class: int = 8, epochs: int = 12, size: int = 32,
        clip_len: int = 8, fps: float = 10.0, encoder: str | None = None, archs: tuple[str, ...] | None = None,
        seconds: float = 3.0) -> dict:
    """Video accuracy of the frame CNN and of each clip family in `archs` (default: all of them), keyed
    `frame`, `clip` (the 3D CNN) and the family names; given a frame `encoder`, also of a CNN + GRU over it
    (`sequence`)."""
    sys.path.insert(0, ROOT)
    import keras

    import vidbatch
    from vidbatch.apps.synth import TEMPORAL_CLASSES, SynthSpec, make_dataset
    from vidbatch.apps.train.trainer import TrainConfig, train

    started = time.monotonic()
    spec = SynthSpec(width=96, height=72, fps=25, seconds=seconds)
    train_set = make_dataset(os.path.join(work, "train"), TEMPORAL_CLASSES, train_per_class, seed=31, spec=spec)
    test_set = make_dataset(os.path.join(work, "test"), TEMPORAL_CLASSES, test_per_class, seed=32, spec=spec)
    from vidbatch.core.config import CLIP_ARCHITECTURES

    results = {}
    models = [("frame", "frame", {})]
    models += [("clip" if arch == "3d_cnn" else arch, "clip", {"arch": arch}) for arch in archs or CLIP_ARCHITECTURES]
    models += [("sequence", "sequence", dict(encoder=encoder, epochs=3 * epochs, feature_cache=None))] if encoder else []
    for name, kind, extra in models:
        bundle = os.path.join(work, f"{name}-model")
        metrics = train(TrainConfig(**{**dict(data=train_set, out=bundle, kind=kind, image_size=size, epochs=epochs, fps=fps,
                                              clip_len=clip_len, width=16, batch_size=16, augment=False), **extra}))
        summary = vidbatch.label(test_set, bundle, os.path.join(work, f"{name}-labels"), fps=fps, window=16,
                                 clip_stride=2, shot_threshold=None, progress=False, overwrite=True).summary_frame()
        results[name] = {
            "held_out_item_accuracy": metrics["test_accuracy"],
            "video_accuracy": float((summary.pred_label == summary.label).mean()),
            "test_videos": int(len(summary)),
            "train_seconds": metrics["train_seconds"],
            "trained_parameters": keras.saving.load_model(os.path.join(bundle, "model.keras"), compile=False).count_params(),
        }
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "vidbatch-temporal"))
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    results = run(args.work, epochs=args.epochs)
    print(json.dumps(results, indent=2))
    for name, r in results.items():
        if isinstance(r, dict):
            print(f"{name:>14}: {r['video_accuracy']:.0%} of {r['test_videos']} test videos, {r['train_seconds']:.0f} s training")


if __name__ == "__main__":
    main()
