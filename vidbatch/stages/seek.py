"""One long video decoded by several decoders at once: each seeks to its part of the video and decodes only that.

A film decoded by one decoder keeps the job waiting for its slowest video. Here a long video is cut into `parts`
spans of about equal decode work (frames), and part `k` is decoded by its own decoder with PyAV:

- **Where the frames are** comes from a demux-only pass (`SeekIndex.read`: packets' timestamps and key flags, no
  decoding; 0.1-0.3 s for 30,000 frames). Frame `i` of the video is the `i`-th presentation timestamp, and its time is
  computed as OpenCV computes it, so indices and timestamps equal a one-pass OpenCV decode.
- **Which frames are sampled** follows from those timestamps alone (`FrameSampling` needs no pixels), so every part
  knows the whole video's sampled frames and which are its own.
- **Exact seeking**: a part seeks to the key frame at or before its first needed frame, decodes forward by timestamp
  and drops what lies before. PyAV's frames are the pixels OpenCV's FFmpeg decodes (checked on every shared codec).
- **Shot cuts across an edge**: the detector remembers the last `HISTORY` distances and needs one frame of
  look-ahead, so a part replays `PREROLL_SAMPLES` sampled frames before its own and reads one after them (both
  dropped); cuts between far-apart samples are verified by a reader that seeks too.

A container that cannot say where its frames are (no presentation timestamps, as in AVI with B-frames; duplicate
timestamps; a frame count that disagrees with its packets) is `NotSeekable`: part 0 then decodes the whole video in
one pass, the other parts decode nothing, and the video's `decode_note` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator

import av  # the optional extra (vidbatch[av]): engines split only when it is installed
import numpy as np

from vidbatch.core.errors import VideoError
from vidbatch.stages.decode import MAX_VERIFY_FRAMES, SampledFrame, VideoDecoder, _bgr
from vidbatch.stages.shots import ShotDetector
from vidbatch.stages.split import ONE_PASS_NOTE

PREROLL_SAMPLES = 8 * ShotDetector.HISTORY
"""Sampled frames a part replays before its own, so that the shot detector's state (its reference frame and its
last `HISTORY` distances) at the part's first frame is the state a one-pass decode had there."""


class NotSeekable(Exception):
    """The container cannot say exactly where each frame is; the message says why, for the video's note."""


@dataclass(frozen=True)
class SeekIndex:
    """Where a video's frames are, in presentation order: timestamps and key frames, from its packets."""

    pts: np.ndarray
    """Presentation timestamps (stream time base), sorted: frame `i` of the video is `pts[i]`."""
    keyframe: np.ndarray
    """Frame `i` is a key frame: decoding can start there."""
    timestamp_s: np.ndarray
    """Each frame's time, computed as OpenCV's `CAP_PROP_POS_MSEC` is, then as `VideoDecoder` reads it."""

    def __len__(self) -> int:
        return len(self.pts)

    @classmethod
    def read(cls, path: str) -> "SeekIndex":
        """Demux `path` (no decoding). Raises `NotSeekable` when the packets cannot place every frame."""
        with av.open(path) as container:
            if not container.streams.video:
                raise NotSeekable("no video stream")
            stream = container.streams.video[0]
            reorders = bool(stream.codec_context.has_b_frames)
            pts, keys = [], []
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                if packet.pts is None:
                    raise NotSeekable("its packets carry no presentation timestamps (an AVI with B-frames?)")
                pts.append(packet.pts)
                keys.append(packet.is_keyframe)
            listed, start, time_base = stream.frames, stream.start_time, stream.time_base
        if not pts:
            raise NotSeekable("no packets")
        if not keys[0]:
            raise NotSeekable("its stream does not start with a key frame")
        pts_array = np.asarray(pts, dtype=np.int64)
        if reorders and len(pts_array) > 2 and np.all(np.diff(pts_array) > 0):
            # B-frames are decoded before the frames they show after: presentation times in decoding order are
            # not presentation times (H.264 in AVI numbers its packets as they come)
            raise NotSeekable("its stream has B-frames but its timestamps follow decoding order (an AVI?)")
        order = np.argsort(pts_array, kind="stable")
        pts_sorted = pts_array[order]
        if np.any(np.diff(pts_sorted) == 0):
            raise NotSeekable("two frames share a presentation timestamp")
        if listed and listed != len(pts_sorted):
            raise NotSeekable(f"the container lists {listed} frames and holds {len(pts_sorted)} packets")
        if start is None or time_base is None:
            raise NotSeekable("the stream has no start time")
        timestamps = _opencv_seconds(pts_sorted, start, time_base)
        if timestamps[0] < 0:
            raise NotSeekable("its first frame comes before the stream's start")
        return cls(pts_sorted, np.asarray(keys, dtype=bool)[order], timestamps)

    def sampled(self, sampling) -> np.ndarray:
        """Indices of the frames a `FrameSampling` keeps (it looks at timestamps only)."""
        sampler = sampling.sampler()
        return np.flatnonzero([sampler.keep(float(t)) for t in self.timestamp_s])

    def key_at_or_before(self, index: int) -> int:
        """The last key frame at or before frame `index` (frame 0 is one)."""
        keys = np.flatnonzero(self.keyframe[: index + 1])
        return int(keys[-1]) if len(keys) else 0


def _opencv_seconds(pts: np.ndarray, start: int, time_base: Fraction) -> np.ndarray:
    """Seconds per frame, rounded as OpenCV then `VideoDecoder` round them: (pts - start) * time base in seconds,
    times 1000 (OpenCV's milliseconds), divided by 1000 (vidbatch's seconds), in doubles."""
    seconds = (pts - start).astype(np.float64) * (time_base.numerator / time_base.denominator)
    return (seconds * 1000.0) / 1000.0


def part_bounds(frames: int, parts: int) -> np.ndarray:
    """Frame indices where parts start (and the end): `parts` spans of about equal decode work."""
    return np.round(np.linspace(0, frames, parts + 1)).astype(np.int64)


class SeekingDecoder(VideoDecoder):
    """`VideoDecoder` for part `part` of `parts` of one video: the same sampled frames, shot cuts and chunks as a
    one-pass decode, for this part's frames only. Frame models without flow or thumbnails only (the engine checks
    `split.unsplittable`)."""

    def __init__(self, path: str, spec, uri: str | None = None, part: int = 0, parts: int = 1,
                 preroll: int = 0) -> None:
        super().__init__(path, spec, uri)
        if not 0 <= part < parts:
            raise ValueError(f"SeekingDecoder: part must be in [0, parts). Received: part={part}, parts={parts}")
        if preroll < 0:
            raise ValueError(f"SeekingDecoder: preroll must be >= 0. Received: preroll={preroll}")
        self.part, self.parts, self.preroll = part, parts, preroll
        self._index: SeekIndex | None = None
        self._one_pass_reason: str | None = None

    def open(self):
        info = super().open()  # OpenCV says what it says for a one-pass decode: fps, frame count, size, codec
        try:
            self._index = SeekIndex.read(self.path)
        except NotSeekable as exc:
            self._one_pass_reason = str(exc)
        except av.error.FFmpegError as exc:
            self._one_pass_reason = f"PyAV could not read its packets ({exc.strerror or exc})"
        if self._index is not None:
            self._plan()
        return info

    def _plan(self) -> None:
        """Which sampled frames this part reads (positions in the video's sampled frames): its own, the `preroll`
        ones before them that it sends too (`info.preroll`), and for the shot detector, the replayed ones before
        those and the look-ahead one after (both read, not sent)."""
        sampled = self._index.sampled(self.spec.sampling)
        bounds = part_bounds(len(self._index), self.parts)
        own_first, own_end = (int(i) for i in np.searchsorted(sampled, bounds[self.part : self.part + 2]))
        sent_first = max(0, own_first - self.preroll) if own_first < own_end else own_first
        detecting = bool(self.spec.shot_threshold)
        first = max(0, sent_first - PREROLL_SAMPLES) if detecting else sent_first
        last = min(len(sampled) - 1, own_end) if detecting else own_end - 1  # one after, for the look-ahead
        self._sampled_all = sampled
        self._sent = (sent_first, own_end)
        self._wanted = sampled[first : last + 1] if own_first < own_end else sampled[:0]  # nothing of its own
        self._position = {int(i): p for p, i in enumerate(sampled[first : last + 1], start=first)}
        self.info.preroll = own_first - sent_first

    def frames(self, keep_original: bool = False) -> Iterator[SampledFrame]:
        if self._capture is None:
            self.open()
        if self._index is None:  # not seekable: part 0 is the whole video, the others nothing
            if self.part == 0:
                yield from super().frames(keep_original)
                note = f"{ONE_PASS_NOTE} {self.parts} parts: {self._one_pass_reason}"
                self.info.note = f"{self.info.note}; {note}" if self.info.note else note
            else:
                self.info.frames_decoded = 0
            return
        sent_first, own_end = self._sent
        for frame in super().frames(keep_original):
            if sent_first <= self._position[frame.index] < own_end:
                yield frame
        index = self._index
        self.info.frames_decoded = len(index)
        self.info.frames_sampled = len(self._sampled_all)
        fps = self.info.fps if math.isfinite(self.info.fps) else 25.0
        self._finish(float(index.timestamp_s[-1]), 1.0 / fps)

    def _sampled(self) -> Iterator[tuple[int, float, np.ndarray, np.ndarray]]:
        """This part's sampled frames (with the replayed ones before and the look-ahead one after)."""
        if self._index is None:  # one pass (the reason is in the note)
            yield from super()._sampled()
            return
        wanted = self._wanted
        if not len(wanted):
            return
        keep = set(int(i) for i in wanted)
        with _Reader(self.path, self._index, self.spec.threads) as reader:
            for index, bgr in reader.read(int(wanted[0]), int(wanted[-1]), keep):
                yield index, float(self._index.timestamp_s[index]), self._prepare(bgr), bgr

    def _cut_between(self, before: tuple, after: tuple) -> bool:
        """`VideoDecoder._cut_between`'s answer, from a reader that seeks (this part never read the frames before)."""
        if self._index is None:
            return super()._cut_between(before, after)
        first, last = before[0], after[0]
        if last - first <= 1 or last - first > MAX_VERIFY_FRAMES:
            return True
        if self._verifier is None:  # a second reader, kept: the next candidate is often just ahead of it
            self._verifier = _Reader(self.path, self._index, self.spec.threads)
        try:
            frames = ((bgr, index) for index, bgr in self._verifier.read(first, last))
            return any(cut for _index, cut in ShotDetector(self.spec.shot_threshold).mark(frames))
        except VideoError:
            return True  # as a one-pass reader that cannot read a frame in between


class _Reader:
    """Frames by index from one PyAV container: forward from where it is when that is nearer than the key frame
    before the frames asked for, else after a seek to that key frame."""

    def __init__(self, path: str, index: SeekIndex, threads: int = 0) -> None:
        self.index = index
        self.container = av.open(path)
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"  # frame threads, as OpenCV's FFmpeg reader uses
        if threads > 0:
            self.stream.thread_count = threads
        self._frames: Iterator | None = None
        self._next = 0
        """The index of the next frame `_frames` gives."""
        self._held = None  # a frame read past the last request (the next one asked for may start there)

    def __enter__(self) -> "_Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    release = close  # `VideoDecoder` releases its verifier so

    def read(self, first: int, last: int, keep: set[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(frame index, BGR frame) for frames `first..last` (only those in `keep`, when given). Raises `VideoError`
        if a frame in that span never comes out."""
        key = self.index.key_at_or_before(first)
        if self._frames is None or first < self._next or first - self._next > first - key:
            self._seek(key, first)
        expected = first
        for at, frame in self._stream():
            if at < first:
                continue
            if at != expected:
                raise VideoError(f"seeking decode: frame {expected} did not decode (label this video with "
                                 "--decode-workers 1)")
            expected = at + 1
            if keep is None or at in keep:
                yield at, _bgr(frame.to_ndarray(format="bgr24"))
            if at >= last:
                self._held, self._next = (at, frame), at  # the next request may start here (a verifier's often does)
                return
        raise VideoError(f"seeking decode: the stream ended before frame {last}")

    def _seek(self, key: int, first: int) -> None:
        """Position at the key frame `key` (at or before `first`); a demuxer that lands after it (some seek by
        decoding time) is sent back a key frame at a time."""
        index = self.index
        while True:
            self.container.seek(int(index.pts[key]), stream=self.stream, backward=True, any_frame=False)
            self._frames = self.container.decode(self.stream)
            self._held = None
            head = next(self._frames, None)
            if head is None or head.pts is None:
                raise VideoError(f"seeking decode: nothing decoded after seeking to frame {key}")
            at = self._at(head)
            if at <= first or key == 0:
                self._held, self._next = (at, head), at
                return
            key = index.key_at_or_before(key - 1)

    def _stream(self) -> Iterator[tuple[int, Any]]:
        while True:
            if self._held is not None:
                (at, frame), self._held = self._held, None
            else:
                frame = next(self._frames, None)
                if frame is None:
                    return
                at = self._at(frame)
            self._next = at + 1
            yield at, frame

    def _at(self, frame) -> int:
        index = self.index
        at = int(np.searchsorted(index.pts, frame.pts)) if frame.pts is not None else -1
        if at < 0 or at >= len(index) or index.pts[at] != frame.pts:
            raise VideoError(f"seeking decode: a frame at pts {frame.pts} is not in the container's index")
        return at

