"""Streaming, stateful video models (MoViNet-Stream): one frame in, the state carried to the next frame.

A streaming `.tflite` model's signature takes an image (float32 [1, 1, H, W, 3] in [0, 1], one frame) and
state tensors, and returns logits and the next states (each state output has its input's name). Each video
keeps its own state from sampled frame to sampled frame; `StreamingModel.run` takes a batch of frames of many
videos (each video's frames in order, tagged with the video's key) and runs the videos on parallel lanes, one
interpreter each (LiteRT releases the GIL while it computes), so every core works while each video stays in
order.

When state starts over (`ResetRule`): at a video's first frame, at each shot cut (a label must not bleed across
a cut), and every `period` sampled frames inside a shot (the model's head is a running mean since the last
reset: without a period, an action that changes inside a long shot would be drowned by what came before). A
rule that depends only on the video is what lets a long video's time ranges label exactly as the unsplit video:
a range starts its pre-roll at the last reset before it (`stages.ranges`).
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np

from vidbatch.core.errors import ModelBundleError

HEAD_INPUTS = ("pooled", "logits", "both")
HEAD_POOL = ("state_head_pool_buffer", "state_head_pool_frame_count")
"""MoViNet's head: the sum of its 480-d frame features since the last reset, and their count; their ratio is the
pooled feature vector the logits are computed from (`--embeddings`, and the features trained heads read)."""


@dataclass(frozen=True)
class ResetRule:
    """When a video's state starts over: its first frame, each shot cut, and every `period` frames (0: never)."""

    period: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.period, int) or isinstance(self.period, bool) or self.period < 0:
            raise ValueError(f"ResetRule: period must be an int >= 0. Received: period={self.period!r}")

    def flags(self, cuts: np.ndarray, since: int | None) -> tuple[np.ndarray, int]:
        """Which items start over, for a video's next items (`cuts`: their shot_cut flags) given `since` (items
        since the last reset before them; None at the video's start). Returns the flags and the new `since`."""
        out = np.zeros(len(cuts), bool)
        for i, cut in enumerate(np.asarray(cuts, bool)):
            if since is None or cut or (self.period and since >= self.period):
                out[i], since = True, 0
            since += 1
        return out, since

    def context(self, cuts: np.ndarray) -> np.ndarray:
        """How many items each item's state has seen (itself included, since its last reset), for items that
        start at a reset point (a video, or a unit of one: `stages.ranges` starts each at a reset point).

        The model's head is a running mean since the reset, so an item's scores rest on this many frames; a
        video's and a shot's label weight each item's probabilities by it (`stages.smooth.video_top_k`): an
        item one frame after a reset has seen one frame, the item before the next reset the whole span.
        Measured on the shared UCF101 clips (benchmarks/streaming.py): zero-shot 96.6% -> 97.0% of videos.
        """
        return _context(self.flags(cuts, None)[0])

    def window_ends(self, cuts: np.ndarray, closes: bool = True) -> np.ndarray:
        """Which items are the last of their reset window (for items that start at a reset point, as `context`):
        each item before a reset, and the last item when `closes` (the unit ends its video, or the item after it
        starts over: `stages.ranges.RangeUnit.closes`)."""
        return _window_ends(self.flags(cuts, None)[0], closes)

    def weights(self, cuts: np.ndarray, mode: str | None = None, closes: bool = True) -> np.ndarray:
        """Each item's weight in its video's and shots' labels (`core.config.STATE_WEIGHTS`; None: `context`).

        `window_end`: only the last item of each window counts, by the frames it spans. Its state holds the whole
        window, so the items before it add nothing the model has not seen, only views on less of it; a head
        trained on window ends reads items like it. Measured with MoViNet-A0 on the shared UCF101 group folds
        (benchmarks/streaming.py, offline): a head trained and weighed so, 99.1% of held-out clips (97.9% one group
        out) against 97.3% (95.9%) for one trained on every frame with a second of context and weighed by
        `context`; zero-shot labels are better with `context` (97.0% against 96.4%)."""
        if mode not in (None, "context", "window_end"):
            raise ValueError(f"ResetRule.weights: mode must be 'context' or 'window_end'. Received: mode={mode!r}")
        resets, _ = self.flags(cuts, None)  # once: a loop over the items
        context = _context(resets)
        return np.where(_window_ends(resets, closes), context, 0.0) if mode == "window_end" else context


def _context(resets: np.ndarray) -> np.ndarray:
    """Items since the last reset, each item included (`ResetRule.context`), from the reset flags."""
    index = np.arange(len(resets))
    start = np.maximum.accumulate(np.where(resets, index, 0)) if len(resets) else index
    return (index - start + 1).astype(np.float64)


def _window_ends(resets: np.ndarray, closes: bool) -> np.ndarray:
    """The item before each reset, and the last one if `closes` (`ResetRule.window_ends`), from the reset flags."""
    ends = np.zeros(len(resets), bool)
    ends[:-1] = resets[1:]
    if len(ends):
        ends[-1] = bool(closes)
    return ends


def is_streaming(data: bytes) -> bool:
    """Whether a .tflite file's signature carries state beside its image (more than one input)."""
    from vidbatch.core.quiet import quiet_native_stderr
    from vidbatch.model.litert import _interpreter_class

    cls, _ = _interpreter_class()
    try:
        with quiet_native_stderr():
            interpreter = cls(model_content=data, num_threads=1)
    except (ValueError, RuntimeError):
        return False
    return len(interpreter.get_input_details()) > 1


def is_streaming_file(path: str) -> bool:
    """Whether a local .tflite file is a streaming video model (False for anything else, readable or not)."""
    if not str(path).lower().endswith(".tflite"):
        return False
    try:
        with open(path, "rb") as handle:
            return is_streaming(handle.read())
    except OSError:
        return False


class _Lane:
    """One interpreter, run by one thread at a time: the tensors of a video's frames in, logits out."""

    def __init__(self, model: "StreamingModel") -> None:
        from vidbatch.core.quiet import quiet_native_stderr

        with quiet_native_stderr():
            self.interpreter = model._class(model_content=model.data, num_threads=1)
            self.interpreter.allocate_tensors()
        self.model = model
        it = self.interpreter
        # views into the interpreter's own buffers, made and dropped around each invoke (LiteRT refuses to run
        # while one is held): the next state is copied once, output to input, and the frame scaled in place
        self._carry = [(it.tensor(dst), it.tensor(src)) for src, dst in zip(model._state_out, model._state_in)]
        self._image = it.tensor(model._image)

    def run(self, frames: np.ndarray, resets: np.ndarray, state: list[np.ndarray] | None,
            logits: np.ndarray, features: np.ndarray | None) -> list[np.ndarray]:
        model, it = self.model, self.interpreter
        inputs, outputs = model._state_in, model._state_out
        if state is None:
            state = model._zeros
        for index, value in zip(inputs, state):
            it.set_tensor(index, value)
        scale = np.float32(1.0 / 255.0) if model.float_input else None
        for i in range(len(frames)):
            if resets[i] and i:
                for index, value in zip(inputs, model._zeros):
                    it.set_tensor(index, value)
            if scale is not None:
                np.multiply(frames[i], scale, out=self._image().reshape(frames[i].shape), casting="unsafe")
            else:
                np.copyto(self._image().reshape(frames[i].shape), frames[i])
            it.invoke()
            logits[i] = model._dequantize(it.get_tensor(model._logits).reshape(-1))
            if features is not None:
                total = it.get_tensor(model._pool_index[0]).reshape(-1)
                count = float(it.get_tensor(model._pool_index[1]).reshape(-1)[0])
                features[i] = total / max(count, 1.0)
            if i + 1 < len(frames) and not resets[i + 1]:
                for dst, src in self._carry:
                    np.copyto(dst(), src())
        return [it.get_tensor(index) for index in outputs]


class StreamingModel:
    """A streaming .tflite video classifier: `run(frames, keys, cuts)` -> logits (and pooled features) per frame.

    State is kept per key between calls (the local engine sends a video in several batches); `forget(keys)` drops
    it when a video is finished. Frames of one key must come in order, and one call at a time.
    """

    format = "tflite"
    stateful = True

    def __init__(self, data: bytes, source: str, head_input: str = "pooled", lanes: int | None = None,
                 reset: ResetRule | None = None) -> None:
        from vidbatch.model.litert import _cpus, _interpreter_class

        if head_input not in HEAD_INPUTS:
            raise ValueError(f"StreamingModel: head_input must be one of {HEAD_INPUTS}. Received: head_input={head_input!r}")
        self.data = data
        self.source = source
        self.head_input = head_input
        self._class, self.runtime = _interpreter_class()
        self.lanes = max(1, lanes or _cpus())
        self.reset = reset or ResetRule()
        self._read_signature()
        self._states: dict[Hashable, tuple[list[np.ndarray], int]] = {}
        self._free: list[_Lane] = []
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def _read_signature(self) -> None:
        from vidbatch.core.quiet import quiet_native_stderr

        source = self.source
        try:
            with quiet_native_stderr():
                interpreter = self._class(model_content=self.data, num_threads=1)
                interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelBundleError(f"Cannot load model {source!r}: not a TensorFlow Lite model ({str(exc)[:200]})") from None
        signatures = interpreter.get_signature_list()
        if len(signatures) != 1:
            raise ModelBundleError(f"Cannot load model {source!r}: a streaming model needs exactly one signature. "
                                   f"Received: signatures={sorted(signatures)}")
        name = next(iter(signatures))
        runner = interpreter.get_signature_runner(name)
        ins, outs = runner.get_input_details(), runner.get_output_details()
        states = sorted(n for n in ins if n in outs)
        images = [n for n in ins if n not in outs]
        results = [n for n in outs if n not in ins]
        plain = {d["index"] for d in interpreter.get_input_details()} | {d["index"] for d in interpreter.get_output_details()}
        indices = {d["index"] for d in ins.values()} | {d["index"] for d in outs.values()}
        shape = tuple(int(v) for v in ins[images[0]]["shape"]) if len(images) == 1 else ()
        if (len(images) != 1 or len(results) != 1 or not states or indices != plain
                or len(shape) not in (4, 5) or shape[0] != 1 or shape[-1] != 3 or (len(shape) == 5 and shape[1] != 1)):
            raise ModelBundleError(
                f"Cannot load model {source!r}: unexpected signature for a streaming video model. Expected one image "
                "input ([1, 1, H, W, 3] or [1, H, W, 3]), one scores output and state tensors whose outputs have "
                f"their inputs' names. Received: inputs={sorted(ins)[:6]}{'...' if len(ins) > 6 else ''}, "
                f"outputs without a matching input={results}")
        image = ins[images[0]]
        self.signature = name
        self.image_name, self.logits_name = images[0], results[0]
        self.frame_axis = len(shape) == 5
        self.input_size = (shape[-3], shape[-2])
        self.float_input = np.dtype(image["dtype"]) == np.float32
        if not self.float_input and np.dtype(image["dtype"]) != np.uint8:
            raise ModelBundleError(f"Cannot load model {source!r}: expected a float32 or uint8 image input. "
                                   f"Received: dtype={np.dtype(image['dtype']).name}")
        self.classes = int(np.prod(outs[results[0]]["shape"][1:]))
        self.state_names = states
        self._image = image["index"]
        self._logits = outs[results[0]]["index"]
        self._quantization = outs[results[0]].get("quantization", (0.0, 0))
        self._state_in = [ins[n]["index"] for n in states]
        self._state_out = [outs[n]["index"] for n in states]
        self._zeros = [np.zeros(ins[n]["shape"], ins[n]["dtype"]) for n in states]
        pooled = all(n in outs for n in HEAD_POOL)
        self._pool_index = [outs[n]["index"] for n in HEAD_POOL] if pooled else []
        self.pooled_features = int(np.prod(outs[HEAD_POOL[0]]["shape"])) if pooled else None
        if self.head_input in ("pooled", "both") and not pooled:
            raise ModelBundleError(
                f"Cannot use {source!r} as an encoder: its state has no head pool ({', '.join(HEAD_POOL)}), so there "
                "are no pooled features for a head to read; use it as a classifier (--model FILE --classes LABELS)")
        self.features = {"logits": self.classes, "pooled": self.pooled_features,
                         "both": (self.pooled_features or 0) + self.classes}[self.head_input]
        """What a head reads per frame: the logits (a pretrained classifier), the pooled features (an encoder), or
        both, the logits last (a head mixed with a label map's zero-shot prior, `model.prior`)."""

    @property
    def state_nbytes(self) -> int:
        """Bytes one video's state takes while it waits for its next frames."""
        return int(sum(z.nbytes for z in self._zeros))

    def _dequantize(self, raw: np.ndarray) -> np.ndarray:
        scale, zero = self._quantization
        if np.issubdtype(raw.dtype, np.integer) and scale:
            return (raw.astype(np.float32) - zero) * np.float32(scale)
        return raw.astype(np.float32)

    def describe(self) -> dict[str, Any]:
        """How the file is read, for run.json and `vidbatch inspect`."""
        return {"stateful": True, "signature": self.signature, "image_input": self.image_name,
                "image_shape": [1, *([1] if self.frame_axis else []), *self.input_size, 3],
                "value_range": "float32 [0, 1]" if self.float_input else "uint8 [0, 255]",
                "state_tensors": len(self.state_names), "state_bytes_per_video": self.state_nbytes,
                "scores": self.classes, "pooled_features": self.pooled_features, "head_input": self.head_input,
                "lanes": self.lanes, "reset_every_frames": self.reset.period or None}

    def run(self, frames: np.ndarray, keys: Sequence[Hashable], cuts: np.ndarray | None = None,
            want_features: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits [N, classes] (and pooled features [N, F] with `want_features`) for frames of many videos.

        `keys[i]` names the video of frame i; each video's frames are in order within the call and follow its
        frames of earlier calls. `cuts[i]`: a shot cut just before frame i (the state starts over there).
        """
        frames = np.asarray(frames)
        n = len(frames)
        expected = (*self.input_size, 3)
        if frames.ndim != 4 or tuple(frames.shape[1:]) != expected or len(keys) != n:
            raise ValueError(f"StreamingModel.run: expected frames of shape (N, *{expected}) and N keys. "
                             f"Received: shape={frames.shape}, keys={len(keys)}")
        if frames.dtype != np.uint8:
            frames = np.clip(frames, 0, 255).astype(np.uint8)
        cuts = np.zeros(n, bool) if cuts is None else np.asarray(cuts, bool)
        logits = np.empty((n, self.classes), np.float32)
        want_features = want_features and self.pooled_features is not None
        features = np.empty((n, self.pooled_features), np.float32) if want_features else None
        groups: dict[Hashable, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        work = []
        for key, rows in groups.items():
            index = np.asarray(rows)
            state, since = self._states.pop(key, (None, None))
            resets, since = self.reset.flags(cuts[index], since)
            work.append((key, index, resets, None if resets[0] else state, since))
        if len(work) == 1 or self.lanes == 1:
            results = [self._run_one(item, frames, logits, features) for item in work]
        else:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.lanes, thread_name_prefix="vidbatch-stream")
            work.sort(key=lambda item: -len(item[1]))  # longest first: the lanes finish together
            results = list(self._executor.map(lambda item: self._run_one(item, frames, logits, features), work))
        for (key, _, _, _, since), state in zip(work, results):
            self._states[key] = (state, since)
        return logits, features

    def _run_one(self, item, frames, logits, features) -> list[np.ndarray]:
        key, index, resets, state, since = item
        lane = self._take_lane()
        try:
            out_logits = np.empty((len(index), self.classes), np.float32)
            out_features = np.empty((len(index), self.pooled_features), np.float32) if features is not None else None
            state = lane.run(frames[index], resets, state, out_logits, out_features)
            logits[index] = out_logits
            if features is not None:
                features[index] = out_features
            return state
        finally:
            with self._lock:
                self._free.append(lane)

    def _take_lane(self) -> _Lane:
        with self._lock:
            if self._free:
                return self._free.pop()
        return _Lane(self)

    def forget(self, keys) -> None:
        """Drop the state of finished videos."""
        for key in keys:
            self._states.pop(key, None)

    @property
    def videos_held(self) -> int:
        return len(self._states)

    def head_inputs(self, frames: np.ndarray, keys: Sequence[Hashable], cuts: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """What the head reads per frame (`features` wide), and the frame's embedding (its pooled features, else
        its logits)."""
        logits, pooled = self.run(frames, keys, cuts, want_features=True)
        inputs = {"logits": logits, "pooled": pooled}.get(self.head_input)
        if inputs is None:  # both
            inputs = np.concatenate([pooled, logits], axis=1)
        return inputs, (pooled if pooled is not None else logits)

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """Frames of one video, in order, from a fresh state: what the head reads per frame (the `FrameEncoder`
        call shape)."""
        key = object()
        try:
            return self.head_inputs(frames, [key] * len(frames))[0]
        finally:
            self.forget([key])
