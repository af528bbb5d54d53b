"""A real multi-node Ray cluster on this machine: node loss, driver SIGKILL, `ray job submit`."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

import vidbatch
from tests.support.helpers import free_port as _free_port
from tests.support.raytools import assert_same_answers
from vidbatch.io.output import RunOutput

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    from vidbatch.apps.synth import SynthSpec, make_dataset

    folder = tmp_path_factory.mktemp("archive")
    return make_dataset(str(folder), videos_per_class=6, seed=5, spec=SynthSpec(width=96, height=72, seconds=4))


@pytest.fixture(scope="module")
def local_answers(archive, colour_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    result = vidbatch.label(archive, colour_bundle, str(out), fps=10, batch_size=8, progress=False)
    assert result.ok == 18
    return out


def ledger_size(out):
    """Videos committed so far, as the product counts them."""
    return len(RunOutput(str(out)).committed()) if os.path.isdir(out) else 0


def alive_actors(ray_head) -> set[str]:
    """The cluster's live actors that die with their job (not detached ones, such as Ray Data's stats actor),
    through its state API (the dashboard, which may still be starting)."""
    deadline = time.monotonic() + 120
    while True:
        listed = subprocess.run([ray_head["ray"], "list", "actors", "--address", ray_head["jobs"], "--filter",
                                 "state=ALIVE", "--detail", "--format", "json", "--limit", "10000"],
                                capture_output=True, text=True, env=ENV, timeout=120)
        if listed.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert listed.returncode == 0, listed.stderr[-2000:]
    if not listed.stdout.lstrip().startswith("["):  # "No resource in the cluster"
        return set()
    return {actor["actor_id"] for actor in json.loads(listed.stdout) if not actor.get("is_detached")}


def wait_for_actors_to_die(ray_head, keep: set[str], timeout_s: float = 120) -> None:
    """Ray kills a dead driver's actors a moment after it dies; until then a committer may still commit the
    finished videos it holds (as it should), so the ledger is only final once they are gone."""
    deadline = time.monotonic() + timeout_s
    while (left := alive_actors(ray_head) - keep) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"the killed driver's actors are still alive after {timeout_s} s: {sorted(left)}"


def test_worker_node_removed_mid_job_loses_nothing(archive, colour_bundle, local_answers, tmp_path):
    """Head + two worker nodes (ray.cluster_utils.Cluster); one worker node is removed mid-job."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=2)
        doomed = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 3
        out = tmp_path / "out"
        outcome = {}
        job = threading.Thread(target=lambda: outcome.update(result=vidbatch.label(
            archive, colour_bundle, str(out), engine="ray", fps=10, batch_size=8, progress=False,
                commit_videos=2)))  # small commits, so that the node is removed between two of them
        job.start()
        deadline = time.monotonic() + 180
        while ledger_size(out) < 2 and time.monotonic() < deadline and job.is_alive():
            time.sleep(0.05)
        done_at_removal = ledger_size(out)
        cluster.remove_node(doomed)
        job.join(timeout=300)
        assert not job.is_alive(), "the job did not finish after losing a node"
        assert 0 < done_at_removal < 18, "the node must be removed mid-job"
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        result = outcome["result"]
        assert (result.ok, result.failed) == (18, 0)
        assert_same_answers(out, local_answers)
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def ray_head():
    """A `ray start --head` cluster on 127.0.0.1 with its job server (dashboard), token auth on."""
    import secrets

    port, dashboard = _free_port(), _free_port()
    ENV.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)})
    ray_bin = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    started = subprocess.run(
        [ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", "--disable-usage-stats"],
        capture_output=True, text=True, env=ENV, timeout=120,
    )
    assert started.returncode == 0, started.stderr[-2000:]
    yield {"gcs": f"127.0.0.1:{port}", "jobs": f"http://127.0.0.1:{dashboard}", "ray": ray_bin}
    subprocess.run([ray_bin, "stop", "--force"], capture_output=True, env=ENV, timeout=120)


def test_ray_job_submit(ray_head, archive, colour_bundle, local_answers, tmp_path):
    out = tmp_path / "job"
    submitted = subprocess.run(
        [ray_head["ray"], "job", "submit", "--address", ray_head["jobs"], "--working-dir", ROOT, "--",
         "python", "jobs/label_archive.py", "--manifest", archive, "--model", colour_bundle, "--out", str(out),
         "--fps", "10", "--batch-size", "8"],
        capture_output=True, text=True, env=ENV, timeout=400,
    )
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    assert "18 videos: 18 ok, 0 failed" in submitted.stdout
    assert_same_answers(out, local_answers)


def test_driver_sigkill_then_resume(ray_head, archive, colour_bundle, local_answers, tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "vidbatch.cli", "label", archive, "--model", colour_bundle, "--out", str(out),
            "--engine", "ray", "--ray-address", ray_head["gcs"], "--fps", "10", "--batch-size", "8", "--no-progress", "--commit-videos", "2"]
    before = alive_actors(ray_head)
    driver = subprocess.Popen(args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    while ledger_size(out) < 3 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    wait_for_actors_to_die(ray_head, before)
    done = ledger_size(out)
    for _ in range(20):  # and a commit a dying worker was still writing has landed (or never will)
        time.sleep(1)
        if ledger_size(out) == done:
            break
        done = ledger_size(out)
    assert 3 <= done < 18, f"the kill must land mid-run (ledger had {done})"
    assert not (out / "summary.parquet").exists()
    resumed = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"({done} already done in an earlier run)" in resumed.stdout
    assert_same_answers(out, local_answers)
