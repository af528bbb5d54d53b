"""`vidbatch inspect`: what a model bundle is, or what a finished run did."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import pandas as pd

from vidbatch.core.errors import VidbatchError
from vidbatch.io import storage
from vidbatch.model.bundle import load_bundle
from vidbatch.model.location import MODEL_FILE_SUFFIXES


def describe(path: str, storage_options: Mapping[str, Any] | None = None, classes: str | None = None) -> str:
    fs, local = storage.url_to_fs(path, storage_options)
    if fs.isdir(local) and fs.exists(storage.join(local, "run.json")):
        return describe_run(path, storage_options)
    if fs.exists(local) and (fs.isdir(local) or local.lower().endswith(MODEL_FILE_SUFFIXES)):
        return describe_bundle(path, storage_options, classes)
    raise VidbatchError(f"Cannot inspect {path!r}: not a model bundle (bundle.json + model.keras, or .h5), a .tflite "
                        "classifier, nor a finished run folder (run.json)")


SHOWN_CLASSES = 30
"""Class names `inspect` lists (ImageNet's 1,001 or Kinetics' 600 would fill the screen)."""

_SOURCES = {"sidecar": "from bundle.json", "option": "given as an option", "detected": "detected: the model rescales "
            "its own input", "assumed": "assumed: nothing says; see the note",
            "pretrained": "a pretrained classifier: uint8 RGB, scaled inside it; see the note"}


def _source(bundle) -> str:
    if bundle.preprocessing_source == "pretrained" and getattr(bundle.encoder, "stateful", False):
        return "a pretrained streaming video classifier; see the note"
    return _SOURCES[bundle.preprocessing_source]


def describe_bundle(path: str, storage_options=None, classes: str | None = None) -> str:
    bundle = load_bundle(path, storage_options, classes=classes)
    spec = bundle.spec
    lines = [
        f"model bundle: {path}",
        f"  name:          {spec.name or '-'}",
        f"  kind:          {spec.kind}" + (f" (clips of {spec.clip_len} frames)" if spec.kind == "clip" else ""),
        f"  input size:    {spec.input_size[0]}x{spec.input_size[1]} (height x width), {spec.channel_order.upper()}"
        + (", centre-cropped to that aspect ratio" if spec.resize == "center_crop" else ""),
        f"  preprocessing: {spec.preprocessing} ({_source(bundle)})",
        f"  outputs:       {spec.outputs}",
        f"  classes ({len(spec.classes)}): {', '.join(spec.classes[:SHOWN_CLASSES])}"
        + (f", ... ({len(spec.classes) - SHOWN_CLASSES} more)" if len(spec.classes) > SHOWN_CLASSES else ""),
        f"  parameters:    {bundle.model.count_params():,}",
        f"  fingerprint:   {bundle.fingerprint[:16]}",
    ]
    if bundle.encoder is not None:
        lines.append(f"  encoder:       {spec.encoder['file']} ({spec.encoder['format']}, {bundle.encoder.runtime}), "
                     f"{spec.encoder['features']} features per frame; the parameters above are the head's")
    if getattr(bundle.encoder, "stateful", False):
        info = bundle.encoder.describe()
        lines.append(f"  streaming:     stateful (signature {info['signature']!r}: image {info['image_shape']} "
                     f"{info['value_range']}, {info['state_tensors']} state tensors, "
                     f"{info['state_bytes_per_video'] / 1e6:.1f} MB a video"
                     + (f", {info['pooled_features']} pooled features" if info["pooled_features"] else "") + ")")
    lines += [f"  note:          {note}" for note in bundle.notes]
    if spec.sample_fps:
        extra = spec.extra or {}
        lines.append(f"  trained at:    {spec.sample_fps:g} sampled frames/s"
                     + (f", the state starting over every {extra['state_reset_s']:g} s inside a shot"
                        if extra.get("state_reset_s") else "")
                     + ("; a video's label weighs the last frame before each restart (state_weights window_end)"
                        if extra.get("state_weights") == "window_end" else ""))
    metrics = os.path.join(path, "metrics.json")
    if os.path.isdir(path) and os.path.exists(metrics):
        with open(metrics) as handle:
            data = json.load(handle)
        lines.append(f"  test accuracy: {data.get('test_accuracy', float('nan')):.4f} "
                     f"({data.get('data', {}).get('test_items', '?')} held-out items)"
                     + (f"; then trained again on {data['refit']['trained_on']}" if data.get("refit") else ""))
    return "\n".join(lines)


def describe_run(path: str, storage_options=None) -> str:
    fs, local = storage.url_to_fs(path, storage_options)
    run = json.loads(fs.cat_file(storage.join(local, "run.json")))
    counts = run["counts"]
    config = run["config"]
    lines = [
        f"run: {path}",
        f"  engine {run.get('engine')}, finished {run.get('finished_at')}, {run.get('elapsed_s')} s",
        f"  model {run['model']['name']} ({run['model']['kind']}, {len(run['model']['classes'])} classes), "
        f"fps {config['fps']:g}, window {config['window']}, top-k {config['top_k']}",
        f"  videos {counts['videos']}: {counts['ok']} ok, {counts['failed']} failed "
        f"({counts.get('resumed_from_previous_run', 0)} resumed); frames decoded {counts['frames_decoded']:,}, "
        f"classified {counts['frames_classified']:,}",
    ]
    mapping = run["model"].get("label_map")
    if mapping:
        lines.append(f"  label map {os.path.basename(str(mapping['source']))}: {mapping['classes']} classes from "
                     f"{mapping['model_classes_mapped']} of the model's {mapping['model_classes']} ({mapping['combine']}, "
                     f"rest {mapping['rest']})" + (f"; the model's own top-{config['model_top_k']} kept (model_top_k)"
                                                   if config.get("model_top_k") else ""))
    with fs.open(storage.join(local, "summary.parquet"), "rb") as handle:
        summary = pd.read_parquet(handle)
    ok = summary[summary.status == "ok"]
    if len(ok):
        distribution = ok.pred_label.value_counts()
        lines.append("  labels: " + ", ".join(f"{label} {count}" for label, count in distribution.items()))
    failed = summary[summary.status == "failed"]
    if len(failed):
        lines.append("  failures:")
        for row in failed.head(20).itertuples():
            lines.append(f"    {row.video_id}: {row.error}")
        if len(failed) > 20:
            lines.append(f"    ... and {len(failed) - 20} more")
    return "\n".join(lines)
