"""Run a labeling job: validate everything up front, schedule the stages on an engine, write the tables."""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any


from vidbatch.core.config import LabelConfig
from vidbatch.core.errors import ConfigError
from vidbatch.engines.local import LocalEngine
from vidbatch.io import storage
from vidbatch.io.ledger import Winners
from vidbatch.io.manifest import KeyIndex, Manifest, Pending
from vidbatch.io.memory import release_large_blocks
from vidbatch.io.output import BatchCommitter, RunOutput, now_iso
from vidbatch.io.tables import Tally
from vidbatch.model.bundle import load_bundle
from vidbatch.model.location import locate_model
from vidbatch.stages.assemble import assemble_failed
from vidbatch.stages.sampling import KeyframeSampling

log = logging.getLogger("vidbatch")


@dataclass
class RunResult:
    """What a run did; `exit_code` is the CLI's: 0 all ok, 1 some videos failed."""

    out: str
    videos: int
    ok: int
    failed: int
    resumed: int
    elapsed_s: float
    notes: list[str] = field(default_factory=list)
    """What the user should know about the labels (also in run.json), e.g. videos with too few key frames."""
    dry_run: bool = False
    """A `--dry-run`: nothing was labeled; `notes` say what would run, `failed` counts missing videos."""
    storage_options: Any = field(default=None, repr=False)
    _summary: Any = field(default=None, init=False, repr=False)

    @property
    def summary(self):
        """The summary table (`summary.parquet`), read from `out` when first asked for: a run over millions of
        videos writes it a slice at a time and keeps none of it in memory. None for a dry run."""
        if self._summary is None and not self.dry_run:
            self._summary = RunOutput(self.out, self.storage_options).summary()
        return self._summary

    @property
    def exit_code(self) -> int:
        return 0 if self.failed == 0 else 1

    def failed_videos(self):
        """The failed videos' ids and errors (a pandas DataFrame), read from the summary without the rest of it."""
        return RunOutput(self.out, self.storage_options).summary(
            columns=["video_id", "error"], filters=[("status", "=", "failed")]).to_pandas()

    def summary_frame(self):
        return self.summary.to_pandas() if self.summary is not None else None


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("vidbatch", "keras", "tensorflow", "jax", "torch", "opencv-python-headless", "pyarrow", "pandas", "numpy", "fsspec", "s3fs", "ray"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    versions["keras_backend"] = os.environ.get("KERAS_BACKEND", "tensorflow")
    return versions


def check_extras_installed(config: LabelConfig) -> None:
    """Optional extras (`vidbatch[ray]`, `vidbatch[keyframes]`): say what to install before any work, not with an
    ImportError halfway."""
    if config.engine == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError("Invalid `engine`: the Ray engine needs Ray, which is not installed; "
                          "install it with pip install 'vidbatch[ray]', or use engine='local'. Received: engine='ray'")
    if config.thumbnails and config.engine == "ray":
        raise ConfigError("Invalid `thumbnails`: the Ray engine does not write thumbnails yet; use engine='local' for "
                          "a run with thumbnails. Received: thumbnails=True, engine='ray'")
    if config.sampling == "keyframes" and importlib.util.find_spec("av") is None:
        raise ConfigError("Invalid `sampling`: key-frame decoding needs PyAV, which is not installed; install it with "
                          "pip install 'vidbatch[keyframes]', or use sampling='rate'. Received: sampling='keyframes'")


def few_keyframes_note(tally: Tally) -> str | None:
    """With --sampling keyframes, a note on the labeled videos that rest on fewer than `min_keyframes` key
    frames (counted by the summary's `Tally`)."""
    if tally.few_below is None or not tally.few:
        return None
    return (f"{tally.few} video(s) have fewer than {tally.few_below} key frames, so their labels rest on one or two "
            f"frames (e.g. {', '.join(tally.few_examples)}); label them with --sampling rate for a finer answer")


LOST = "lost: no result came back for this video"


def fail_lost(output: RunOutput, manifest: Manifest, model: str, commit_videos: int,
              index: KeyIndex | None = None) -> Winners:
    """Whatever happened in an engine (a cluster that lost work, a decoder that never answered), every video gets
    a row: one with no commit gets a failed one. Returns each manifest position's winning entry as it then
    stands (`RunOutput.winners`: the records read once, or twice when something was lost)."""
    index = index if index is not None else KeyIndex.of(manifest)
    winners = output.winners(index)
    missing = winners.missing()
    if not missing.any():
        return winners
    committer = BatchCommitter(output, max_videos=commit_videos)
    try:
        for batch in manifest.batches():
            for task in batch.tasks.where(missing[batch.start:batch.start + len(batch.tasks)]):
                committer.add(assemble_failed(task.video_id, task.key, LOST, None, model, 0.0))
    finally:
        committer.close()
    return output.winners(index)


def streaming_notes(bundle, config: LabelConfig) -> list[str]:
    """What a run with a streaming video model assumes (the file cannot say its training frame rate)."""
    if not getattr(bundle.encoder, "stateful", False):
        return []
    every = config.reset_every()
    default = ("streaming models' default: MoViNet-A0's training rate" if bundle.preprocessing_source == "pretrained"
               else "the rate its head was trained at")
    rate = f"{config.fps:g} fps" + (f" ({default}; --fps to change it)" if config.fps == bundle.spec.sample_fps else "")
    return [f"{os.path.basename(bundle.source.rstrip('/'))} is a streaming video model: each video's state is carried "
            f"from sampled frame to sampled frame at {rate}, and starts over at each shot cut"
            + (f" and every {every} sampled frames ({config.state_reset_s:g} s) inside a shot" if every else
               "; with --state-reset-s 0 a long shot's time ranges (Ray engine) each start at the shot's start, "
               "so their pre-roll grows with the shot")
            + ("; a video's and a shot's label weigh only the last frame before each restart (--state-weights "
               "window_end, as its head was trained)" if config.state_weights == "window_end" else "")]


def keys(manifest: Manifest):
    return manifest.tasks.keys()


def missing_videos(manifest: Manifest, storage_options) -> list[str]:
    """The uris of the manifest that point at nothing (checked in parallel: remote stores answer one by one)."""
    def exists(task) -> bool:
        try:
            fs, path = storage.url_to_fs(task.location, storage_options)
            return fs.info(path).get("type") == "file"  # not fs.isfile, which reads every error as "no file"
        except Exception as exc:  # object-store clients raise their own types (botocore: NoCredentialsError, ...)
            if storage.is_missing_credentials(exc):  # not "missing": nothing could be looked at
                raise ConfigError(f"Cannot check the videos: {storage.credentials_hint('video', task.location)}") from None
            return False

    missing = []
    with ThreadPoolExecutor(max_workers=16) as pool:
        for batch in manifest.batches():
            tasks = list(batch.tasks)
            missing += [task.uri for task, ok in zip(tasks, pool.map(exists, tasks)) if not ok]
    return missing


def dry_run(config: LabelConfig, manifest: Manifest, bundle, output: RunOutput, identity: dict, started: float) -> RunResult:
    """Everything a run checks before work, and what it would do, with nothing written (`--dry-run`)."""
    existing = output.existing_run(identity, overwrite=config.overwrite, defaults=LabelConfig.answer_defaults())
    done = pending(output, manifest)[1] if existing == "same" else 0
    missing = missing_videos(manifest, config.storage_options)
    spec = bundle.spec
    sampling = "key frames only" if config.sampling == "keyframes" else (
        "every frame" if config.fps == 0 else f"{config.fps:g} frames per second")
    lines = [
        f"dry run: nothing was decoded or written. Manifest {config.manifest}: {len(manifest)} videos, "
        f"{len(missing)} missing" + (f" (e.g. {', '.join(missing[:5])})" if missing else ""),
        f"model {bundle.display_name}: {spec.kind}, {len(bundle.classes)} classes"
        + (f" (a label map of {len(spec.classes)})" if bundle.label_map is not None else "") + ", input {spec.input_size[0]}x"
        f"{spec.input_size[1]} {spec.channel_order.upper()}, preprocessing {spec.preprocessing} "
        f"({bundle.preprocessing_source})",
        f"output {config.out}: " + {"none": "new", "same": f"resumes an earlier run ({done} videos already done)",
                                    "other": "holds another run, which --overwrite would discard"}[existing],
        f"would label {len(manifest) - done} videos on the {config.engine} engine: {sampling}, rolling window "
        f"{config.window}, batch {config.batch_size}, precision {config.precision}",
    ]
    return RunResult(out=config.out, videos=len(manifest), ok=0, failed=len(missing), resumed=done,
                     elapsed_s=time.monotonic() - started, notes=lines, dry_run=True)


def pending(output: RunOutput, manifest: Manifest):
    """The manifest's videos left to label (those with no ok commit; read a batch at a time), and how many an
    earlier run finished."""
    todo = Pending(manifest, output.done_hashes())
    return todo, len(manifest) - len(todo)


def finish(config: LabelConfig, output: RunOutput, manifest: Manifest, run_record: dict, started: float,
           resumed: int, processed: int, windows: int | None = None):
    """The end of a run, after the engine: a failed row for every video with no commit, then the tables
    (`RunOutput.finalize`), then run.json with the counts and notes the summary gave. `windows`: a clip or
    sequence model's clip length. Returns the ok and failed counts and the notes."""
    release_large_blocks()  # the driver's memory stays flat while it writes the tables (io/memory.py)
    model = run_record["model"]["name"]
    index = KeyIndex.of(manifest)
    winners = fail_lost(output, manifest, model, config.commit_videos, index)
    tally = Tally(few_below=KeyframeSampling().min_keyframes if config.sampling == "keyframes" else None)

    def record(tally: Tally) -> dict:
        run_record.update({
            "finished_at": now_iso(),
            "elapsed_s": round(time.monotonic() - started, 3),
            "counts": {
                "videos": len(manifest),
                "ok": tally.ok,
                "failed": tally.failed,
                "resumed_from_previous_run": resumed,
                "processed_this_run": processed,
                "frames_decoded": tally.frames_decoded,
                "frames_classified": tally.frames_classified,
                # what the summary's frames_classified counts: a clip or sequence model classifies windows
                "frames_classified_counts": ("sampled frames" if windows is None else
                                             f"windows of {windows} sampled frames (one per window, "
                                             "stamped with its last frame)"),
                "decode_notes": tally.decode_notes,
            },
        })
        note = few_keyframes_note(tally)
        notes = [note] if note else []
        if tally.decode_notes:
            notes.append(f"{tally.decode_notes} video(s) were labeled from fewer frames than their container lists "
                         f"(an index off by under a second; e.g. {tally.decode_note_example}): see the summary's "
                         "decode_note column")
        if config.sampling == "keyframes":
            run_record["counts"]["few_keyframes"] = tally.few
        run_record["notes"] = notes
        return run_record

    output.finalize(manifest, record, winners=winners, index=index, tally=tally)
    return tally.ok, tally.failed, run_record["notes"]


def run(config: LabelConfig, on_worker_event=None, manifest: Manifest | None = None) -> RunResult:
    """Label every video of `config.manifest`; returns the counts (the tables are under `config.out`).

    `manifest`: the manifest already read and validated (the CLI reads it before TensorFlow starts), so that a
    large one is not read twice.
    """
    started_at, started = now_iso(), time.monotonic()
    check_extras_installed(config)
    manifest = manifest or Manifest.from_path(config.manifest, config.storage_options)
    locate_model(config.model, config.storage_options)  # a bad --model is reported before --out is created
    if config.engine == "ray" and not config.dry_run:
        from vidbatch.engines.ray_connect import check_reachable, cluster_address

        check_reachable(cluster_address(config.ray.address))  # a stale address costs seconds, not a model load
    output = RunOutput(config.out, config.storage_options)
    output.check_writable(leave_no_trace=config.dry_run)  # all that needs no model is checked before it loads
    bundle = load_bundle(config.model, config.storage_options, config.trust_model_code, classes=config.classes,
                         preprocessing=config.preprocessing, channel_order=config.channel_order,
                         label_map=config.label_map, label_map_options=config.label_map_options)
    streaming = bool(getattr(bundle.encoder, "stateful", False))
    config = config.for_model(bundle.spec.sample_fps if bundle.spec.kind == "clip" or streaming else None,
                              streaming, bundle.spec.extra.get("state_reset_s"), bundle.spec.extra.get("state_weights"))
    for note in list(bundle.notes) + streaming_notes(bundle, config):  # said once, before the work; kept in run.json
        log.warning(note)
    if config.sampling == "keyframes" and (bundle.spec.kind != "frame" or streaming):
        what = "the clips of consecutive frames a clip model reads" if bundle.spec.kind != "frame" else \
            "the evenly spaced frames a streaming video model carries its state across"
        raise ConfigError(f"Invalid `sampling`: key frames are seconds apart, so they cannot make {what}; use "
                          "sampling='rate'. Received: sampling='keyframes'")
    identity = {"model_fingerprint": bundle.fingerprint, **config.answer_fields()}
    if config.dry_run:
        return dry_run(config, manifest, bundle, output, identity, started)
    output.prepare(identity, overwrite=config.overwrite, defaults=LabelConfig.answer_defaults())

    todo, resumed = pending(output, manifest)

    if config.engine == "local":
        stages = LocalEngine(config, bundle, output, on_worker_event=on_worker_event).run(todo)
    elif config.engine == "ray":
        # Ray is an optional extra: imported only when asked for
        from vidbatch.engines.ray_engine import RayEngine

        stages = RayEngine(config, bundle, output).run(todo)
    else:  # pragma: no cover - LabelConfig validates this
        raise ConfigError(f"Unknown engine. Received: engine={config.engine!r}")

    run_record = {
        "config": config.to_record(),
        "model": {
            "source": bundle.source,
            "fingerprint": bundle.fingerprint,
            "name": bundle.display_name,
            "kind": bundle.spec.kind,
            "classes": list(bundle.classes),
            "label_map": bundle.label_map.describe() if bundle.label_map is not None else None,
            "streaming": (bundle.encoder.describe() if getattr(bundle.encoder, "stateful", False) else None),
            "input_size": list(bundle.spec.input_size),
            "preprocessing": bundle.spec.preprocessing,
            "channel_order": bundle.spec.channel_order,
            "preprocessing_source": bundle.preprocessing_source,
            "notes": list(bundle.notes) + streaming_notes(bundle, config),
            "clip_len": bundle.spec.clip_len,
            "encoder": ({**bundle.spec.encoder, "runtime": bundle.encoder.runtime}
                        if bundle.encoder is not None else None),
        },
        "versions": package_versions(),
        "host": socket.gethostname(),
        "engine": config.engine,
        "started_at": started_at,
        "stages": stages,
    }
    ok, failed, notes = finish(config, output, manifest, run_record, started, resumed, len(todo),
                                        windows=None if bundle.spec.kind == "frame" else bundle.spec.clip_len)
    elapsed = run_record["elapsed_s"]
    return RunResult(out=config.out, videos=len(manifest), ok=ok, failed=failed, resumed=resumed,
                     elapsed_s=elapsed, notes=notes, storage_options=config.storage_options)
