"""``cellsearch dashboard`` in a real browser: headless Chromium renders the MLflow UI
(a JavaScript app) served on the store a real job was tracked into.

What is checked in the rendered DOM: the address ``cellsearch dashboard`` prints opens the
job's runs table with every architecture's name and score, without a click; an
architecture's page shows its equations as text and its diagram (an image). The REST
endpoint the runs table reads (``/ajax-api/2.0/mlflow/runs/search``) lists every run.
"""

from __future__ import annotations

import html
import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from _dashboard_data import REPO, RealJob, real_job, subprocess_env
from typer.testing import CliRunner

from cells import CellGraph, to_equations
from cellsearch._cli import app
from dashboards import runs_of
from search import ResultStore

sys.path.insert(0, str(REPO / "scripts"))
from screenshot_dashboard import browser_command, find_browser

BROWSER = find_browser()
mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> RealJob:
    """The shared real job; its ``cellsearch dashboard`` server is still running."""
    return real_job(tmp_path_factory, pytestconfig)


def render(url: str, tmp_path: Path) -> str:
    if BROWSER is None:
        pytest.skip("no Chromium on PATH (install Debian's `chromium` package)")
    proc = subprocess.run(
        browser_command(BROWSER, url, tmp_path / "profile"), capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                if len(address) == 8:
                    found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
                else:
                    found.add(address)
    return found


def printed_url(real: RealJob) -> str:
    """The address ``cellsearch dashboard`` printed last."""
    lines = [line for line in real.server.log.read_text().splitlines() if line.startswith("MLflow UI at ")]
    return lines[-1].removeprefix("MLflow UI at ").split(" ")[0]


def test_dashboard_prints_the_jobs_runs_page_and_binds_to_loopback(real: RealJob) -> None:
    [job_link] = runs_of(
        sa.create_engine(real.db_url), job_id=real.job_id, jobs_only=True, tracking_uri=real.server.url
    )
    url = printed_url(real)
    assert url.startswith(f"{real.server.url}/#/experiments/{job_link.experiment_id}/runs?")
    assert f"(store: {real.mlflow_store})" in real.server.log.read_text()
    assert listening_addresses(real.server.port) == {"127.0.0.1"}


def test_printed_page_shows_every_architecture_and_its_score(real: RealJob, tmp_path: Path) -> None:
    """No click: the experiment opens as model training, one row per architecture with its
    score and relative score in columns."""
    dom = render(printed_url(real), tmp_path)
    client = MlflowClient(tracking_uri=real.server.url)
    links = runs_of(sa.create_engine(real.db_url), job_id=real.job_id, tracking_uri=real.server.url)
    runs = [client.get_run(link.run_id) for link in links if link.arch_id is not None]
    assert len(runs) >= 3
    assert ">Overview<" not in dom  # the model-training experiment page, not GenAI's overview
    for run in runs:
        assert f">{run.info.run_name}<" in dom
        if "score" in run.data.metrics:
            assert _shown(run.data.metrics["score"]) in dom
    assert ">score<" in dom and ">memorize.relative<" in dom and ">parameter_count<" in dom


def _shown(value: float) -> str:
    """A metric as the runs table writes it (JavaScript's shortest digits)."""
    return f">{int(value)}<" if value.is_integer() else f">{value!r}<"


def test_architecture_page_shows_equations_and_diagram(real: RealJob, tmp_path: Path) -> None:
    links = runs_of(sa.create_engine(real.db_url), job_id=real.job_id, tracking_uri=real.server.url)
    arch = next(link for link in links if link.arch_id is not None)
    with ResultStore.open(real.db_url, upgrade=False, create=False) as store:
        graph = CellGraph.parse(store.get_architecture(arch.arch_id).graph)
    page = f"{real.server.url}/#/experiments/{arch.experiment_id}/runs/{arch.run_id}"
    dom = render(f"{page}?workflowType=machine_learning", tmp_path)
    first = to_equations(graph).splitlines()[0]
    assert html.escape(first, quote=False) in dom  # the equations as text, in the description
    assert "begin{aligned}" not in dom
    dom = render(f"{page}/artifacts/cell.png?workflowType=machine_learning", tmp_path / "artifacts")
    # The artifact viewer fetched the PNG from the server and shows it as an image.
    assert re.search(r'<img alt="cell\.png" src="blob:', dom), "the artifacts tab does not show the diagram"


def test_ui_api_lists_every_architecture_run(real: RealJob) -> None:
    links = runs_of(sa.create_engine(real.db_url), job_id=real.job_id, tracking_uri=real.server.url)
    experiment = links[0].experiment_id
    request = urllib.request.Request(
        f"{real.server.url}/ajax-api/2.0/mlflow/runs/search",
        data=json.dumps({"experiment_ids": [experiment], "max_results": 1000}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        runs = json.load(response)["runs"]
    assert sorted(r["info"]["run_id"] for r in runs) == sorted(link.run_id for link in links)


def test_dashboard_for_a_server_store_prints_its_url() -> None:
    result = CliRunner().invoke(app, ["dashboard", "--mlflow", "http://mlflow.example:5000/"])
    assert result.exit_code == 0
    assert "its UI is at http://mlflow.example:5000" in result.stdout


def test_dashboard_refuses_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            app, ["dashboard", "--mlflow", f"sqlite:///{tmp_path / 'm.db'}", "--port", str(port)]
        )
    assert result.exit_code == 1
    assert f"--port: cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="no Chromium on PATH (install Debian's `chromium` package)")
def test_screenshot_script(real: RealJob, tmp_path: Path) -> None:
    out = tmp_path / "shot.png"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "screenshot_dashboard.py"),
            "--url",
            real.server.url,
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_open_hands_the_runs_page_to_the_browser(real: RealJob, tmp_path: Path) -> None:
    """``--open``: the printed address goes to the user's browser ($BROWSER, here a script)."""
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf %s "$1" > {opened}\n')
    browser.chmod(0o755)
    code = (
        "from dashboards._landing import announce; "
        f"announce({real.mlflow_store!r}, {real.server.url!r}, print, open_browser=True)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(BROWSER=f"{browser} %s"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert opened.read_text() == printed_url(real)
    assert f"MLflow UI at {printed_url(real)} " in proc.stdout
