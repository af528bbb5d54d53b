"""Which Ray cluster a run uses: a private instance unless told otherwise, and one line, exit 2, in seconds, when
the cluster it was told to use cannot be reached (a stale address, a port that is not Ray)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.support.helpers import free_port
from vidbatch.core.errors import ClusterError
from vidbatch.engines.ray_connect import check_reachable, cluster_address

ENV = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "TF_CPP_MIN_LOG_LEVEL": "3",
       "RAY_USAGE_STATS_ENABLED": "0"}


def label(manifest, bundle, out, *extra, env=ENV, timeout=300):
    return subprocess.run([sys.executable, "-m", "vidbatch.cli", "label", manifest, "--model", bundle, "--out", str(out),
                           "--engine", "ray", "--fps", "5", "--batch-size", "8", "--no-progress", *extra],
                          capture_output=True, text=True, env=env, timeout=timeout)


def test_address_comes_from_the_option_then_ray_address_else_a_private_instance(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cluster_address(None) == "local"
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert cluster_address(None) == "127.0.0.1:6379"  # what `ray job submit` sets for its job
    assert cluster_address("127.0.0.1:7000") == "127.0.0.1:7000"


def test_a_malformed_address_is_refused_in_words():
    with pytest.raises(ClusterError, match="Received: 'nowhere'"):
        check_reachable("nowhere")


@pytest.fixture
def silent_listener():
    """A port on 127.0.0.1 that accepts connections and never says a word (a hung or unrelated process)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


@pytest.mark.parametrize("where", ["refused", "silent"])
def test_an_unreachable_cluster_is_one_line_and_exit_2_before_the_model_loads(where, synth_set, colour_bundle, tmp_path,
                                                                               request):
    address = f"127.0.0.1:{free_port()}" if where == "refused" else request.getfixturevalue("silent_listener")
    started = time.monotonic()
    result = label(synth_set, colour_bundle, tmp_path / "out", "--ray-address", address, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vidbatch: error: Cannot connect to the Ray cluster"), lines
    assert time.monotonic() - started < 30
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_run_beside_another_cluster_uses_its_own_instance(synth_set, colour_bundle, tmp_path):
    """`ray start` on this machine leaves an address file that a bare `ray.init()` would join; the run must start
    its own instance, with every local CPU, and say so in run.json."""
    ray_bin = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    started = subprocess.run([ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={free_port()}",
                              "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats"],
                             capture_output=True, text=True, env=ENV, timeout=120)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        result = label(synth_set, colour_bundle, tmp_path / "out")
        assert result.returncode == 0, result.stderr[-3000:]
        stages = json.load(open(tmp_path / "out" / "run.json"))["stages"]
        assert stages["ray"] == {"address": "local", "private_instance": True}
        assert stages["layout"]["cluster_cpus"] == len(os.sched_getaffinity(0))  # not the other cluster's 1 CPU
        # a healthy run with --no-progress says nothing on stderr: none of Ray's healthy-run lines
        noise = [line for line in result.stderr.splitlines() if line.strip()]
        assert noise == [], noise[:5]
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, env=ENV, timeout=120)
