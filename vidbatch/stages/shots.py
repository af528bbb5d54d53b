"""Hard-cut (shot boundary) detection over the sampled frames, run inside the decoder."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import cv2
import numpy as np


class ShotDetector:
    """Hard cuts: a colour-histogram change between sampled frames that is large, a spike, and lasting.

    Hue-saturation histograms (32x32 bins) of the whole decoded frame scaled down
    to 224 px wide, compared with the Bhattacharyya distance. A cut needs the distance to the last frame of the
    current shot above `threshold` and above `spike` times the median of the
    last few distances, so steady fast motion does not read as a stream of cuts;
    and the frame after it must still differ from the old shot, so a single
    flashed frame (a camera flash, an explosion, another object for one frame)
    is not a cut and does not become the reference. That needs one frame of
    look-ahead: `mark` yields each frame when the next one has arrived.

    Between sampled frames far apart (2 fps: half a second), a hand-held camera or
    an animal rushing the lens changes the histogram as much as a cut; `verify`
    then looks at every frame in between, where a cut is one jump and motion is
    many small steps. `benchmarks/shots.py` measures it on every shared real video
    against PySceneDetect (results in benchmarks/README.md).
    """

    WIDTH = 224
    HISTORY = 8

    def __init__(self, threshold: float, spike: float = 1.5, verify: Callable[[Any, Any], bool] | None = None) -> None:
        self.threshold = threshold
        self.spike = spike
        self.verify = verify
        """Asked (the payloads of the shot's last frame and of the candidate) before a cut between sampled frames
        far apart is accepted: between samples half a second apart, fast motion changes the picture as much as a
        cut does; `VideoDecoder` looks at every frame between the two."""
        self._recent: list[float] = []

    def histogram(self, bgr: np.ndarray) -> np.ndarray:
        """Of the whole decoded frame, scaled down to `WIDTH` (a smaller one as it is): never of the model's input,
        which may be a centre crop that hides half the picture."""
        height, width = bgr.shape[:2]
        if width > self.WIDTH:
            size = (self.WIDTH, max(1, round(height * self.WIDTH / max(width, 1))))
            # bilinear: a fifth of area averaging's cost (0.16 vs 0.89 ms for 320x240 here), and a 32x32-bin
            # histogram does not see the difference (benchmarks/shots.py: the same cuts)
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)
        # a frame no wider than WIDTH is used as it is: enlarging it adds no information to its histogram
        hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
        histogram = cv2.calcHist([hsv], [0, 1], None, [32, 32], [0, 180, 0, 256])
        cv2.normalize(histogram, histogram)
        return histogram

    @staticmethod
    def distance(a: np.ndarray, b: np.ndarray) -> float:
        return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))

    def _spike(self, distance: float) -> bool:
        typical = float(np.median(self._recent[-self.HISTORY :])) if self._recent else 0.0
        return distance > self.threshold and distance > self.spike * typical

    def mark(self, frames: Iterable[tuple[np.ndarray, Any]]) -> Iterator[tuple[Any, bool]]:
        """(decoded BGR frame, payload) per sampled frame in order -> (payload, starts a new shot), one frame late."""
        reference = None  # (histogram, payload) of the current shot's last (non-flash) frame
        held = None  # (payload, histogram, distance to reference, spike, reference payload)
        for bgr, payload in frames:
            histogram = self.histogram(bgr)
            if held is not None:
                held_payload, held_histogram, held_distance, spike, before = held
                lasting = spike and self.distance(reference[0], histogram) > self.threshold  # the change lasts
                cut = lasting and (self.verify is None or self.verify(before, held_payload))
                if lasting or not spike:  # a cut, or motion between samples: the shot's last frame is this one
                    reference = (held_histogram, held_payload)
                    self._recent.append(held_distance)
                # else: a flash; the next frame is compared with the shot before it
                yield held_payload, cut
            if reference is None:
                reference = (histogram, payload)
                held = (payload, histogram, 0.0, False, payload)
                continue
            distance = self.distance(reference[0], histogram)
            held = (payload, histogram, distance, self._spike(distance), reference[1])
        if held is not None:
            cut = held[3] and (self.verify is None or self.verify(held[4], held[0]))
            yield held[0], cut  # the last frame has no successor: a spike counts
