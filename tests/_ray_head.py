"""A Ray head node for tests that run the ``cellsearch`` command in subprocesses, and the
helpers those tests share: start the command in its own process group, read the SQLite file
while the job writes it, wait for a condition, kill.

The head runs ``ray start --head`` with token authentication, as a cluster runs it, so a
killed driver leaves nothing behind but its database rows.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120
JOB_TIMEOUT_S = 300


@dataclass
class RayHead:
    address: str
    env: dict[str, str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def ray_head_node() -> Iterator[RayHead]:
    """A Ray head node (2 CPUs) in a process group of its own, for the length of the block."""
    pytest.importorskip("ray")
    port = free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-"))  # short: Ray's socket paths are length-limited
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": str(REPO),
    }
    env.pop("RAY_ADDRESS", None)
    log = temp_dir / "head.log"
    args = ["--head", "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false"]
    with log.open("wb") as out:
        head = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ray.scripts.scripts",
                "start",
                "--block",
                *args,
                "--temp-dir",
                str(temp_dir),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start failed:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield RayHead(address=f"127.0.0.1:{port}", env=env)
    finally:
        kill_group(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def kill_group(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    process.wait(timeout=60)


def cellsearch(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", "from cellsearch._cli import main; main()", *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own group: the test can end it and anything it started
        )


def rows(db: Path, sql: str) -> list[tuple]:
    """``sql`` on the SQLite file ``db``, read-only while a job writes it (empty before its schema)."""
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:  # the schema is not there yet
            return []


def count(db: Path, status: str) -> int:
    """Trials of ``status`` in the SQLite results file ``db`` (0 before its schema exists)."""
    found = rows(db, f"SELECT count(*) FROM cs_trials WHERE status = '{status}'")
    return int(found[0][0]) if found else 0


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"cellsearch exited ({process.returncode}) before {what}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


def finish(process: subprocess.Popen[bytes], log: Path) -> int:
    """The exit code of ``process``; kills it and fails the test if it runs past the job timeout."""
    try:
        return process.wait(timeout=JOB_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        kill_group(process)
        pytest.fail(f"cellsearch did not finish:\n{log.read_text()[-4000:]}")
