"""``cellsearch dashboard``: the MLflow UI on the tracking store.

A store that is a file or a database gets an ``mlflow server`` child process, bound to
127.0.0.1 unless told otherwise, its artifacts kept in ``mlartifacts`` beside a SQLite
file (where the tracker puts them too). A store that is already an MLflow server is the
dashboard: its URL is printed and nothing is started.

The server's own output (MLflow's and uvicorn's logging) goes to a log file, named on the
line after the address (:func:`server_log_path`), unless ``verbose``; the address is printed
as soon as the server answers its health check. A stop by Ctrl-C or SIGTERM is the normal
end of a dashboard: the command exits 0.

Example:
    >>> server_command("sqlite:////data/mlflow.db", host="127.0.0.1", port=5000)[3:9]
    ['server', '--backend-store-uri', 'sqlite:////data/mlflow.db', '--host', '127.0.0.1', '--port']
    >>> dashboard_url("0.0.0.0", 5000)
    'http://127.0.0.1:5000'
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

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
    verbose: bool = False,
    open_browser: bool = False,
) -> int:
    """Run the UI until it exits, or until SIGINT (Ctrl-C) or SIGTERM stops it (exit code 0);
    returns the exit code for the command. The address printed (and opened in a browser
    with ``open_browser``) is the latest job's runs page (:mod:`dashboards._landing`).

    The server runs in a session (process group) of its own, and stopping stops the whole
    group: the server and every worker it started, so the port is free when this returns.
    Both signals get handlers here, also when the parent ignored SIGINT (``cellsearch
    dashboard &`` in a script), so that either one stops the UI. ``verbose``: the server's
    output is shown here rather than written to :func:`server_log_path`.
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
    log_path = None if verbose else server_log_path(tracking_uri, port)
    log: IO[bytes] | None = None
    try:
        _prepare_store(tracking_uri, quiet=not verbose)
        log = _open_log(log_path)
        process = subprocess.Popen(
            server_command(tracking_uri, host=host, port=port),
            start_new_session=True,
            env=server_environment(),
            stdout=log,
            stderr=None if log is None else subprocess.STDOUT,
        )
        _wait_until_up(process, url, timeout, log_path)
        announce(tracking_uri, url, echo, open_browser)
        if log_path is not None:
            echo(f"server log: {log_path} (--verbose shows it here)")
        return process.wait()
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        for sig in previous:  # a second signal must not cut the stopping short
            signal.signal(sig, signal.SIG_IGN)
        if process is not None:
            stop_process_group(process)
        if log is not None:
            log.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Stop(Exception):
    """SIGTERM (or SIGINT) arrived: unwind ``serve`` and stop the server."""


def _raise_stop(signum: int, _frame: object) -> None:
    raise _Stop(signum)


def _prepare_store(tracking_uri: str, quiet: bool = True) -> None:
    """Create a fresh store's tables here, under the lock the trackers take, so that a job
    starting at the same time does not race the server's own creation of them (``quiet``:
    without MLflow's and Alembic's lines about creating them)."""
    artifacts = artifacts_folder(tracking_uri)
    if artifacts is None:
        return
    artifacts.mkdir(parents=True, exist_ok=True)
    from mlflow import MlflowClient

    try:
        with store_creation_lock(tracking_uri), _quiet_loggers(quiet):
            MlflowClient(tracking_uri=tracking_uri)
    except Exception as exc:  # a damaged store, a newer MLflow's schema: one line, no traceback
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise DashboardError(f"--mlflow: cannot open the MLflow store {tracking_uri}: {reason}") from None


@contextlib.contextmanager
def _quiet_loggers(quiet: bool) -> Iterator[None]:
    """MLflow's and Alembic's info lines held back while the block runs (when ``quiet``)."""
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")] if quiet else []
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


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


def server_log_path(tracking_uri: str, port: int) -> Path:
    """Where the server's output goes: ``mlflow-server.log`` beside a SQLite store (next to its
    ``mlartifacts``), else ``cellsearch-dashboard-PORT.log`` in the temporary folder."""
    artifacts = artifacts_folder(tracking_uri)
    if artifacts is not None:
        return artifacts.parent / "mlflow-server.log"
    return Path(tempfile.gettempdir()) / f"cellsearch-dashboard-{port}.log"


def _open_log(path: Path | None) -> IO[bytes] | None:
    if path is None:
        return None
    try:
        return path.open("ab")
    except OSError as exc:
        raise DashboardError(f"cannot write the server log {path}: {exc.strerror or exc}") from None


def _wait_until_up(process: subprocess.Popen[bytes], url: str, timeout: float, log: Path | None) -> None:
    """Poll the health endpoint (often: the address is printed as soon as the server answers)."""
    deadline = time.monotonic() + timeout
    where = "its output above" if log is None else log
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise DashboardError(f"mlflow server exited with code {code} before answering (see {where})")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
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


def ignore_further_interrupts() -> None:
    """Once the server is stopped, a further Ctrl-C cannot interrupt the interpreter's exit
    (where it would print "Exception ignored in threading" while MLflow's threads finish)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
