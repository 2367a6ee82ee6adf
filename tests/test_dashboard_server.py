"""``cellsearch dashboard`` stops as a whole: real processes, a real MLflow server.

The command runs as ``python -m cellsearch dashboard`` on a free port; once the UI answers,
the test records every process below it (read from ``/proc``), sends SIGTERM or SIGINT, and
checks that none of them is left and that the port can be bound again within 5 s. SIGINT is
also sent to a dashboard started with SIGINT ignored, as ``cellsearch dashboard &`` in a
script starts it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STARTUP = 240.0  # a first start on a busy machine imports MLflow twice and creates its tables
STOPPED_WITHIN = 5.0

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stat(pid: int) -> tuple[int, int, str, int] | None:
    """(parent pid, process group, state, start time) of a live process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[2]), fields[0], int(fields[19])


def processes() -> dict[int, tuple[int, int, str, int]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            found[int(entry)] = stat
    return found


def descendants(root: int) -> dict[int, tuple[int, int, str, int]]:
    table = processes()
    found: dict[int, tuple[int, int, str, int]] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, stat in table.items():
            if stat[0] == parent and pid not in found:
                found[pid] = stat
                frontier.append(pid)
    return found


def left_over(before: dict[int, tuple[int, int, str, int]]) -> list[int]:
    """Recorded processes still running (a zombie holds no port and is no longer running)."""
    left = []
    for pid, (_, _, _, started) in before.items():
        now = _stat(pid)
        if now is not None and now[3] == started and now[2] not in ("Z", "X"):
            left.append(pid)
    return left


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def start_dashboard(
    tmp_path: Path, port: int, preexec: Callable[[], object] | None = None
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "cellsearch", "dashboard", "--port", str(port)]
    command += ["--mlflow", f"sqlite:///{tmp_path}/mlflow.db"]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + STARTUP
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if line.startswith("MLflow UI at "):
            assert seen == [line], seen  # the address line comes first: the server logs to a file
            return process
    process.kill()
    pytest.fail("the dashboard did not start:\n" + "".join(seen[-20:]))


def stop_and_check(process: subprocess.Popen[str], sig: signal.Signals, port: int) -> None:
    tree = descendants(process.pid)
    try:
        assert tree, "the dashboard started no server"
        server_groups = {group for _, group, _, _ in tree.values()}
        assert os.getpgid(process.pid) not in server_groups  # the server runs in a group of its own
        process.send_signal(sig)
        sent = time.monotonic()
        while time.monotonic() - sent < STOPPED_WITHIN and (left_over(tree) or not port_free(port)):
            time.sleep(0.1)
        left = left_over(tree)
        assert left == [], f"left running after {sig.name}: {left}"
        assert port_free(port), f"port {port} still taken {STOPPED_WITHIN} s after {sig.name}"
        assert process.wait(timeout=10) == 0
    finally:
        for pid in left_over(tree):
            os.kill(pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
    assert process.stdout is not None
    assert "Traceback" not in process.stdout.read()


def test_sigterm_stops_the_server_and_all_its_workers(tmp_path: Path) -> None:
    # SIGINT's whole tree is checked below, in the harder case of a dashboard started with
    # SIGINT ignored; a plain Ctrl-C's exit by the address test.
    port = free_port()
    process = start_dashboard(tmp_path, port)
    stop_and_check(process, signal.SIGTERM, port)


def test_sigint_stops_a_dashboard_started_with_sigint_ignored(tmp_path: Path) -> None:
    port = free_port()
    process = start_dashboard(tmp_path, port, preexec=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    stop_and_check(process, signal.SIGINT, port)


def test_the_address_comes_first_and_ctrl_c_ends_quietly(tmp_path: Path) -> None:
    """stdout starts with the address line (the server's logging is in its log file, named on
    the next line); the address answers HTTP; SIGINT ends the command within a few seconds
    with exit code 0 and nothing on stderr about ignored exceptions or tracebacks."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "cellsearch", "dashboard", "--port", str(port)]
    command += ["--mlflow", f"sqlite:///{tmp_path}/mlflow.db"]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        first = process.stdout.readline()  # blocks until the server answers (or the command ends)
        url = f"http://127.0.0.1:{port}"
        assert first.startswith(f"MLflow UI at {url}"), first + process.stderr.read()
        log = tmp_path / "mlflow-server.log"
        assert process.stdout.readline() == f"server log: {log} (--verbose shows it here)\n"
        with urllib.request.urlopen(f"{url}/health", timeout=10) as answer:
            assert answer.status == 200
        assert log.stat().st_size > 0  # the server's own logging went there
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=STOPPED_WITHIN + 5) == 0
        assert port_free(port)
    finally:
        if process.poll() is None:
            process.kill()
    errors = process.stderr.read()
    assert "Exception ignored" not in errors and "Traceback" not in errors, errors
    assert process.stdout.read() == ""  # nothing of the server's after the address either
