"""Take a PNG screenshot of the MLflow dashboard (for the docs) with headless Chromium.

Starts ``cellsearch dashboard`` on a tracking store (or uses a running UI), opens a page of
it, waits for the app to render and saves a screenshot; the server it started is stopped.

    python scripts/screenshot_dashboard.py --mlflow sqlite:///mlflow.db -o docs/dashboard.png
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--mlflow", help="tracking store to serve with `cellsearch dashboard`")
    source.add_argument("--url", help="a running MLflow UI")
    parser.add_argument("--page", default="#/experiments/1/runs", help="the UI page (after the #)")
    parser.add_argument("-o", "--output", type=Path, default=Path("dashboard.png"))
    parser.add_argument("--window", default="1400,900", help="width,height in pixels")
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
        )
    try:
        if server is not None:
            wait_for(url, server)
        with tempfile.TemporaryDirectory() as profile:
            target = args.output.resolve()
            command = browser_command(
                browser,
                f"{url.rstrip('/')}/{args.page.lstrip('/')}",
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
