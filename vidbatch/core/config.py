"""Run configuration: one frozen, validated value that every engine reads."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Callable, Mapping

from vidbatch.core.errors import ConfigError

DEFAULT_FPS = 2.0
"""Frames sampled per second of video; 0 means every frame. Archive labeling usually samples 1-2 fps (cloud
video APIs label frames at about 1 fps): every sampled frame costs a model call, every skipped one only a
decode. Raise it for finer segment boundaries."""

DEFAULT_WINDOW = 8
"""Rolling-average window in sampled frames: 4 s at the default rate, like the tutorial's 128 frames at ~30 fps."""

DEFAULT_TOP_K = 3
DEFAULT_BATCH_SIZE = 32
DEFAULT_CHUNK_FRAMES = 32
DEFAULT_VIDEO_TIMEOUT_S = 300.0
DEFAULT_SHOT_THRESHOLD = 0.3
DEFAULT_COMMIT_VIDEOS = 256
"""Videos per commit: output objects grow with batches, not videos (2,000 videos -> 8 shards and 8 records)."""
DEFAULT_COMMIT_SECONDS = 30.0
"""A finished video waits at most this long for its batch: the work a crash can cost stays bounded in time."""

PREPROCESSING = ("none", "unit", "symmetric", "imagenet", "caffe")
"""How uint8 RGB pixels become model input:
none: as float 0..255 (the model rescales itself, e.g. EfficientNet, or was trained on raw pixels);
unit: x/255; symmetric: x/127.5 - 1 (MobileNet, Inception);
imagenet: (x/255 - mean)/std (torch style); caffe: BGR minus ImageNet means (ResNet50)."""
RESIZES = ("stretch", "center_crop")
"""How a frame becomes the model's input size: stretch it (the aspect ratio is lost), or crop its centre to the
input's aspect ratio first (what ImageNet encoders saw in training). A bundle says which its model was trained on."""
CHANNEL_ORDERS = ("rgb", "bgr")
"""The channel order a model was trained on: many tutorials train on `cv2.imread` images, which are BGR."""
CLIP_ARCHITECTURES = ("3d_cnn", "early_fusion", "late_fusion", "r2plus1d", "slowfast", "two_stream")
"""Training, clip models over clips of consecutive sampled frames (the seed articles' families):
3d_cnn: 3D convolutions throughout ("slow fusion");
early_fusion: the frames stacked along the channels, so the first 2D layer sees pixel motion;
late_fusion: one shared 2D CNN on the first and the last frame, fused only at the top;
r2plus1d: each 3D convolution split into a spatial (1x3x3) and a temporal (3x1x1) one;
slowfast: a slow, wide pathway on every 4th frame and a fast, thin one on every frame, joined by lateral
connections;
two_stream: an RGB stream on the middle frame and a stream on the clip's stacked optical flow, fused at the top
(the decode stage computes the flow for it)."""
FLOW_CHANNELS = 2
FLOW_STEPS_PER_PIXEL = 4.0
FLOW_ZERO = 128
"""Optical flow (two-stream bundles) travels as 2 uint8 channels beside the RGB ones: 1/4 pixel per step around
128, so +-32 pixels. The decode stage packs it and the model unpacks it: part of the bundle format."""
SEQUENCE_HEADS = ("gru", "lstm", "attention", "mean", "late_fusion")
"""Training, sequence models: what reads a window of encoded frames. A GRU or an LSTM (frame order matters),
attention pooling (a learned weight per frame, order ignored), the plain mean of the window's features, or late
fusion (the features of two frames half a window apart, and their difference, fused at the top)."""
DEFAULT_FEATURE_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "vidbatch", "features")
"""Training with an encoder: where features are cached between runs (another head or window starts in seconds)."""
ENGINES = ("local", "ray")
SAMPLINGS = ("rate", "keyframes")
LABEL_MAP_COMBINES = ("sum", "max")
LABEL_MAP_RESTS = ("other", "drop")
DEFAULT_STATE_RESET_S = 4.0
"""A streaming model's head is a running mean since its last reset: this bounds how long the past weighs on a
frame's label inside one shot (and how far back a long video's time range must start). Measured with MoViNet-A0
on the shared UCF101 clips (benchmarks/streaming.py): two actions joined inside one shot get 79% of their frames
right at 4 s, 66% at 8 s, 56% with no period; single-action clips lose at most a point of frame accuracy. A head
trained on a streaming encoder keeps its own (`apps.train.encoded.TRAINED_STATE_RESET_S`)."""
STATE_WEIGHTS = ("context", "window_end")
"""How a streaming model's items weigh in their video's and shots' labels (`model.streaming.ResetRule.weights`):
`context`, each by how many frames its state has seen since the last reset (the zero-shot default); `window_end`,
only the last item of each reset window, by the frames it spans (its state has seen the whole window; what a head
trained on window ends reads, `apps.train.encoded`)."""
PRECISIONS = ("float32", "bfloat16", "float16")
"""Inference precision: float32, or Keras mixed precision (weights stay float32, compute in 16 bits, the model's
output layers in float32 so probabilities keep their resolution). 16 bits pays off on GPUs with tensor cores."""


_SECRET_KEY = re.compile(r"(secret|token|password|passwd|key|credential|session)", re.IGNORECASE)


def redact(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of `options` (storage options) with every credential-like value replaced by '***'."""
    out: dict[str, Any] = {}
    for key, value in dict(options or {}).items():
        if isinstance(value, Mapping):
            out[key] = redact(value)
        elif _SECRET_KEY.search(str(key)):
            out[key] = "***"
        else:
            out[key] = value
    return out


def option(default: Any = MISSING, *, help: str, flag: str | None = None, answer: bool = False,
           choices: tuple | None = None, cli: bool = True, convert: Callable[[Any], Any] | None = None,
           default_factory: Any = MISSING, **field_kwargs: Any) -> Any:
    """A config field that also describes its command-line option, so a new option is one edit.

    help: the option's help text; flag: the option's name when it is not `--field-name`;
    answer: the option changes the labels, so a resumed run must use the same value (the run identity);
    choices: the allowed values; cli: False keeps it off the command line; convert: maps the parsed
    command-line value to the field's value (units, say).
    """
    metadata = {"help": help, "flag": flag, "answer": answer, "choices": choices, "cli": cli, "convert": convert}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata, **field_kwargs)
    return field(default=default, metadata=metadata, **field_kwargs)


def _fail(name: str, value: Any, expected: str) -> None:
    raise ConfigError(f"Invalid `{name}`: expected {expected}. Received: {name}={value!r}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(name, value, f"an integer >= {minimum}")


def _check_positive_number(name: str, value: Any, allow_zero: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        _fail(name, value, "a finite number " + (">= 0" if allow_zero else "> 0"))


CHEAP_MODEL_ITEMS_PER_S = 1000.0
"""A model that classifies at least this many items/s on the CPU leaves the CPUs to decoding (see below)."""


def available_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def decoder_threads(decoders: int) -> int:
    """FFmpeg threads per decoder: the CPUs shared out, so that decoders and their threads never outnumber the CPUs
    (FFmpeg's default is a thread per CPU in every decoder). One decoder on 2 CPUs decodes 720p H.264 with 2 threads
    at 1.8x one thread's speed; two decoders with 2 threads each ran 3% slower than with 1 each (measured here)."""
    return max(1, available_cpus() // max(1, decoders))


def default_decode_workers(inference_on_cpu: bool = True, model_items_per_s: float | None = None) -> int:
    """One decoder per CPU this process may use, less one when inference needs a CPU too.

    Measured on 2 CPUs, every frame: with MobileNetV2 on the CPU (76 items/s),
    1 decoder gave 62-67 frames/s and 2 gave 50-60 (they take cores from the
    model); with inference that costs the CPU ~nothing (an accelerator's case),
    2 decoders gave 427 frames/s and 1 gave 300. A small model on the CPU is the
    second case: at `CHEAP_MODEL_ITEMS_PER_S` or more (measured when the model is
    built) every CPU decodes; 2,000 tiny videos with a 64 px model ran 224
    videos/s with 1 decoder and 307 with 2.
    """
    cpus = available_cpus()
    cheap = model_items_per_s is not None and model_items_per_s >= CHEAP_MODEL_ITEMS_PER_S
    return max(1, cpus - 1) if inference_on_cpu and not cheap else max(1, cpus)


@dataclass(frozen=True)
class RayOptions:
    """Where the Ray engine schedules its stages; ignored by the local engine. Options are `--ray-<name>`."""

    address: str | None = option(None, help="cluster address (default: start a local Ray; inside `ray job submit`, "
                                            "the job's own cluster)")
    decode_cpus: float = option(1.0, help="CPUs per decode actor")
    inference_actors: int | None = option(None, help="size of the inference actor pool (default: one per GPU, or 1; "
                                                     "for a .tflite model, which runs on CPUs, half the cluster's CPUs "
                                                     "divided by --ray-inference-cpus)")
    inference_gpus: float | None = option(None, help="GPUs per inference actor, fractions allowed "
                                                     "(default: 1 if the cluster has GPUs, else 0)")
    inference_cpus: float = option(1.0, help="CPUs per inference actor; a streaming .tflite model runs this many "
                                             "videos at once in each actor (default 1)")
    max_decode_in_flight: int | None = option(None, flag="--ray-decoders",
                                              help="decode actors (default: the cluster's CPUs, less those inference takes)")
    object_store_memory: float | None = option(
        None, flag="--ray-object-store-gb", convert=lambda gb: gb * 1e9 if gb else None,
        help="object store budget of the pipeline in GB, backpressure beyond it (default: Ray Data's share)")
    range_items: int | None = option(
        None, help="sampled items per time range of a long video: a longer one is cut into ranges, classified and "
                   "assembled apart, and merged (default: 64 MiB of model input, e.g. 445 items at 224x224)")
    committers: int | None = option(None, help="write tasks that assemble and commit at once (default: 1 per 32 "
                                               "cluster CPUs, at least 2)")

    def __post_init__(self) -> None:
        _check_positive_number("ray.decode_cpus", self.decode_cpus, allow_zero=False)
        _check_positive_number("ray.inference_cpus", self.inference_cpus, allow_zero=True)
        if self.inference_actors is not None:
            _check_int("ray.inference_actors", self.inference_actors, 1)
        if self.inference_gpus is not None:
            _check_positive_number("ray.inference_gpus", self.inference_gpus, allow_zero=True)
        if self.max_decode_in_flight is not None:
            _check_int("ray.max_decode_in_flight", self.max_decode_in_flight, 1)
        if self.object_store_memory is not None:
            _check_positive_number("ray.object_store_memory", self.object_store_memory, allow_zero=False)
        if self.range_items is not None:
            _check_int("ray.range_items", self.range_items, 1)
        if self.committers is not None:
            _check_int("ray.committers", self.committers, 1)


@dataclass(frozen=True)
class LabelConfig:
    """Everything a labeling run needs, validated on construction: the one options object.

    The engines and the stages read it as it is (no copies), the command line is
    generated from its fields (`option(...)`), and the fields marked `answer`
    make up the run identity that a resumed run must match.
    """

    manifest: str = option(help="CSV or Parquet manifest (local path or URL) with a `uri` column")
    model: str = option(help="model bundle folder or .keras file (local or URL)")
    out: str = option(help="output folder or URL (rerun into it to resume)")
    fps: float | None = option(None, answer=True,
                               help=f"frames sampled per second; 0 = every frame (default {DEFAULT_FPS:g}, or the rate a "
                                    "clip or sequence model was trained at)")
    sampling: str = option("rate", answer=True, choices=SAMPLINGS,
                           help="rate: --fps frames per second of video (default); keyframes: only the key frames, "
                                "decoded with PyAV (pip install 'vidbatch[keyframes]'): fastest, coarse; no shot "
                                "detection (key frames are seconds apart)")
    window: int = option(DEFAULT_WINDOW, answer=True,
                         help=f"rolling-average window in sampled frames (default {DEFAULT_WINDOW})")
    top_k: int = option(DEFAULT_TOP_K, answer=True, help=f"classes kept in the summary's top_k (default {DEFAULT_TOP_K})")
    batch_size: int = option(DEFAULT_BATCH_SIZE, help=f"items per inference batch (default {DEFAULT_BATCH_SIZE})")
    precision: str = option("float32", answer=True, choices=PRECISIONS,
                            help="inference precision; 16-bit (Keras mixed precision) is for GPUs with tensor cores "
                                 "(default float32)")
    clip_stride: int | None = option(None, answer=True,
                                     help="clip models: sampled frames between clip starts (default: the clip length)")
    shot_threshold: float | None = option(
        DEFAULT_SHOT_THRESHOLD, answer=True,
        help=f"hard-cut detection threshold, 0..1; the rolling window restarts at each cut; 0 = off "
             f"(default {DEFAULT_SHOT_THRESHOLD:g})")
    frame_threshold: float | None = option(None, answer=True, help="frame labels scoring below this become --unknown-label")
    video_threshold: float | None = option(None, answer=True,
                                           help="video and shot labels scoring below this become --unknown-label")
    unknown_label: str = option("unknown", answer=True, help="label for scores under the thresholds (default unknown)")
    thumbnails: bool = option(False, answer=True,
                              help="also write a small JPEG per segment (thumbnails/, shown by vidbatch report); "
                                   "local engine")
    embeddings: bool = option(False, answer=True,
                              help="also write feature vectors: per item in frames/ (column embedding) and the "
                                   "per-video mean in embeddings/, for search and near-duplicates. They are the "
                                   "bundle's encoder output, or the input of the model's last layer")
    frame_top_k: int = option(0, answer=True, help="also list the best k classes of every frame (frames/ column top_k)")
    classes: str | None = option(None, help="class names (a file: JSON list or one per line) for a pretrained "
                                            ".tflite classifier, or a legacy .h5 model without a sidecar")
    label_map: str | None = option(None, help="JSON file {\"my class\": [\"model class\", ...]}: the model's classes "
                                              "combined into yours before smoothing (pretrained models)")
    model_top_k: int = option(0, answer=True,
                              help="with --label-map: also keep the model's own best k classes, before the map, for "
                                   "audit (summary and frames/ column model_top_k)")
    label_map_combine: str = option("max", choices=LABEL_MAP_COMBINES,
                                    help="how a class's model classes combine: the best one's probability (max), or "
                                         "their sum (default max: measured better, benchmarks/streaming.py)")
    label_map_rest: str = option("other", choices=LABEL_MAP_RESTS,
                                 help="model classes the map does not name: other (a class of their own) or drop "
                                      "(default other)")
    state_reset_s: float | None = option(None, answer=True,
                                         help="streaming video models: seconds of sampled frames after which the "
                                              "state starts over inside a shot (it always does at a cut); 0 = only "
                                              f"at cuts (default {DEFAULT_STATE_RESET_S:g}, or what a trained "
                                              "bundle's encoder was trained with)")
    state_weights: str | None = option(None, answer=True, choices=STATE_WEIGHTS,
                                       help="streaming video models: how sampled frames weigh in a video's and a "
                                            "shot's label: context (by the frames each frame's state has seen) or "
                                            "window_end (only the last frame before each reset, by the frames it "
                                            "spans) (default context, or what a trained bundle's head was trained on)")
    preprocessing: str | None = option(None, answer=True, choices=PREPROCESSING,
                                       help="how pixels are scaled for the model, overriding its sidecar; for a legacy "
                                            ".h5 model without one, say it here (default: the sidecar's, else detected "
                                            "or 'unit' with a note)")
    channel_order: str | None = option(None, answer=True, choices=CHANNEL_ORDERS,
                                       help="the channel order the model was trained on, overriding its sidecar: "
                                            "bgr for models trained on cv2.imread images (default: the sidecar's, else rgb)")
    engine: str = option("local", choices=ENGINES, help="local (one process) or ray")
    decode_workers: int | None = option(
        None, help="local engine: decoder processes (default: CPUs - 1; all CPUs when the model runs on a GPU)")
    chunk_frames: int = option(DEFAULT_CHUNK_FRAMES, cli=False,
                               help="frames a decoder ships at a time; bounds memory per video in flight")
    video_timeout: float | None = option(
        DEFAULT_VIDEO_TIMEOUT_S,
        help=f"seconds a decoder may make no progress before its video fails (default {DEFAULT_VIDEO_TIMEOUT_S:g})")
    commit_videos: int = option(DEFAULT_COMMIT_VIDEOS,
                                help=f"videos per commit: their frames share one Parquet shard and one commit record "
                                     f"(default {DEFAULT_COMMIT_VIDEOS})")
    commit_seconds: float = option(DEFAULT_COMMIT_SECONDS,
                                   help="seconds a finished video may wait for its batch to fill before it is committed "
                                        f"anyway (default {DEFAULT_COMMIT_SECONDS:g})")
    storage_options: Mapping[str, Any] = option(default_factory=dict, hash=False,
                                                help="JSON object passed to fsspec/s3fs (e.g. endpoint_url)")
    overwrite: bool = option(False, help="discard an earlier run in --out made with other settings")
    dry_run: bool = option(False, help="check the manifest (every uri exists), the output and the model, print what "
                                       "would run, and stop; exit 1 if some videos are missing")
    trust_model_code: bool = option(False, help="load models that carry code (Lambda layers); only for files you trust")
    progress: bool = option(True, flag="--no-progress", help="no progress bar")
    keep_probs: bool = option(False, answer=True, cli=False,
                              help="write every item's full probability vector into frames/ (column `probs`)")
    ray: RayOptions = option(default_factory=RayOptions, help="Ray engine options")

    def __post_init__(self) -> None:
        for name in ("manifest", "model", "out"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                _fail(name, value, "a non-empty path or URL")
        if self.fps is not None:
            _check_positive_number("fps", self.fps, allow_zero=True)
        if self.preprocessing is not None and self.preprocessing not in PREPROCESSING:
            _fail("preprocessing", self.preprocessing, f"one of {PREPROCESSING}, or None")
        if self.channel_order is not None and self.channel_order not in CHANNEL_ORDERS:
            _fail("channel_order", self.channel_order, f"one of {CHANNEL_ORDERS}, or None")
        if self.sampling not in SAMPLINGS:
            _fail("sampling", self.sampling, f"one of {SAMPLINGS}")
        _check_int("window", self.window, 1)
        _check_int("top_k", self.top_k, 1)
        _check_int("batch_size", self.batch_size, 1)
        if self.precision not in PRECISIONS:
            _fail("precision", self.precision, f"one of {PRECISIONS}")
        _check_int("chunk_frames", self.chunk_frames, 1)
        if self.clip_stride is not None:
            _check_int("clip_stride", self.clip_stride, 1)
        for name in ("shot_threshold", "frame_threshold", "video_threshold"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1):
                _fail(name, value, "a number between 0 and 1, or None")
        if not isinstance(self.unknown_label, str) or not self.unknown_label:
            _fail("unknown_label", self.unknown_label, "a non-empty string")
        _check_int("frame_top_k", self.frame_top_k, 0)
        _check_int("model_top_k", self.model_top_k, 0)
        if self.model_top_k and self.label_map is None:
            _fail("model_top_k", self.model_top_k, "0 without a label_map (then the labels are the model's own "
                  "classes: top_k and frame_top_k list them); pass --label-map MAP.json, or leave it out")
        if self.label_map_combine not in LABEL_MAP_COMBINES:
            _fail("label_map_combine", self.label_map_combine, f"one of {LABEL_MAP_COMBINES}")
        if self.label_map_rest not in LABEL_MAP_RESTS:
            _fail("label_map_rest", self.label_map_rest, f"one of {LABEL_MAP_RESTS}")
        if self.state_reset_s is not None:
            _check_positive_number("state_reset_s", self.state_reset_s, allow_zero=True)
        if self.state_weights is not None and self.state_weights not in STATE_WEIGHTS:
            _fail("state_weights", self.state_weights, f"one of {STATE_WEIGHTS}, or None")
        if self.engine not in ENGINES:
            _fail("engine", self.engine, f"one of {ENGINES}")
        if self.decode_workers is not None:
            _check_int("decode_workers", self.decode_workers, 1)
        if self.video_timeout is not None:
            _check_positive_number("video_timeout", self.video_timeout, allow_zero=False)
        _check_int("commit_videos", self.commit_videos, 1)
        _check_positive_number("commit_seconds", self.commit_seconds, allow_zero=False)
        if not isinstance(self.storage_options, Mapping):
            _fail("storage_options", type(self.storage_options).__name__, "a mapping")
        if not isinstance(self.ray, RayOptions):
            _fail("ray", type(self.ray).__name__, "a RayOptions")
        # one spelling per meaning, so equal settings give equal run identities
        object.__setattr__(self, "fps", None if self.fps is None else float(self.fps))
        object.__setattr__(self, "shot_threshold", self.shot_threshold or None)

    def for_model(self, sample_fps: float | None, streaming: bool = False,
                  state_reset_s: float | None = None, state_weights: str | None = None) -> "LabelConfig":
        """This config with `fps` settled: the user's, else the rate a clip model was trained at, else the default.
        A model over windows of frames expects them as far apart as in training. Likewise a streaming encoder's
        reset period and item weights: the user's, else those its head was trained with, else the defaults (other
        models: unset)."""
        changes: dict[str, Any] = {}
        if self.fps is None:
            changes["fps"] = sample_fps if sample_fps else DEFAULT_FPS
        if streaming and self.state_reset_s is None:  # other models leave it unset (their run identity unchanged)
            changes["state_reset_s"] = DEFAULT_STATE_RESET_S if state_reset_s is None else float(state_reset_s)
        elif not streaming and self.state_reset_s is not None:  # it means nothing there; set, it marks a stateful
            changes["state_reset_s"] = None  # model's run (`stages.assemble` weights items by their state's context)
        if streaming and self.state_weights is None and state_weights is not None:  # unset reads as `context`
            changes["state_weights"] = state_weights
        elif not streaming and self.state_weights is not None:
            changes["state_weights"] = None
        return dataclasses.replace(self, **changes) if changes else self

    def reset_every(self) -> int:
        """A streaming model's reset period in sampled frames (0: only at cuts), at this config's --fps."""
        seconds = DEFAULT_STATE_RESET_S if self.state_reset_s is None else self.state_reset_s
        if not seconds or not self.fps:
            return 0
        return max(1, round(seconds * self.fps))

    @property
    def label_map_options(self) -> dict[str, str]:
        return {"combine": self.label_map_combine, "rest": self.label_map_rest}

    def workers(self, inference_on_cpu: bool = True, model_items_per_s: float | None = None) -> int:
        return self.decode_workers or default_decode_workers(inference_on_cpu, model_items_per_s)

    def answer_fields(self) -> dict[str, Any]:
        """The options that change the labels (fields declared with `answer=True`): a resumed run must match them."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("answer")}

    @classmethod
    def answer_defaults(cls) -> dict[str, Any]:
        """The default of each option that changes the labels: what a run made before that option existed did
        (so an older output still resumes when the option is left at its default)."""
        defaults = {}
        for f in fields(cls):
            if f.metadata.get("answer"):
                defaults[f.name] = f.default_factory() if f.default is MISSING and f.default_factory is not MISSING \
                    else f.default
        return defaults

    def to_record(self) -> dict[str, Any]:
        """A JSON-safe description for run.json, with credentials left out."""
        record = asdict(self)
        record["storage_options"] = redact(self.storage_options)
        return record
