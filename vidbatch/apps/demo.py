"""`vidbatch demo`: generate a labeled synthetic set, train a tiny model, label the set, report accuracy.

Runs offline on a 2-core laptop in about a minute.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from typing import TextIO

import pandas as pd

from vidbatch.apps.synth import (
    SHAPE_CLASSES,
    SynthSpec,
    make_dataset,
    write_shots_video,
    write_video,
)
from vidbatch.apps.train.trainer import TrainConfig, train
from vidbatch.core.config import LabelConfig
from vidbatch.pipeline import run
from vidbatch.stages.smooth import count_switches


@dataclass
class DemoResult:
    out: str
    manifest: str
    model: str
    accuracy: float
    result: object


def run_demo(out: str = "vidbatch-demo", videos_per_class: int = 4, epochs: int = 8, stream: TextIO | None = None,
             progress: bool = True, engine: str = "local") -> DemoResult:
    stream = stream or sys.stdout
    started = time.monotonic()
    say = lambda text: print(text, file=stream, flush=True)  # noqa: E731
    spec = SynthSpec(width=160, height=120, fps=25, seconds=4)
    say(f"[1/4] generating synthetic videos under {out}/ (classes: {', '.join(SHAPE_CLASSES)})")
    # many short, varied training videos: frames of one video are near-duplicates, so videos are what count
    train_spec = SynthSpec(width=spec.width, height=spec.height, fps=spec.fps, seconds=2)
    train_manifest = make_dataset(os.path.join(out, "train"), videos_per_class=16, seed=1, spec=train_spec)
    manifest = make_dataset(os.path.join(out, "data"), videos_per_class=videos_per_class, seed=2, spec=spec)
    add_changing_videos(manifest, spec)
    model_dir = os.path.join(out, "model")
    say(f"[2/4] training a small CNN on frames of {train_manifest} (separate videos from the labeled set)")
    metrics = train(TrainConfig(data=train_manifest, out=model_dir, backbone="small_cnn", image_size=64, epochs=epochs,
                                fps=5.0, width=16, seed=0))
    say(f"      held-out frame accuracy {metrics['test_accuracy']:.3f} in {metrics['train_seconds']:.0f} s; bundle: {model_dir}")
    labels_dir = os.path.join(out, "labels")
    say(f"[3/4] labeling {manifest} -> {labels_dir}")
    result = run(LabelConfig(manifest=manifest, model=model_dir, out=labels_dir, overwrite=True, progress=progress,
                             engine=engine))
    frame = result.summary_frame()
    correct = (frame["pred_label"] == frame["label"]).sum()
    accuracy = float(correct / len(frame))
    say("[4/4] summary (summary.parquet):")
    with _pandas_display():
        say(frame[["video_id", "content", "label", "pred_label", "pred_score", "shots", "frames_classified",
                   "duration_s"]].to_string(index=False))
    say(f"video-level accuracy against the manifest's label column: {correct}/{len(frame)} = {accuracy:.1%}")
    show_smoothing(labels_dir, say)
    say(f"outputs: {labels_dir}/summary.parquet, segments.parquet, shots.parquet, frames/, run.json  "
        f"({time.monotonic() - started:.0f} s in all)")
    say(f'try: python -c "import pandas as pd; print(pd.read_parquet(\'{labels_dir}/segments.parquet\'))"')
    return DemoResult(out=out, manifest=manifest, model=model_dir, accuracy=accuracy, result=result)


CHANGING = (
    # (video_id, what it shows, shots, flicker): the manifest's label is the class on screen longest
    ("cut_ball_box", "hard cut", ("ball", "ball", "box"), 0.0),
    ("cut_waves_ball", "hard cut", ("waves", "ball", "waves"), 0.0),
    ("flicker_box", "flicker", ("box",), 0.25),
    ("flicker_waves", "flicker", ("waves",), 0.25),
)


def add_changing_videos(manifest: str, spec: SynthSpec) -> None:
    """Videos whose class changes at hard cuts, and videos where other classes flash in: what rolling averages and
    shot resets are for (a set where every video holds one class all along shows flat lines)."""
    folder = os.path.dirname(manifest)
    rows = pd.read_csv(manifest).assign(content="one class")
    extra = []
    for i, (video_id, content, shots, flicker) in enumerate(CHANGING):
        path = os.path.join(folder, "videos", video_id + ".mp4")
        if flicker:
            write_video(path, shots[0], seed=500 + i, spec=replace(spec, flicker=flicker))
        else:
            write_shots_video(path, shots, seed=500 + i, spec=spec)
        extra.append({"video_id": video_id, "uri": f"videos/{video_id}.mp4",
                      "label": max(set(shots), key=shots.count), "content": content})
    pd.concat([rows, pd.DataFrame(extra)]).to_csv(manifest, index=False)


def show_smoothing(labels_dir: str, say) -> None:
    """What the rolling average and the shot resets did on the changing videos."""
    frames = pd.read_parquet(os.path.join(labels_dir, "frames"),
                             filters=[("video_id", "in", [video_id for video_id, *_ in CHANGING])])
    segments = pd.read_parquet(os.path.join(labels_dir, "segments.parquet"))
    shots = pd.read_parquet(os.path.join(labels_dir, "shots.parquet"))
    say("what smoothing and shot cuts did (frames/, segments.parquet, shots.parquet):")
    for video_id, content, _, _ in CHANGING:
        mine = frames[frames.video_id == video_id].sort_values("frame_index")
        raw, smoothed = count_switches(mine.raw_label.to_numpy()), count_switches(mine.smoothed_label.to_numpy())
        runs = segments[segments.video_id == video_id]
        cuts = shots[shots.video_id == video_id]
        say(f"  {video_id} ({content}): label switches raw {raw}, smoothed {smoothed}; {len(cuts)} shot(s) "
            f"[{', '.join(f'{r.start_s:.0f}-{r.end_s:.0f} s {r.label}' for r in cuts.itertuples())}]; segments: "
            + ", ".join(f"{r.start_s:.1f}-{r.end_s:.1f} s {r.label}" for r in runs.itertuples()))


def _pandas_display():
    return pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 3)
