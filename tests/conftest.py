import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from tests.support.helpers import (  # noqa: E402
    SHARED_VIDEOS,
    free_port,
    make_colour_bundle,
    shared_videos,
)


@pytest.fixture(scope="session")
def synth_set(tmp_path_factory):
    """3 classes x 2 short videos (96x72, 2 s at 25 fps) with a labeled manifest."""
    from vidbatch.apps.synth import SynthSpec, make_dataset

    folder = tmp_path_factory.mktemp("synth")
    manifest = make_dataset(str(folder), videos_per_class=2, seed=7, spec=SynthSpec(width=96, height=72, seconds=2.0))
    return manifest


@pytest.fixture(scope="session")
def colour_bundle(tmp_path_factory):
    return make_colour_bundle(str(tmp_path_factory.mktemp("bundle") / "colour"))


@pytest.fixture
def shared_video_paths():
    paths = shared_videos()
    if not paths:
        pytest.skip(f"shared real videos not present at {os.path.abspath(SHARED_VIDEOS)}")
    return paths


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 HTTP endpoint: moto in server mode on 127.0.0.1, on a free port (as s3fs's own tests do)."""
    import shutil
    import subprocess
    import time
    import urllib.request

    port = free_port()
    command = [shutil.which("moto_server") or "moto_server", "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            break
        except Exception:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("moto_server did not start")
            time.sleep(0.1)
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing-key-id",
                       "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_DEFAULT_REGION": "us-east-1"})
    yield endpoint
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def s3(s3_endpoint):
    """A fresh s3fs filesystem and bucket on the moto server."""
    import uuid

    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    bucket = f"vidbatch-{uuid.uuid4().hex[:10]}"
    fs.mkdir(bucket)
    return fs, bucket
