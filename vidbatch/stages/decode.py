"""Decode a video with OpenCV: streaming, sampled, resized to the model's input, RGB uint8.

Frames are read sequentially (`grab()` for every frame, `retrieve()` only for
the kept ones), resized at once (a 8K frame never waits in memory) and shipped
in chunks of at most `chunk_frames`, so a long video costs no more memory
than a short one.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, NamedTuple

# FFmpeg's own messages ("moov atom not found"...) would flood the console;
# vidbatch reports each problem once, in the video's `error` column.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # noqa: E402
import numpy as np

from vidbatch.core.errors import VideoError
from vidbatch.stages import thumbnails
from vidbatch.stages.flow import FLOW_CHANNELS, OpticalFlow
from vidbatch.stages.probe import check_file, describe_unopenable, sniff_non_video
from vidbatch.stages.sampling import (
    ClipAssembler,
    ClipSampling,
    FrameSampling,
    KeyframeSampling,
)
from vidbatch.stages.shots import ShotDetector

if TYPE_CHECKING:
    from vidbatch.core.config import LabelConfig
    from vidbatch.model.spec import BundleSpec

_FALLBACK_FPS = 25.0
MAX_VERIFY_FRAMES = 300
"""Candidate cuts between sampled frames further apart than this (10 s at 30 fps) are not re-read frame by frame."""
TOLERATED_MISSING_S = 1.0
TOLERATED_MISSING_FRAMES = 2
"""A container may list more frames than its stream holds: real AVI indexes are often off by a few (UCF101's
`v_BaseballPitch_g10_c01.avi` lists 104, FFmpeg decodes 101). Up to a second of missing frames (at least 2) is
such an index, and the video is labeled from what decodes, with a note; more is a stream that really ends early
(a file cut short), and the video fails."""


@dataclass(frozen=True)
class DecodeSpec:
    """How to decode: the model's input size, the sampling, the chunking."""

    width: int
    height: int
    sampling: FrameSampling | KeyframeSampling = field(default_factory=FrameSampling)
    chunk_frames: int = 32
    clip: ClipSampling | None = None
    thumbnails: bool = False
    """Keep small JPEGs of sampled frames (about one a second) for `--thumbnails`: a `thumb` column in each chunk."""
    resize: str = "stretch"
    """`stretch` to the input size, or `center_crop` to its aspect ratio first (the model's bundle says which)."""
    flow: bool = False
    """Also compute optical flow (two-stream models): each item gets 2 more channels, the flow from the sampled
    frame to its successor in the video, packed as uint8 (see `stages.flow`)."""
    shot_threshold: float | None = None
    """Hard-cut detection: colour-histogram (Bhattacharyya) distance between consecutive sampled frames above
    which a new shot starts; None turns it off."""
    threads: int = 0
    """FFmpeg's decoding threads per decoder; 0: FFmpeg's default (one per CPU). Engines set the CPUs shared out
    among their decoders (`config.decoder_threads`). The pixels do not depend on it."""

    @classmethod
    def for_model(cls, model: "BundleSpec", config: "LabelConfig") -> "DecodeSpec":
        """What a model (its input size, frame or clip kind) and a run's options ask of the decoder."""
        clip = None
        if model.kind == "clip":
            clip = ClipSampling(clip_len=model.clip_len, stride=config.clip_stride or model.clip_len)
        keyframes = config.sampling == "keyframes"
        sampling = KeyframeSampling() if keyframes else FrameSampling(config.fps)
        # cuts are found between consecutive sampled frames; key frames seconds apart would all look like cuts
        shot_threshold = None if keyframes else config.shot_threshold or None
        return cls(width=model.input_size[1], height=model.input_size[0], sampling=sampling,
                   chunk_frames=config.chunk_frames, clip=clip, shot_threshold=shot_threshold,
                   thumbnails=config.thumbnails, resize=model.resize, flow=model.flow)

    @property
    def chunk_nbytes(self) -> int:
        """Bytes of one full chunk of uint8 RGB items (frames, or clips of `clip_len` frames)."""
        frames_per_item = self.clip.clip_len if self.clip else 1
        return self.chunk_frames * frames_per_item * self.height * self.width * self.channels

    @property
    def channels(self) -> int:
        """Channels of one item's frame: RGB, plus the 2 of the flow when asked for."""
        return 3 + (FLOW_CHANNELS if self.flow else 0)


@dataclass
class VideoInfo:
    """What the container says, plus what decoding found."""

    fps: float = math.nan
    frame_count: int = 0
    width: int = 0
    height: int = 0
    frames_decoded: int = 0
    frames_sampled: int = 0
    duration_s: float = math.nan
    codec: str = ""
    flow_s: float = 0.0
    """Seconds spent computing optical flow (with `flow`), for run.json."""
    note: str = ""
    """What the user should know about a video that was labeled anyway (the summary's `decode_note`)."""
    preroll: int = 0
    """A part of a split video (`stages.seek`): how many of the items it sends come before its own (a pre-roll
    for the rolling average)."""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class SampledFrame(NamedTuple):
    """One sampled frame: its index and time in the video, the model-size RGB item, whether a shot starts
    here, and (only when asked) the decoded frame as it was (BGR)."""

    index: int
    timestamp_s: float
    item: np.ndarray
    shot_cut: bool
    original: np.ndarray | None


class VideoDecoder:
    """Iterate over chunks of sampled frames: dicts of `frames`, `frame_index`, `timestamp_s`."""

    def __init__(self, path: str, spec: DecodeSpec, uri: str | None = None) -> None:
        self.path = path
        self.uri = uri or path
        self.spec = spec
        self.info = VideoInfo()
        self._capture: cv2.VideoCapture | None = None
        self._verifier: cv2.VideoCapture | None = None

    def open(self) -> VideoInfo:
        check_file(self.path, self.uri)
        not_video = sniff_non_video(self.path)
        if not_video:
            raise VideoError(not_video)
        capture = open_capture(self.path, self.spec.threads)
        if not capture.isOpened():
            capture.release()
            raise VideoError(describe_unopenable(self.path))
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        fourcc = int(capture.get(cv2.CAP_PROP_FOURCC) or 0)
        self.info = VideoInfo(
            fps=fps if math.isfinite(fps) and 0 < fps <= 1000 else math.nan,
            frame_count=int(count) if math.isfinite(count) and 0 < count < 1e9 else 0,
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
            codec="".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ") if fourcc > 0 else "",
        )
        self._capture = capture
        return self.info

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> "VideoDecoder":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def frames(self, keep_original: bool = False) -> Iterator[SampledFrame]:
        """The sampled frames one at a time, resized to the model's input; with `keep_original`, also the
        decoded frame at its own size (BGR), for tools that draw on it. Checks completeness at the end."""
        sampled = self._sampled()
        if not self.spec.shot_threshold:
            for index, timestamp, item, bgr in sampled:
                yield SampledFrame(index, timestamp, item, False, bgr if keep_original else None)
            return
        stream = ((bgr, (index, timestamp, item, bgr)) for index, timestamp, item, bgr in sampled)
        detector = ShotDetector(self.spec.shot_threshold, verify=self._cut_between)
        try:
            for (index, timestamp, item, bgr), cut in detector.mark(stream):
                yield SampledFrame(index, timestamp, item, cut, bgr if keep_original else None)
        finally:
            if self._verifier is not None:
                self._verifier.release()
                self._verifier = None

    def _cut_between(self, before: tuple, after: tuple) -> bool:
        """Whether a hard cut lies between two sampled frames (index first in each payload), judged on every frame
        between them. A second reader of the same file moves forward only (candidates come in order; no seek,
        which is slow or inexact in many containers), so verifying costs at most one more pass of `grab`s, and
        only up to the last candidate. Consecutive frames, or frames the reader has passed, keep the sampled
        frames' answer."""
        first, last = before[0], after[0]
        if last - first <= 1 or last - first > MAX_VERIFY_FRAMES:
            return True
        if self._verifier is None:
            self._verifier = open_capture(self.path, self.spec.threads)
            self._verifier_at, self._verifier_last = 0, None  # next frame it reads; the last (index, frame) read
        capture, frames = self._verifier, []
        if self._verifier_last is not None and self._verifier_last[0] == first:
            frames.append((self._verifier_last[1], first))
            first += 1
        elif first < self._verifier_at:
            return True
        while self._verifier_at < first:
            if not capture.grab():
                return True
            self._verifier_at += 1
        for index in range(first, last + 1):
            ok, frame = capture.read()
            if not ok or frame is None:
                return True
            self._verifier_at += 1
            frames.append((_bgr(frame), index))
        self._verifier_last = (last, frames[-1][0])
        return any(cut for _index, cut in ShotDetector(self.spec.shot_threshold).mark(frames))

    def _sampled(self) -> Iterator[tuple[int, float, np.ndarray, np.ndarray]]:
        """(index, timestamp, model-size RGB item, decoded BGR frame) per sampled frame; with `flow`, the item
        has the flow to the frame's successor in the video as 2 more channels (so a sampled frame waits for the
        next decoded one, which is retrieved even when it is not sampled itself)."""
        if self._capture is None:
            self.open()
        capture = self._capture
        sampler = self.spec.sampling.sampler()
        step = 1.0 / (self.info.fps if math.isfinite(self.info.fps) else _FALLBACK_FPS)
        index = -1
        timestamp = -math.inf
        flow = OpticalFlow() if self.spec.flow else None
        waiting = None  # with flow: the sampled frame whose successor comes next
        while True:
            if not capture.grab():
                break
            index += 1
            timestamp = self._timestamp(capture, index, timestamp, step)
            keep = sampler.keep(timestamp)
            if not keep and waiting is None:
                continue
            ok, frame = capture.retrieve()
            if not ok or frame is None:
                break
            bgr = _bgr(frame)
            item = self._prepare(bgr)
            if waiting is not None:
                yield self._with_flow(flow, waiting, item)
                waiting = None
            if not keep:
                continue
            self.info.frames_sampled += 1
            if flow is not None:
                waiting = (index, timestamp, item, bgr)
                continue
            yield index, timestamp, item, bgr
        if waiting is not None:  # the last frame has no successor: no motion
            yield self._with_flow(flow, waiting, None)
        self.info.frames_decoded = index + 1
        self._finish(timestamp, step)

    def _with_flow(self, flow: "OpticalFlow", waiting: tuple, successor: np.ndarray | None) -> tuple:
        index, timestamp, item, bgr = waiting
        started = time.perf_counter()
        packed = flow.packed(item, successor)
        self.info.flow_s += time.perf_counter() - started
        return index, timestamp, np.concatenate([item, packed], axis=-1), bgr

    def chunks(self) -> Iterator[dict[str, np.ndarray]]:
        """Chunks of at most `chunk_frames` items (frames, or clips of consecutive sampled frames)."""
        spec = self.spec
        clips = ClipAssembler(spec.clip) if spec.clip else None
        frames: list[np.ndarray] = []
        indices: list[int] = []
        stamps: list[float] = []
        cuts: list[bool] = []
        thumbs: list[bytes] | None = [] if spec.thumbnails else None
        last_thumb = -math.inf
        pending_cut = False
        for sampled in self.frames(keep_original=spec.thumbnails):
            item = sampled.item
            if thumbs is not None:  # decided per sampled frame, kept with the item that ends here
                keep = sampled.timestamp_s - last_thumb >= thumbnails.EVERY_S
                last_thumb = sampled.timestamp_s if keep else last_thumb
                thumb = thumbnails.encode(sampled.original) if keep else b""
            pending_cut = sampled.shot_cut or pending_cut
            if clips is not None:
                item = clips.push(item)
                if item is None:
                    continue
            frames.append(item)
            indices.append(sampled.index)
            stamps.append(sampled.timestamp_s)
            cuts.append(pending_cut)  # a clip is marked if a cut fell inside it
            if thumbs is not None:
                thumbs.append(thumb)
            pending_cut = False
            if len(frames) >= spec.chunk_frames:
                yield _chunk(frames, indices, stamps, cuts, thumbs)
                frames, indices, stamps, cuts = [], [], [], []
                thumbs = [] if thumbs is not None else None
        if frames:
            yield _chunk(frames, indices, stamps, cuts, thumbs)

    def _timestamp(self, capture: cv2.VideoCapture, index: int, previous: float, step: float) -> float:
        # The container's timestamp when it moves forward (variable frame rate),
        # else the nominal one: some containers (AVI) report stale or zero values.
        msec = capture.get(cv2.CAP_PROP_POS_MSEC)
        if math.isfinite(msec) and msec >= 0:
            stamp = msec / 1000.0
            if index == 0 or stamp > previous:
                return stamp
        return previous + step if index > 0 else 0.0

    def _prepare(self, frame: np.ndarray) -> np.ndarray:
        spec = self.spec
        return cv2.cvtColor(fit(_bgr(frame), spec.height, spec.width, spec.resize), cv2.COLOR_BGR2RGB)

    def _finish(self, last_timestamp: float, step: float) -> None:
        info = self.info
        if info.frames_decoded == 0:
            raise VideoError("no frames: OpenCV/FFmpeg opened the file but decoded no frames (corrupt or truncated?)")
        listed = info.frame_count
        missing = listed - info.frames_decoded if listed else 0
        if missing > 0:
            fps = info.fps if math.isfinite(info.fps) else _FALLBACK_FPS
            if missing > max(TOLERATED_MISSING_FRAMES, TOLERATED_MISSING_S * fps):
                raise VideoError(
                    f"truncated: decoded {info.frames_decoded} of the {listed} frames the container lists "
                    f"({missing / fps:.1f} s missing), then the stream ended")
            info.note = (f"container lists {listed} frames, {info.frames_decoded} decoded: its index is off by "
                         f"{missing} ({missing / fps:.2f} s); labeled from the decoded frames")
        if self.spec.clip is not None and info.frames_sampled < self.spec.clip.clip_len:
            raise VideoError(
                f"too short for the clip model: {info.frames_sampled} sampled frames, "
                f"clips need {self.spec.clip.clip_len} (lower --fps or use a shorter clip model)"
            )
        if math.isfinite(info.fps):
            info.duration_s = max(info.frames_decoded / info.fps, last_timestamp + 1.0 / info.fps)
        else:
            info.duration_s = last_timestamp + step


def open_capture(path: str, threads: int = 0) -> cv2.VideoCapture:
    """OpenCV's reader of `path`, with `threads` FFmpeg threads (0: FFmpeg's default). A file FFmpeg cannot open
    still gets OpenCV's other readers, as it did before threads were set (they take no thread count)."""
    if threads > 0:
        capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, int(threads)])
        if capture.isOpened():
            return capture
        capture.release()
    return cv2.VideoCapture(path)


def fit(image: np.ndarray, height: int, width: int, resize: str = "stretch") -> np.ndarray:
    """`image` at (height, width): stretched, or with `center_crop` cropped to that aspect ratio first.
    Shrinking uses area averaging (no aliasing), enlarging bilinear. Training and labeling share it."""
    if resize == "center_crop":
        h, w = image.shape[:2]
        if w * height > h * width:  # too wide: keep the middle columns
            keep = max(1, round(h * width / height))
            image = image[:, (w - keep) // 2 : (w - keep) // 2 + keep]
        elif w * height < h * width:  # too tall: keep the middle rows
            keep = max(1, round(w * height / width))
            image = image[(h - keep) // 2 : (h - keep) // 2 + keep]
    if image.shape[1] != width or image.shape[0] != height:
        shrinking = image.shape[1] > width or image.shape[0] > height
        if shrinking and not image.flags.c_contiguous:  # OpenCV's area averaging runs ~30% faster on a
            image = np.ascontiguousarray(image)  # contiguous crop (same pixels, same result)
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return image


def _bgr(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


def _chunk(frames: list[np.ndarray], indices: list[int], stamps: list[float], cuts: list[bool],
           thumbs: list[bytes] | None = None) -> dict[str, np.ndarray]:
    chunk = {
        "frames": np.stack(frames),
        "frame_index": np.asarray(indices, dtype=np.int64),
        "timestamp_s": np.asarray(stamps, dtype=np.float64),
        "shot_cut": np.asarray(cuts, dtype=bool),
    }
    if thumbs is not None:
        chunk["thumb"] = np.array(thumbs + [None], dtype=object)[:-1]  # a 1-D array of bytes objects
    return chunk
