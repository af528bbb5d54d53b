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


@pytest.fixture
def enforcing_s3(tmp_path):
    """A second moto server that enforces IAM: a user may read `vault/open/*` and nothing else."""
    import shutil
    import subprocess
    import time
    import urllib.request

    import boto3

    from tests.support.helpers import free_port as _free_port

    port = _free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "6"}  # the setup below, then every request is checked
    server = subprocess.Popen([shutil.which("moto_server") or "moto_server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            break
        except Exception:
            time.sleep(0.1)
    admin = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="admin", aws_secret_access_key="admin")
    s3, iam = boto3.client("s3", **admin), boto3.client("iam", **admin)
    s3.create_bucket(Bucket="vault")
    yield endpoint, s3, iam
    server.terminate()
    server.wait(timeout=10)


def test_forbidden_s3_object_fails_alone(enforcing_s3, synth_set, colour_bundle, tmp_path):
    import json as js

    endpoint, s3, iam = enforcing_s3
    video = os.path.join(os.path.dirname(synth_set), "videos", "box_000.mp4")
    s3.put_object(Bucket="vault", Key="open/box.mp4", Body=open(video, "rb").read())
    s3.put_object(Bucket="vault", Key="secret/box.mp4", Body=open(video, "rb").read())
    iam.create_user(UserName="reader")
    iam.put_user_policy(UserName="reader", PolicyName="open-only", PolicyDocument=js.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
                       "Resource": ["arn:aws:s3:::vault", "arn:aws:s3:::vault/open/*"]}]}))
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    manifest = tmp_path / "m.csv"
    pd.DataFrame([{"video_id": "open", "uri": "s3://vault/open/box.mp4"},
                  {"video_id": "secret", "uri": "s3://vault/secret/box.mp4"}]).to_csv(manifest, index=False)
    options = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"], "endpoint_url": endpoint}
    result = vidbatch.label(str(manifest), colour_bundle, str(tmp_path / "out"), storage_options=options, progress=False)
    summary = result.summary_frame().set_index("video_id")
    assert summary.loc["open", "status"] == "ok" and summary.loc["open", "pred_label"] == "box"
    assert summary.loc["secret", "status"] == "failed"
    assert summary.loc["secret", "error"] == "permission denied: cannot read s3://vault/secret/box.mp4"
    assert key["SecretAccessKey"] not in open(tmp_path / "out" / "run.json").read()


def no_credentials_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") or k == "AWS_ENDPOINT_URL"}
    env.update({"AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                "AWS_CONFIG_FILE": str(tmp_path / "none"), "TF_CPP_MIN_LOG_LEVEL": "3"})
    return env


def run_without_credentials(tmp_path, manifest, model, out, *extra):
    import subprocess
    import sys
    import time

    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "vidbatch.cli", "label", manifest, "--model", model,
                             "--out", out, "--no-progress", *extra], capture_output=True, text=True,
                            env=no_credentials_env(tmp_path), timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vidbatch: error:"), lines
    assert "no credentials" in lines[0] and "AWS_ACCESS_KEY_ID" in lines[0] and "Traceback" not in result.stderr
    assert time.monotonic() - started < 20  # before TensorFlow starts (several seconds here)
    return lines[0]


def test_output_on_s3_without_credentials_fails_fast_in_one_line(s3, synth_set, colour_bundle, tmp_path):
    """No credentials anywhere: one line naming them, exit 2, before the model is loaded."""
    fs, bucket = s3
    line = run_without_credentials(tmp_path, synth_set, colour_bundle, f"s3://{bucket}/out")
    assert "--out" in line


def test_manifest_and_model_on_s3_without_credentials_fail_fast_in_one_line(s3, synth_set, colour_bundle, tmp_path):
    fs, bucket = s3
    manifest, model = upload_set(fs, bucket, synth_set, colour_bundle)
    line = run_without_credentials(tmp_path, manifest, colour_bundle, str(tmp_path / "out"))
    assert "manifest" in line and manifest in line
    line = run_without_credentials(tmp_path, synth_set, model, str(tmp_path / "out"))
    assert "--model" in line and model in line
    assert not (tmp_path / "out").exists()


def test_dry_run_says_no_credentials_for_videos_not_missing(s3, synth_set, colour_bundle, tmp_path):
    fs, bucket = s3
    upload_set(fs, bucket, synth_set, colour_bundle)
    rows = pd.read_csv(synth_set)
    rows["uri"] = [f"s3://{bucket}/set/{uri}" for uri in rows.uri]
    local_manifest = tmp_path / "remote_videos.csv"
    rows.to_csv(local_manifest, index=False)
    line = run_without_credentials(tmp_path, str(local_manifest), colour_bundle, str(tmp_path / "out"), "--dry-run")
    assert "missing" not in line and "video" in line
