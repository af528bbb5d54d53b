"""Console progress (videos done/total, frames/s, ETA) and per-stage counters for run.json."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from tqdm.auto import tqdm


@dataclass
class StageCounters:
    """What each stage did and how long it took; goes into run.json."""

    videos_ok: int = 0
    videos_failed: int = 0
    frames_decoded: int = 0
    items_classified: int = 0
    inference_s: float = 0.0
    inference_batches: int = 0
    write_s: float = 0.0
    """Seconds the commit thread spent writing (off the inference loop)."""
    commits: int = 0
    flow_s: float = 0.0
    """Decoder seconds spent on optical flow (two-stream models), and the sampled frames it was computed for."""
    flow_frames: int = 0
    started: float = field(default_factory=time.monotonic)
    first_item_at: float | None = None
    """When the first classified item arrived: what comes before is start-up (workers, model load, tracing)."""

    def classified(self, count: int) -> None:
        if count and self.first_item_at is None:
            self.first_item_at = time.monotonic()
        self.items_classified += count

    def as_dict(self) -> dict:
        wall = max(time.monotonic() - self.started, 1e-9)
        startup = (self.first_item_at - self.started) if self.first_item_at else wall
        steady = max(wall - startup, 1e-9)
        return {
            "startup_s": round(startup, 3),
            "steady_classified_items_per_s": round(self.items_classified / steady, 2) if self.first_item_at else None,
            "videos_ok": self.videos_ok,
            "videos_failed": self.videos_failed,
            "frames_decoded": self.frames_decoded,
            "items_classified": self.items_classified,
            "inference_batches": self.inference_batches,
            "wall_s": round(wall, 3),
            "inference_busy_s": round(self.inference_s, 3),
            "write_busy_s": round(self.write_s, 3),
            "commits": self.commits,
            "decoded_frames_per_s": round(self.frames_decoded / wall, 2),
            **({"flow_s": round(self.flow_s, 3), "flow_frames": self.flow_frames,
                "flow_ms_per_frame": round(1000 * self.flow_s / self.flow_frames, 3)} if self.flow_frames else {}),
            "classified_items_per_s": round(self.items_classified / wall, 2),
            "inference_items_per_busy_s": round(self.items_classified / self.inference_s, 2) if self.inference_s else None,
        }


class Progress:
    """A tqdm bar over videos, or nothing when disabled or not on a terminal-like stream."""

    def __init__(self, total: int, enabled: bool, counters: StageCounters, description: str = "labeling") -> None:
        self.counters = counters
        self._bar = None
        if enabled and total:
            self._bar = tqdm(total=total, desc=description, unit="video", file=sys.stderr, dynamic_ncols=True)

    def video_done(self) -> None:
        if self._bar is not None:
            wall = max(time.monotonic() - self.counters.started, 1e-9)
            self._bar.set_postfix(
                frames_s=f"{self.counters.items_classified / wall:.0f}",
                failed=self.counters.videos_failed,
                refresh=False,
            )
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
