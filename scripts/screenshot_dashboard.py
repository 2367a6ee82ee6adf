"""Take a PNG screenshot of the MLflow dashboard (for the docs) with headless Chromium.

Starts ``cellsearch dashboard`` on a tracking store (or uses a running UI), opens a page of
it (by default the address the dashboard prints: the latest job's architectures), waits for
the app to render and saves a screenshot; the server it started is stopped. ``--run NAME``
opens that run's page in the latest job's experiment (an architecture: ``arch-5``).

    python scripts/screenshot_dashboard.py --mlflow sqlite:///mlflow.db -o docs/images/dashboard-runs.png
    python scripts/screenshot_dashboard.py --mlflow sqlite:///mlflow.db --run arch-1-gru \
        -o docs/images/dashboard-architecture.png
    python scripts/screenshot_dashboard.py --url http://127.0.0.1:5000 --page '#/experiments/1/runs'

Needs a Chromium binary (``chromium``, ``chromium-browser`` or ``google-chrome`` on PATH).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def browser_command(
    browser: str,
    url: str,
    profile: Path,
    *,
    screenshot: Path | None = None,
    window: str = "1400,900",
    budget_ms: int = 15000,
) -> list[str]:
    """Headless Chromium that renders ``url`` for ``budget_ms`` of virtual time, then dumps
    the DOM to stdout (or saves a screenshot); no network use beyond the page itself."""
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={budget_ms}",
        f"--window-size={window}",
    ]
    command.append(f"--screenshot={screenshot}" if screenshot else "--dump-dom")
    return [*command, url]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"cellsearch dashboard exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the dashboard did not answer at {url} within {timeout:.0f} s")


def printed_url(server: subprocess.Popen[bytes], timeout: float = 60) -> str:
    """The address ``cellsearch dashboard`` prints once its server answers."""
    assert server.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = server.stdout.readline().decode()
        if line.startswith("MLflow UI at "):
            # Drained from now on, so that the server never blocks writing to it.
            threading.Thread(target=server.stdout.read, daemon=True).start()
            return line.removeprefix("MLflow UI at ").split(" ")[0]
        if not line and server.poll() is not None:
            break
    raise SystemExit("cellsearch dashboard printed no address")


def run_page(store: str, url: str, name: str) -> str:
    """The page of the run called ``name`` in the latest job's experiment."""
    sys.path.insert(0, str(REPO))
    from mlflow import MlflowClient

    from dashboards._experiment_view import latest_job_experiment

    experiment = latest_job_experiment(store)
    runs = MlflowClient(tracking_uri=store).search_runs(
        [str(experiment)], f"attributes.run_name = '{name}'", max_results=1
    )
    if not runs:
        raise SystemExit(f"--run: no run named {name} in experiment {experiment}")
    run_id = runs[0].info.run_id
    return f"{url.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}?workflowType=machine_learning"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--mlflow", help="tracking store to serve with `cellsearch dashboard`")
    source.add_argument("--url", help="a running MLflow UI")
    parser.add_argument("--page", help="the UI page (from the #); default: what the dashboard prints")
    parser.add_argument("--run", help="a run of the latest job's experiment, by name (arch-5)")
    parser.add_argument("-o", "--output", type=Path, default=Path("dashboard.png"))
    parser.add_argument("--window", default="1920,1080", help="width,height in pixels")
    args = parser.parse_args()

    browser = find_browser()
    if browser is None:
        raise SystemExit(f"no Chromium found (looked for {', '.join(BROWSERS)})")
    server = None
    url = args.url
    if url is None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from cellsearch._cli import main; main()",
                "dashboard",
                "--mlflow",
                args.mlflow,
                "--port",
                str(port),
            ],
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            },
            start_new_session=True,
            stdout=subprocess.PIPE,
        )
    try:
        page = f"{url.rstrip('/')}/{args.page.lstrip('/')}" if args.page else url
        if server is not None:
            wait_for(url, server)
            printed = printed_url(server)
            page = page if args.page else printed
        if args.run:
            page = run_page(args.mlflow or url, url, args.run)
        with tempfile.TemporaryDirectory() as profile:
            target = args.output.resolve()
            command = browser_command(
                browser,
                page,
                Path(profile),
                screenshot=target,
                window=args.window,
            )
            subprocess.run(command, check=True, capture_output=True, timeout=180)
        print(f"saved {target}")
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
