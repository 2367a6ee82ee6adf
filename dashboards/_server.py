"""``cellsearch dashboard``: the MLflow UI on the tracking store.

A store that is a file or a database gets an ``mlflow server`` child process, bound to
127.0.0.1 unless told otherwise, its artifacts kept in ``mlartifacts`` beside a SQLite
file (where the tracker puts them too). A store that is already an MLflow server is the
dashboard: its URL is printed and nothing is started.

Example:
    >>> server_command("sqlite:////data/mlflow.db", host="127.0.0.1", port=5000)[3:9]
    ['server', '--backend-store-uri', 'sqlite:////data/mlflow.db', '--host', '127.0.0.1', '--port']
    >>> dashboard_url("0.0.0.0", 5000)
    'http://127.0.0.1:5000'
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from cells import CellsearchError
from dashboards._links import is_server_uri
from dashboards._tracking_ops import artifacts_folder

STARTUP_TIMEOUT = 180.0
"""Seconds to wait for the UI to answer (a first start creates the MLflow tables)."""


class DashboardError(CellsearchError, RuntimeError):
    """The UI cannot be started (port taken, server exited); the message says why."""


def server_command(tracking_uri: str, *, host: str, port: int, workers: int = 1) -> list[str]:
    """The ``mlflow server`` command line for a store."""
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri]
    command += ["--host", host, "--port", str(port), "--workers", str(workers)]
    artifacts = artifacts_folder(tracking_uri)
    if artifacts is not None:
        command += ["--artifacts-destination", artifacts.as_uri()]
    return command


def dashboard_url(host: str, port: int) -> str:
    """Where a browser on this machine finds the UI (a wildcard bind is reached at 127.0.0.1)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def serve(
    tracking_uri: str,
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    echo: Callable[[str], object] = print,
    timeout: float = STARTUP_TIMEOUT,
) -> int:
    """Run the UI until it exits or Ctrl-C; returns the exit code for the command."""
    if is_server_uri(tracking_uri):
        echo(f"the tracking store is an MLflow server; its UI is at {tracking_uri.rstrip('/')}")
        return 0
    _check_port_free(host, port)
    artifacts = artifacts_folder(tracking_uri)
    if artifacts is not None:
        artifacts.mkdir(parents=True, exist_ok=True)
    url = dashboard_url(host, port)
    process = subprocess.Popen(server_command(tracking_uri, host=host, port=port))
    try:
        _wait_until_up(process, url, timeout)
        echo(f"MLflow UI at {url} (store: {tracking_uri}); Ctrl-C stops it")
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(process)


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the server will: connections of an earlier server in TIME_WAIT do not block the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise DashboardError(
                f"--port: cannot listen on {host}:{port} ({exc.strerror}); pick another port"
            ) from None


def _wait_until_up(process: subprocess.Popen[bytes], url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise DashboardError(
                f"mlflow server exited with code {code} before answering (see its output above)"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.5)
    raise DashboardError(f"mlflow server did not answer at {url} within {timeout:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
