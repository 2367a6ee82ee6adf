"""A real two-node Ray cluster on this machine, as the compose deployment builds one.

``ray start --head`` and ``ray start --address`` run as two separate nodes with token
authentication on (``RAY_AUTH_MODE=token`` and one ``RAY_AUTH_TOKEN`` for every node and
the driver, as ``docker-compose.yml`` sets them). Each node offers one ``gpu_slot``, a
custom resource standing in for a GPU, so work that asks for a slot must spread over both
nodes. Drivers run in subprocesses: a Ray driver belongs to one cluster per process, and
other tests may hold a local instance in the pytest process.

The last test launches a real job on the cluster through ``docker/entrypoint.sh``, as the
compose ``search`` service does, and finds its trials on both nodes and in PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT_S = 90
NODE_RESOURCES = json.dumps({"gpu_slot": 1})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RayCluster:
    address: str
    env: dict[str, str]
    node_logs: list[Path]


def _start_node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``ray start ... --block`` in its own process group, so the test can end exactly it."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _wait_started(process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "Ray runtime started" in text:
            return
        if process.poll() is not None:
            pytest.fail(f"ray start exited with {process.returncode}:\n{text[-3000:]}")
        time.sleep(0.5)
    pytest.fail(
        f"ray start did not come up within {START_TIMEOUT_S} s:\n{log.read_text(errors='replace')[-3000:]}"
    )


def _stop_node(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    # The whole process group: `ray start --block` and the raylet, GCS and workers it spawned.
    # Not `ray stop`, which would also end Ray instances other tests own.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _run_driver(cluster: RayCluster, code: str, timeout: float = 120) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"driver failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    pytest.importorskip("ray")
    port = _free_port()
    # Short: Ray's unix sockets live under the temp dir and their paths are limited to ~100 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-"))
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.pop("RAY_ADDRESS", None)
    common = ["--num-cpus", "1", "--resources", NODE_RESOURCES]
    head_log, worker_log = temp_dir / "head.log", temp_dir / "worker.log"
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        head_args = [
            "--head",
            "--port",
            str(port),
            "--include-dashboard",
            "false",
            "--temp-dir",
            str(temp_dir),
        ]
        nodes.append(_start_node([*head_args, *common, "--disable-usage-stats"], env, head_log))
        _wait_started(nodes[0], head_log)
        worker_args = ["--address", f"127.0.0.1:{port}", *common, "--disable-usage-stats"]
        nodes.append(_start_node(worker_args, env, worker_log))
        _wait_started(nodes[1], worker_log)
        yield RayCluster(address=f"127.0.0.1:{port}", env=env, node_logs=[head_log, worker_log])
    finally:
        for node in reversed(nodes):
            _stop_node(node)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_tasks_needing_a_slot_run_on_both_nodes(ray_cluster: RayCluster) -> None:
    out = _run_driver(
        ray_cluster,
        f"""
        import json, time
        import ray

        ray.init(address={ray_cluster.address!r}, logging_level="ERROR")
        deadline = time.monotonic() + 60
        while sum(node["Alive"] for node in ray.nodes()) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)

        @ray.remote(num_cpus=1, resources={{"gpu_slot": 1}})
        def where(seconds):
            time.sleep(seconds)  # holds its slot, so the next task must go to the other node
            return ray.get_runtime_context().get_node_id()

        alive = sorted(node["NodeID"] for node in ray.nodes() if node["Alive"])
        ran_on = ray.get([where.remote(2.0) for _ in range(2)])
        total = ray.cluster_resources()
        print(json.dumps({{"alive": alive, "ran_on": ran_on, "gpu_slots": total.get("gpu_slot")}}))
        """,
    )
    report = json.loads(out.strip().splitlines()[-1])
    assert len(report["alive"]) == 2
    assert report["gpu_slots"] == 2.0
    # Two tasks each holding the only slot of a node at the same time: one per node.
    assert sorted(report["ran_on"]) == report["alive"]


def test_a_driver_with_another_token_is_refused(ray_cluster: RayCluster) -> None:
    env = {**ray_cluster.env, "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    code = f"import ray; ray.init(address={ray_cluster.address!r}); print('connected', flush=True)"
    # Ray retries a refused connection for about 20 s before giving up: read its output until
    # the refusal shows, then end the driver.
    driver = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert driver.stdout is not None
    seen: list[str] = []
    try:
        for line in driver.stdout:
            seen.append(line)
            if "InvalidAuthToken" in line or line.startswith("connected"):
                break
    finally:
        driver.kill()
        driver.wait(timeout=30)
    output = "".join(seen)
    assert "InvalidAuthToken" in output, output[-3000:]
    assert "connected" not in [line.strip() for line in seen]


# -- a real job on the cluster, launched as the compose `search` service launches it ----------

ENTRYPOINT = Path(__file__).resolve().parents[1] / "docker" / "entrypoint.sh"

CLUSTER_JOB = """\
name: two-node-smoke
description: Two library cells, two trials each, spread over a two-node cluster.
strategy: {kind: fixed, cells: [gru, lstm]}
baselines: [gru]
tasks:
  - name: memorize
    settings: {min_length: 3, max_length: 5, symbols: 4, valid_size: 32, test_size: 32}
    budget: {max_steps: 20, eval_every: 20, eval_batch_size: 32}
trials_per_task: 2
hparams: {hidden_size: 16, num_layers: 1, batch_size: 16}
resources: {cpus: 1, custom: {gpu_slot: 1}}
device: cpu
"""

LIST_NODES = """
import json, ray
ray.init(logging_level="ERROR")
print(json.dumps({node["NodeID"]: node["Resources"] for node in ray.nodes() if node["Alive"]}))
"""


def _cellsearch_command() -> str:
    """The installed ``cellsearch`` script of this interpreter's environment."""
    beside_python = Path(sys.executable).parent / "cellsearch"
    found = str(beside_python) if beside_python.exists() else shutil.which("cellsearch")
    assert found, "the cellsearch script is not installed (pip install -e .)"
    return found


@pytest.mark.postgres
def test_launch_spreads_trials_over_both_nodes_and_stores_them_in_postgres(
    ray_cluster: RayCluster, fresh_postgres_url: str, tmp_path: Path
) -> None:
    """`cellsearch launch` through docker/entrypoint.sh, which first joins the cluster as a
    node with no resources (a Ray driver must run on a node), as the `search` service does."""
    psycopg = pytest.importorskip("psycopg")
    job = tmp_path / "cluster.yaml"
    job.write_text(CLUSTER_JOB)
    env = {
        **ray_cluster.env,
        "CELLSEARCH_JOIN_RAY": "1",
        "RAY_ADDRESS": ray_cluster.address,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    command = [_cellsearch_command(), "launch", str(job), "--ray-address", ray_cluster.address]
    launch = subprocess.Popen(
        [str(ENTRYPOINT), *command, "--db", fresh_postgres_url],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # the joined node's processes stay in this group, ended below
    )
    try:
        out, err = launch.communicate(timeout=300)
        nodes = json.loads(_run_driver(RayCluster(ray_cluster.address, env, []), LIST_NODES).splitlines()[-1])
    finally:
        _stop_node(launch)
    assert launch.returncode == 0, f"launch failed:\n{out[-4000:]}\n{err[-4000:]}"

    # The driver's node joined with nothing to schedule on; the two worker nodes have a slot each.
    assert len(nodes) == 3
    slotted = {node for node, res in nodes.items() if res.get("gpu_slot")}
    (driver_node,) = set(nodes) - slotted
    assert not nodes[driver_node].get("CPU") and not nodes[driver_node].get("GPU")

    dsn = fresh_postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        trials = conn.execute("SELECT status, worker_node, value FROM cs_trials").fetchall()
        job_states = conn.execute("SELECT state FROM cs_jobs").fetchall()
    assert job_states == [("finished",)]
    assert len(trials) == 4  # two cells x two trials
    assert all(status == "ok" for status, _, _ in trials), trials
    assert all(value is not None and 0.0 <= value <= 1.0 for _, _, value in trials), trials
    assert {node for _, node, _ in trials} == slotted, "trials did not run on both worker nodes"
