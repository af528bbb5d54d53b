import os

import fsspec
import pytest

from vidbatch.io import storage


def test_url_to_fs_handles_local_memory_and_unknown():
    fs, path = storage.url_to_fs("memory://bucket/x.csv")
    assert path.endswith("bucket/x.csv") and not storage.is_local(fs)
    fs, path = storage.url_to_fs("/tmp/a")
    assert storage.is_local(fs) and path == "/tmp/a"
    with pytest.raises(ValueError, match="unknown URL scheme 'nope'"):
        storage.url_to_fs("nope://x")


def test_atomic_write_leaves_no_temporary(tmp_path):
    fs, path = storage.url_to_fs(str(tmp_path / "sub" / "f.bin"))
    storage.atomic_write_bytes(fs, path, b"hello")
    storage.atomic_write_bytes(fs, path, b"world")
    assert open(path, "rb").read() == b"world"
    assert os.listdir(tmp_path / "sub") == ["f.bin"]


def test_atomic_write_on_memory_filesystem():
    fs, path = storage.url_to_fs("memory://atomic/f.bin")
    storage.atomic_write_bytes(fs, path, b"x" * 10)
    assert fs.cat_file(path) == b"x" * 10


def test_resolve_relative_to_manifest_folder():
    assert storage.resolve("videos/a.mp4", "/data/set") == "/data/set/videos/a.mp4"
    assert storage.resolve("/abs/a.mp4", "/data/set") == "/abs/a.mp4"
    assert storage.resolve("s3://b/a.mp4", "/data/set") == "s3://b/a.mp4"
    assert storage.resolve("a.mp4", "s3://bucket/dir") == "s3://bucket/dir/a.mp4"


def test_local_copy_of_remote_file_is_cleaned_up():
    with fsspec.open("memory://copy/v.bin", "wb") as handle:
        handle.write(b"abc")
    with storage.local_copy("memory://copy/v.bin") as local:
        assert open(local, "rb").read() == b"abc"
        kept = local
    assert not os.path.exists(kept)


def test_redact_nested():
    out = storage.redact({"key": "k", "secret": "s", "client_kwargs": {"aws_secret_access_key": "x", "region_name": "r"}})
    assert out == {"key": "***", "secret": "***", "client_kwargs": {"aws_secret_access_key": "***", "region_name": "r"}}


def test_storage_options_reach_remote_filesystems_only():
    fs, _ = storage.url_to_fs("/tmp/x", {"key": "k", "secret": "s"})
    assert storage.is_local(fs)  # local paths ignore credentials instead of failing on them
    fs, _ = storage.url_to_fs("s3://bucket/x", {"key": "k-123", "secret": "s", "endpoint_url": "http://127.0.0.1:9"})
    assert fs.storage_options["key"] == "k-123"
    fs, _ = storage.url_to_fs("http://127.0.0.1:9/x.mp4", {"block_size": 1234})
    assert fs.storage_options.get("block_size") == 1234  # any other fsspec filesystem gets the options
