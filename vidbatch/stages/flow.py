"""Optical flow for two-stream models, computed in the decode stage and only when a model asks for it.

Flow goes from each sampled frame to its successor in the video (not to the next sampled frame, which may
be seconds later), at the model's input size, with OpenCV's DIS method at its medium preset. On four real
clips (`benchmarks/flow.py`, one thread) it left the smallest warping error at 112x112 and 224x224 (1.54 and
1.29 grey levels, from 2.64 and 3.04 with no flow; Farneback 1.67 and 1.41) in about half Farneback's time
(1.2 vs 2.1 ms per frame at 112x112, 4.8 vs 8.8 ms at 224x224).

It travels as compactly as the frames: 2 uint8 channels beside the RGB ones, 1/4 pixel per step around 128
(so +-32 pixels), and the model unpacks it (`architectures.two_stream`).
"""

from __future__ import annotations

import cv2
import numpy as np

from vidbatch.core.config import FLOW_CHANNELS, FLOW_STEPS_PER_PIXEL, FLOW_ZERO  # noqa: F401  (the packing)


class OpticalFlow:
    """DIS optical flow between two RGB frames of one size, packed as uint8."""

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def packed(self, frame: np.ndarray, successor: np.ndarray | None) -> np.ndarray:
        """[H, W, 2] uint8: the flow from `frame` to `successor` (zero motion when there is none)."""
        if successor is None:
            return np.full((*frame.shape[:2], FLOW_CHANNELS), FLOW_ZERO, np.uint8)
        flow = self._dis.calc(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), cv2.cvtColor(successor, cv2.COLOR_RGB2GRAY), None)
        return pack(flow)


def pack(flow: np.ndarray) -> np.ndarray:
    """Flow in pixels (float) -> uint8, 1/4 pixel per step around 128."""
    return np.clip(np.rint(flow * FLOW_STEPS_PER_PIXEL) + FLOW_ZERO, 0, 255).astype(np.uint8)


def unpack(packed: np.ndarray) -> np.ndarray:
    """uint8 -> flow in pixels (float32)."""
    return (packed.astype(np.float32) - FLOW_ZERO) / FLOW_STEPS_PER_PIXEL
