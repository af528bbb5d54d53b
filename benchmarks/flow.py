"""Optical flow for two-stream models: speed and quality of OpenCV's methods at model input sizes.

    python benchmarks/flow.py        # a minute; needs ../shared/data (UCF101 and KTH clips)

Quality is the photometric error left after warping the successor frame back by the flow (mean absolute
grey-level difference; lower is better), beside the error with no flow at all. Results go to
results/flow_<host>.json and .md.
"""

from __future__ import annotations

import glob
import json
import os
import platform
import time

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.abspath(os.path.join(HERE, "..", "..", "shared", "data"))
CLIPS = ["ucf101/BaseballPitch/*g08_c01.avi", "ucf101/PushUps/*g08_c01.avi", "ucf101/BalanceBeam/*g08_c01.avi",
         "videos/person01_walking_d4_uncomp.avi"]
METHODS = {
    "farneback": lambda: (lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)),
    "dis_ultrafast": lambda: cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST).calc,
    "dis_fast": lambda: cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST).calc,
    "dis_medium": lambda: cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc,
}


def grey_frames(path: str, size: int, count: int = 60) -> list[np.ndarray]:
    capture, frames = cv2.VideoCapture(path), []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (size, size), interpolation=cv2.INTER_AREA))
    return frames


def warp_error(a: np.ndarray, b: np.ndarray, flow: np.ndarray | None) -> float:
    if flow is None:
        return float(np.abs(b.astype(np.float32) - a).mean())
    h, w = a.shape
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1).astype(np.float32) + flow
    warped = cv2.remap(b, grid[..., 0], grid[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return float(np.abs(warped.astype(np.float32) - a).mean())


def main() -> None:
    paths = [p for pattern in CLIPS for p in sorted(glob.glob(os.path.join(SHARED, pattern)))[:1]]
    if not paths:
        raise SystemExit(f"needs the shared clips under {SHARED}")
    cv2.setNumThreads(1)  # one decoder process computes the flow of its own videos
    results = {"clips": [os.path.relpath(p, SHARED) for p in paths], "sizes": {}}
    for size in (48, 112, 224):
        videos = [grey_frames(p, size) for p in paths]
        row = {"no_flow_error": float(np.mean([warp_error(v[i], v[i + 1], None) for v in videos for i in range(len(v) - 1)]))}
        for name, make in METHODS.items():
            calc, seconds, errors, pairs = make(), 0.0, [], 0
            for v in videos:
                for i in range(len(v) - 1):
                    started = time.perf_counter()
                    flow = calc(v[i], v[i + 1], None) if name != "farneback" else calc(v[i], v[i + 1])
                    seconds += time.perf_counter() - started
                    errors.append(warp_error(v[i], v[i + 1], flow))
                    pairs += 1
            row[name] = {"ms_per_frame": round(1000 * seconds / pairs, 3), "warp_error": round(float(np.mean(errors)), 3)}
        results["sizes"][size] = row
    lines = [f"Flow between consecutive frames of {len(paths)} real clips, one thread, {platform.processor() or platform.machine()}.",
             "", "| size | method | ms per frame | warp error (no flow) |", "|---|---|---:|---:|"]
    for size, row in results["sizes"].items():
        for name in METHODS:
            lines.append(f"| {size}x{size} | {name} | {row[name]['ms_per_frame']:.2f} | "
                         f"{row[name]['warp_error']:.2f} ({row['no_flow_error']:.2f}) |")
    results["markdown"] = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    stem = os.path.join(HERE, "results", f"flow_{platform.node() or 'machine'}")
    with open(stem + ".json", "w") as handle:
        json.dump(results, handle, indent=2)
    with open(stem + ".md", "w") as handle:
        handle.write(results["markdown"])
    print(results["markdown"])


if __name__ == "__main__":
    main()
