"""A real S3 round trip (moto server on 127.0.0.1): manifest, videos, model bundle and outputs all on s3://."""

import json
import os

import pandas as pd
import pytest

import vidbatch


def upload_set(fs, bucket, manifest, bundle, extra_rows=()):
    folder = os.path.dirname(manifest)
    rows = pd.read_csv(manifest)
    for uri in rows.uri:
        fs.put_file(os.path.join(folder, uri), f"{bucket}/set/{uri}")
    rows = pd.concat([rows, pd.DataFrame(list(extra_rows))], ignore_index=True)
    with fs.open(f"{bucket}/set/manifest.csv", "w") as handle:
        rows.to_csv(handle, index=False)  # relative uris resolve against s3://bucket/set/
    for name in os.listdir(bundle):
        fs.put_file(os.path.join(bundle, name), f"{bucket}/models/colour/{name}")
    return f"s3://{bucket}/set/manifest.csv", f"s3://{bucket}/models/colour/"


def test_s3_round_trip_local_engine(s3, synth_set, colour_bundle, tmp_path):
    fs, bucket = s3
    missing = {"video_id": "missing", "uri": f"s3://{bucket}/set/videos/nope.mp4", "label": "ball"}
    manifest, model = upload_set(fs, bucket, synth_set, colour_bundle, [missing])
    out = f"s3://{bucket}/labels/run1"
    result = vidbatch.label(manifest, model, out, fps=5, progress=False)
    assert (result.ok, result.failed) == (6, 1)
    endpoint = {"client_kwargs": {"endpoint_url": os.environ["AWS_ENDPOINT_URL"]}}
    summary = pd.read_parquet(f"{out}/summary.parquet", storage_options=endpoint)
    failed = summary.set_index("video_id").loc["missing"]
    assert failed["status"] == "failed" and failed["error"].startswith("not found: no file at s3://")
    ok = summary[summary.status == "ok"]
    assert (ok.pred_label == ok.label).all()
    frames = pd.read_parquet(f"{out}/frames", storage_options=endpoint, filters=[("video_id", "==", "waves_001")])
    assert len(frames) == 10 and set(frames.smoothed_label) == {"waves"}
    assert len(pd.read_parquet(f"{out}/segments.parquet", storage_options=endpoint)) >= 6
    run = json.loads(fs.cat_file(f"{bucket}/labels/run1/run.json"))
    assert run["counts"]["ok"] == 6 and run["model"]["source"] == model
    # no temporary or partial objects are left behind
    assert not [p for p in fs.find(f"{bucket}/labels") if os.path.basename(p).startswith(".")]
    # resume over S3: everything committed is skipped
    again = vidbatch.label(manifest, model, out, fps=5, progress=False)
    assert again.resumed == 6 and again.ok == 6


def test_s3_storage_options_and_no_credentials_in_outputs(s3, synth_set, colour_bundle, s3_endpoint):
    fs, bucket = s3
    manifest, model = upload_set(fs, bucket, synth_set, colour_bundle)
    options = {"key": "testing-key-id", "secret": "testing-secret", "endpoint_url": s3_endpoint}
    out = f"s3://{bucket}/labels/opts"
    vidbatch.label(manifest, model, out, storage_options=options, progress=False)
    blobs = b"".join(fs.cat_file(p) for p in fs.find(f"{bucket}/labels/opts"))
    assert b"testing-secret" not in blobs and b"testing-key-id" not in blobs


def test_s3_missing_manifest_and_model(s3, colour_bundle, tmp_path):
    fs, bucket = s3
    with pytest.raises(vidbatch.ManifestError, match="no such file"):
        vidbatch.label(f"s3://{bucket}/none.csv", colour_bundle, str(tmp_path / "o"), progress=False)
    fs.pipe_file(f"{bucket}/m.csv", b"uri\ns3://x/y.mp4\n")
    with pytest.raises(vidbatch.ModelBundleError, match="no such file or folder"):
        vidbatch.label(f"s3://{bucket}/m.csv", f"s3://{bucket}/models/none/", str(tmp_path / "o"), progress=False)
