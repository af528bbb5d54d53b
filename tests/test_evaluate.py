import json
import os

import pandas as pd

from vidbatch.apps.evaluate import evaluate
from vidbatch.apps.synth import SynthSpec, write_video


def test_eval_reports_accuracy_confusion_and_flicker(colour_bundle, tmp_path):
    rows = []
    for i, (label, flicker) in enumerate([("ball", 0.3), ("box", 0.3), ("waves", 0.0), ("ball", 0.0)]):
        path = str(tmp_path / f"v{i}.mp4")
        write_video(path, label, seed=20 + i, spec=SynthSpec(width=96, height=72, seconds=8, fps=25, flicker=flicker))
        rows.append({"video_id": f"v{i}", "uri": path, "label": label})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    metrics = evaluate(str(tmp_path / "m.csv"), colour_bundle, str(tmp_path / "eval"), windows=(1, 4, 16), fps=10,
                       progress=False, shot_threshold=None)  # synthetic flicker swaps objects: not cuts to reset at
    assert metrics["video_accuracy"] == 1.0 and metrics["videos_scored"] == 4
    assert metrics["per_class"]["ball"]["support"] == 2 and metrics["per_class"]["box"]["f1"] == 1.0
    flicker = {row["window"]: row["switches_per_minute"] for row in metrics["flicker"]}
    assert flicker[1] > 2 * flicker[4] > 0 and flicker[16] < flicker[4]
    for name in ("metrics.json", "confusion.png", "confusion.csv", "flicker.png", "flicker.csv"):
        assert os.path.getsize(tmp_path / "eval" / name) > 0
    confusion = pd.read_csv(tmp_path / "eval" / "confusion.csv", index_col=0)
    assert confusion.values.trace() == 4
    assert json.load(open(tmp_path / "eval" / "metrics.json"))["flicker"][0]["label"] == "raw"
    frames = pd.read_parquet(tmp_path / "eval" / "labels" / "frames")
    assert len(frames["probs"].iloc[0]) == 3
