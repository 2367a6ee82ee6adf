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
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from cells import CellsearchError
from dashboards._landing import announce
from dashboards._links import is_server_uri
from dashboards._store_lock import store_creation_lock
from dashboards._tracking_ops import artifacts_folder

STARTUP_TIMEOUT = 180.0
"""Seconds to wait for the UI to answer (a first start creates the MLflow tables)."""
STOP_GRACE = 3.0
"""Seconds the server's process group gets to exit on SIGTERM before it is killed."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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


def server_environment() -> dict[str, str]:
    """The server's environment: ours, without MLflow's job runner (a pool of worker processes
    for GenAI scorers that the UI of cellsearch's runs never uses) unless the user asks for it."""
    return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}


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
    open_browser: bool = False,
) -> int:
    """Run the UI until it exits, or until SIGINT (Ctrl-C) or SIGTERM stops it (exit code 0);
    returns the exit code for the command. The address printed (and opened in a browser
    with ``open_browser``) is the latest job's runs page (:mod:`dashboards._landing`).

    The server runs in a session (process group) of its own, and stopping stops the whole
    group: the server and every worker it started, so the port is free when this returns.
    Both signals get handlers here, also when the parent ignored SIGINT (``cellsearch
    dashboard &`` in a script), so that either one stops the UI.
    """
    if is_server_uri(tracking_uri):
        echo(f"the tracking store is an MLflow server; its UI is at {tracking_uri.rstrip('/')}")
        return 0
    _check_port_free(host, port)
    url = dashboard_url(host, port)
    process: subprocess.Popen[bytes] | None = None
    # Signal handlers can only be set on the main thread (a test may call serve from another).
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, _raise_stop) for sig in STOP_SIGNALS} if main else {}
    try:
        _prepare_store(tracking_uri)
        process = subprocess.Popen(
            server_command(tracking_uri, host=host, port=port),
            start_new_session=True,
            env=server_environment(),
        )
        _wait_until_up(process, url, timeout)
        announce(tracking_uri, url, echo, open_browser)
        return process.wait()
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        for sig in previous:  # a second signal must not cut the stopping short
            signal.signal(sig, signal.SIG_IGN)
        if process is not None:
            stop_process_group(process)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Stop(Exception):
    """SIGTERM (or SIGINT) arrived: unwind ``serve`` and stop the server."""


def _raise_stop(signum: int, _frame: object) -> None:
    raise _Stop(signum)


def _prepare_store(tracking_uri: str) -> None:
    """Create a fresh store's tables here, under the lock the trackers take, so that a job
    starting at the same time does not race the server's own creation of them."""
    artifacts = artifacts_folder(tracking_uri)
    if artifacts is None:
        return
    artifacts.mkdir(parents=True, exist_ok=True)
    from mlflow import MlflowClient

    try:
        with store_creation_lock(tracking_uri):
            MlflowClient(tracking_uri=tracking_uri)
    except Exception as exc:  # a damaged store, a newer MLflow's schema: one line, no traceback
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise DashboardError(f"--mlflow: cannot open the MLflow store {tracking_uri}: {reason}") from None


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


def stop_process_group(process: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> None:
    """Stop a process started with ``start_new_session=True`` and everything in its group:
    SIGTERM to the group, SIGKILL to what is left after ``grace`` seconds."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return  # the group is gone already
    deadline = time.monotonic() + grace
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    while time.monotonic() < deadline and _group_alive(process.pid):
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
