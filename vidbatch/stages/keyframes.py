"""Decode only the key frames, with PyAV (FFmpeg's decoder told to skip every non-key frame).

OpenCV cannot skip decoding: `grab()` decodes every frame even when `retrieve()`
is never called. FFmpeg can drop non-key frames before decoding them
(`skip_frame = "NONKEY"`), which PyAV exposes; that is what `--sampling keyframes`
buys. PyAV is an optional extra (`pip install 'vidbatch[keyframes]'`). Frames are
then prepared exactly as the OpenCV decoder prepares them (same resize, same
shot detection), and chunked the same way.
"""

from __future__ import annotations

import math
from typing import Iterator

import av  # the optional extra: this module is imported only for --sampling keyframes, after the pipeline checked it
import numpy as np

from vidbatch.core.errors import VideoError
from vidbatch.stages.decode import VideoDecoder, VideoInfo, _bgr
from vidbatch.stages.probe import check_file, sniff_non_video


class KeyframeDecoder(VideoDecoder):
    """`VideoDecoder`'s interface over PyAV, yielding the key frames only."""

    def open(self) -> VideoInfo:
        check_file(self.path, self.uri)
        not_video = sniff_non_video(self.path)
        if not_video:
            raise VideoError(not_video)
        try:
            container = av.open(self.path)
        except av.error.FFmpegError as exc:
            raise VideoError(f"not a video: could not open with PyAV/FFmpeg ({exc.strerror or exc})") from None
        if not container.streams.video:
            container.close()
            raise VideoError("not a video: the file has no video stream")
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONKEY"
        rate = float(stream.average_rate) if stream.average_rate else math.nan
        duration = float(stream.duration * stream.time_base) if stream.duration else (
            container.duration / 1e6 if container.duration else math.nan)
        self.info = VideoInfo(fps=rate if math.isfinite(rate) and 0 < rate <= 1000 else math.nan,
                              frame_count=int(stream.frames or 0), width=stream.codec_context.width,
                              height=stream.codec_context.height, duration_s=duration,
                              codec=stream.codec_context.name or "")
        self._container, self._stream = container, stream
        self._capture = container  # VideoDecoder's "is it open" marker
        return self.info

    def close(self) -> None:
        if self._capture is not None:
            self._container.close()
            self._capture = None

    def _sampled(self) -> Iterator[tuple[int, float, np.ndarray, np.ndarray]]:
        """(index, timestamp, model-size RGB item, decoded BGR frame) per key frame; `frames` and `chunks` come from
        `VideoDecoder` on top of this."""
        if self._capture is None:
            self.open()
        stream = self._stream
        start = stream.start_time or 0
        fps = self.info.fps if math.isfinite(self.info.fps) else 25.0
        last_index, timestamp = -1, 0.0
        try:
            for frame in self._container.decode(stream):
                timestamp = float((frame.pts - start) * stream.time_base) if frame.pts is not None else timestamp
                index = max(last_index + 1, int(round(timestamp * fps)))
                bgr = _bgr(frame.to_ndarray(format="bgr24"))
                self.info.frames_sampled += 1
                last_index = index
                yield index, timestamp, self._prepare(bgr), bgr
        except av.error.FFmpegError as exc:
            raise VideoError(f"corrupt: PyAV/FFmpeg stopped after {self.info.frames_sampled} key frames "
                             f"({exc.strerror or exc})") from None
        self.info.frames_decoded = self.info.frames_sampled  # nothing else was decoded
        if self.info.frames_decoded == 0:
            raise VideoError("no frames: PyAV/FFmpeg opened the file but found no key frame")
        if not math.isfinite(self.info.duration_s):
            self.info.duration_s = timestamp + 1.0 / fps
