"""Shot-cut detection on the shared real videos: vidbatch's detector against PySceneDetect, by sampling rate.

    pip install scenedetect          # only for this benchmark
    python benchmarks/shots.py       # a minute; needs ../shared/data/videos

The true cuts were checked by eye (frames on both sides of each candidate looked at): `scene_cuts.mp4` and
`bikes.mp4` (the same footage at two widths) have hard cuts at frames 30, 76, 137, 187 and 242; every other
shared video is one continuous shot (`cockatoo.mp4`: hand-held, the bird rushes the lens around frames
140-170, no cut). A cut counts as found when a detector marks the first examined frame at or after it (at 2 fps
that can be up to 12 frames later); a cut after the last examined frame (242, at 2 fps) cannot be found and is not
counted.

Each detector sees the frames at the rate given: `all` (every decoded frame), or frames sampled at 10, 5 or 2 per
second (what `--fps` gives the model). vidbatch's detector is also run on the model's input only (a 224x224
centre crop, what it used to look at for centre-crop bundles). Results go to results/shots_<host>.json and .md.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
SHARED = os.path.abspath(os.path.join(HERE, "..", "..", "shared", "data", "videos"))
TRUE_CUTS = {"scene_cuts.mp4": [30, 76, 137, 187, 242], "bikes.mp4": [30, 76, 137, 187, 242]}
RATES = ("all", 10.0, 5.0, 2.0)


def sampled(path: str, rate) -> list[tuple[int, np.ndarray]]:
    """(frame index, BGR frame) at `rate` frames per second of video (the product's rate sampler), or all."""
    from vidbatch.stages.sampling import FrameSampling

    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    sampler = FrameSampling(0.0 if rate == "all" else rate).sampler()
    out, index = [], -1
    while capture.grab():
        index += 1
        if sampler.keep(index / fps):
            out.append((index, capture.retrieve()[1]))
    return out


def centre_crop(bgr: np.ndarray, size: int = 224) -> np.ndarray:
    from vidbatch.stages.decode import fit

    return cv2.cvtColor(fit(bgr, size, size, "center_crop"), cv2.COLOR_BGR2RGB)


def decode_seconds(path: str, rate, threshold) -> float:
    """The decoder's whole run at `rate` (decode, resize, shot detection when `threshold`), best of two."""
    from vidbatch.stages.decode import DecodeSpec, VideoDecoder
    from vidbatch.stages.sampling import FrameSampling

    spec = DecodeSpec(width=224, height=224, sampling=FrameSampling(0.0 if rate == "all" else rate),
                      shot_threshold=threshold)
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        with VideoDecoder(path, spec) as decoder:
            for _frame in decoder.frames():
                pass
        best = min(best, time.perf_counter() - started)
    return best


def vidbatch_cuts(path: str, rate, crop: bool) -> list[int]:
    """What `vidbatch label` marks: the decoder's own shot detection at that sampling rate (with crop: of a
    224x224 centre-crop model)."""
    from vidbatch.stages.decode import DecodeSpec, VideoDecoder
    from vidbatch.stages.sampling import FrameSampling

    spec = DecodeSpec(width=224, height=224, sampling=FrameSampling(0.0 if rate == "all" else rate),
                      resize="center_crop" if crop else "stretch", shot_threshold=0.3)
    with VideoDecoder(path, spec) as decoder:
        return [int(f.index) for f in decoder.frames() if f.shot_cut]


def scenedetect_cuts(frames, fps: float, kind: str, every_frame: bool) -> list[int]:
    from scenedetect import AdaptiveDetector, ContentDetector
    from scenedetect.common import FrameTimecode

    # its minimum scene length is in frames of video; on sampled frames, one sample must be enough
    detector = (ContentDetector() if kind == "content" else AdaptiveDetector()) if every_frame else (
        ContentDetector(min_scene_len=1) if kind == "content" else AdaptiveDetector(min_scene_len=1))
    cuts = []
    for index, bgr in frames:
        cuts += [c.frame_num for c in detector.process_frame(FrameTimecode(index, fps), bgr)]
    if hasattr(detector, "post_process") and frames:
        cuts += [c.frame_num for c in detector.post_process(FrameTimecode(frames[-1][0], fps))]
    return sorted(set(cuts))


def score(found: list[int], truth: list[int], examined: list[int]) -> tuple[int, int]:
    """(true cuts found, false cuts): each true cut matches the first examined frame at or after it."""
    expected = {next((i for i in examined if i >= cut), None) for cut in truth} - {None}
    return len(expected & set(found)), len(set(found) - expected), len(expected)


def main() -> None:
    if not os.path.isdir(SHARED):
        sys.exit(f"needs the shared videos at {SHARED}")
    rows, timing = [], {}
    for name in sorted(os.listdir(SHARED)):
        path = os.path.join(SHARED, name)
        fps = cv2.VideoCapture(path).get(cv2.CAP_PROP_FPS) or 25.0
        truth = TRUE_CUTS.get(name, [])
        for rate in RATES:
            frames = sampled(path, rate)
            examined = [i for i, _ in frames]
            for detector in ("vidbatch", "vidbatch_centre_crop", "pyscenedetect_content", "pyscenedetect_adaptive"):
                started = time.perf_counter()
                if detector.startswith("vidbatch"):
                    cuts = vidbatch_cuts(path, rate, crop=detector.endswith("crop"))
                else:
                    cuts = scenedetect_cuts(frames, fps, detector.rsplit("_", 1)[1], rate == "all")
                spent = time.perf_counter() - started
                timing.setdefault(detector, [0.0, 0])
                timing[detector][0] += spent
                timing[detector][1] += len(frames)
                found, false, detectable = score(cuts, truth, examined)
                rows.append({"video": name, "rate": str(rate), "detector": detector, "cuts": cuts, "true": detectable,
                             "found": found, "false": false})
    cost = {}
    for rate in ("all", 2.0):
        off = sum(decode_seconds(os.path.join(SHARED, n), rate, None) for n in sorted(os.listdir(SHARED)))
        on = sum(decode_seconds(os.path.join(SHARED, n), rate, 0.3) for n in sorted(os.listdir(SHARED)))
        cost[str(rate)] = {"decode_s_without_shots": round(off, 2), "decode_s_with_shots": round(on, 2)}
    summary = {}
    for row in rows:
        key = (row["detector"], row["rate"])
        s = summary.setdefault(key, {"found": 0, "true": 0, "false_on_single_shot": 0, "false_on_cut_videos": 0})
        s["found"] += row["found"]
        s["true"] += row["true"]
        s["false_on_cut_videos" if row["true"] else "false_on_single_shot"] += row["false"]
    ms = {d: 1000 * t / max(n, 1) for d, (t, n) in timing.items()}
    host = platform.node() or "host"
    lines = ["| detector | frames examined | true cuts found | false cuts, cut videos | false cuts, single-shot videos "
             "(which) | ms per examined frame |", "|---|---|---:|---:|---:|---:|"]
    for (detector, rate), s in summary.items():
        which = sorted({r["video"] for r in rows if r["detector"] == detector and r["rate"] == rate
                        and not r["true"] and r["false"]})
        lines.append(f"| {detector} | {rate if rate == 'all' else rate + ' fps'} | {s['found']}/{s['true']} | "
                     f"{s['false_on_cut_videos']} | {s['false_on_single_shot']} ({', '.join(which) or 'none'}) | "
                     f"{ms[detector]:.2f} |")
    lines.append("")
    lines.append("ms per examined frame: for vidbatch, the decoder's whole run (decode, resize, detection, and the "
                 "re-reading that confirms candidates); for PySceneDetect, detection alone on frames already decoded.")
    lines.append("")
    lines.append("| frames examined | decoding all shared videos, shots off | shots on |")
    lines.append("|---|---:|---:|")
    for rate, c in cost.items():
        lines.append(f"| {rate if rate == 'all' else rate + ' fps'} | {c['decode_s_without_shots']} s | "
                     f"{c['decode_s_with_shots']} s |")
    table = "\n".join(lines)
    print(table)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", f"shots_{host}.json"), "w") as handle:
        json.dump({"rows": rows, "ms_per_frame": ms, "decode_cost": cost, "host": host}, handle, indent=1)
    with open(os.path.join(HERE, "results", f"shots_{host}.md"), "w") as handle:
        handle.write(table + "\n")


if __name__ == "__main__":
    main()
