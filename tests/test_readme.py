"""The README's commands work as written.

Every command in the README's shell blocks is listed in ``EXERCISED_BY`` with what proves
it: a test here that runs it exactly as written (in a scratch working directory), or a line
of ``.ci/run``. A command added to the README without a test, or a test left behind by a
command removed from it, fails ``test_every_readme_command_is_exercised``.

The quickstart runs once for the module (a few minutes on two cores); the query and
dashboard commands then run against its results, as a reader would run them.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from _commands import REPO, check_command, shell_commands

README = REPO / "README.md"
CI_SCRIPT = REPO / ".ci" / "run"
CI = ".ci/run"

QUICKSTART = "cellsearch launch examples/quickstart.yaml"
EXPORT = "cellsearch results export -o results.csv"
FAST_TIER = 'python -m pytest -m "not slow" -n 2'
SLOW_TIER = "python -m pytest -m slow -n 2 --dist loadgroup"
SQL_QUERY = (
    'sqlite3 cellsearch.db "SELECT a.library_name, a.canonical_hash, ja.score FROM cs_job_architectures ja '
    "JOIN cs_architectures a ON a.id = ja.architecture_id WHERE ja.score IS NOT NULL "
    'ORDER BY ja.score DESC LIMIT 5"'
)

EXERCISED_BY: dict[str, str] = {
    'pip install -e ".[dev]"': CI,
    QUICKSTART: "test_the_quickstart_finishes_and_leaves_its_results_where_the_readme_says",
    "cellsearch dashboard": "test_the_dashboard_serves_the_quickstart_runs",
    "cellsearch status": "test_status_and_results_top_show_the_quickstart_job",
    "cellsearch results top": "test_status_and_results_top_show_the_quickstart_job",
    EXPORT: "test_results_export_writes_every_architecture_of_the_quickstart",
    SQL_QUERY: "test_the_sql_query_lists_the_best_architectures",
    FAST_TIER: CI,
    SLOW_TIER: CI,
}
"""README command -> the test in this module that runs it, or ``.ci/run``."""

# The commands run against the user's defaults: no leftover settings from the environment.
CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("CELLSEARCH_DB_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", "CELLSEARCH_DATA_DIR")
}


def _readme_command(command: str) -> list[str]:
    """The command as the README shows it; ``cellsearch`` runs as ``python -m cellsearch`` and
    ``python`` as this interpreter (the script's own entry point), so the checkout under test is
    what runs, whichever version of the script is installed."""
    assert command in shell_commands(README.read_text()), f"the README no longer shows `{command}`"
    argv = shlex.split(command)
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    return [sys.executable, "-m", "cellsearch", *argv[1:]] if argv[0] == "cellsearch" else argv


def _run(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# -- the README and its mapping ------------------------------------------------------------------


def test_every_readme_command_is_exercised() -> None:
    commands = shell_commands(README.read_text())
    assert commands, "no shell blocks found in the README"
    assert set(commands) == set(EXERCISED_BY), "README commands and EXERCISED_BY disagree"
    ci_lines = {line.strip() for line in CI_SCRIPT.read_text().splitlines()}
    for command, proof in EXERCISED_BY.items():
        if proof == CI:
            assert command in ci_lines, f"`{command}` is mapped to {CI} but is not a line of it"
        else:
            test = globals().get(proof)
            assert callable(test) and proof.startswith("test_"), f"`{command}`: no test named {proof}"


def test_the_readme_test_command_is_the_last_step_of_ci() -> None:
    steps = [line.strip() for line in CI_SCRIPT.read_text().splitlines() if line.strip()]
    assert steps[-2:] == [FAST_TIER, SLOW_TIER]


def test_cellsearch_commands_in_the_readme_exist() -> None:
    checked = [check_command(c) for c in shell_commands(README.read_text()) if c.startswith("cellsearch ")]
    assert set(checked) == {
        "cellsearch launch",
        "cellsearch dashboard",
        "cellsearch status",
        "cellsearch results top",
        "cellsearch results export",
    }


def test_readme_links_point_at_files_that_exist() -> None:
    links = re.findall(r"\]\(([^)#]+)\)", README.read_text())
    local = [link for link in links if "://" not in link]
    assert "docs/cluster.md" in local
    for link in local:
        assert (REPO / link).exists(), f"README links to a missing file: {link}"


def test_the_readme_names_the_default_locations_the_settings_use() -> None:
    from search._settings import DEFAULT_DATA_DIR, DEFAULT_DB_URL, DEFAULT_MLFLOW_URI

    text = README.read_text()
    for url in (DEFAULT_DB_URL, DEFAULT_MLFLOW_URI):
        assert f"`{url.removeprefix('sqlite:///')}`" in text
    assert f"`{DEFAULT_DATA_DIR}/`" in text


def test_the_install_says_to_take_torch_s_cpu_build_first() -> None:
    """pip would otherwise pull the CUDA build of torch (several GB) on a machine without a GPU."""
    readme = README.read_text()
    assert readme.index("install the CPU build of PyTorch") < readme.index('pip install -e ".[dev]"')


def test_the_fast_tier_selects_every_test_but_the_slow_ones() -> None:
    """The fast tier as written, collecting only (running it here would run this test again)."""
    # -n 0 last: collected in this process, so the ids are listed (workers would not list them);
    # this module only, whose tests are of both tiers (collecting the whole suite again is slow)
    collect = ["--collect-only", "-q", "-n", "0", "tests/test_readme.py"]
    result = _run([*_readme_command(FAST_TIER), *collect], REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    selected = set(result.stdout.split())
    here = "tests/test_readme.py::"
    assert here + "test_every_readme_command_is_exercised" in selected
    assert here + "test_the_quickstart_finishes_and_leaves_its_results_where_the_readme_says" not in selected
    assert re.search(r"\d+ deselected", result.stdout), result.stdout[-500:]


# -- the quickstart, run as the README shows it --------------------------------------------------


@dataclass
class Quickstart:
    cwd: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Quickstart:
    cwd = tmp_path_factory.mktemp("readme")
    (cwd / "examples").mkdir()
    shutil.copy(REPO / "examples" / "quickstart.yaml", cwd / "examples" / "quickstart.yaml")
    result = _run(_readme_command(QUICKSTART), cwd, timeout=540)  # inside the 600 s test timeout
    return Quickstart(cwd, result)


def _finished(quickstart: Quickstart) -> Path:
    result = quickstart.result
    assert result.returncode == 0, f"the quickstart failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return quickstart.cwd


@pytest.mark.slow
def test_the_quickstart_finishes_and_leaves_its_results_where_the_readme_says(quickstart: Quickstart) -> None:
    cwd = _finished(quickstart)
    out = quickstart.result.stdout
    assert "top architectures" in out
    assert out.rstrip().endswith("job 1 finished")
    assert (cwd / "cellsearch.db").is_file()
    assert (cwd / "mlflow.db").is_file()
    with sqlite3.connect(cwd / "cellsearch.db") as db:
        seeds = {name for (name,) in db.execute("SELECT library_name FROM cs_architectures")}
        mutants = db.execute("SELECT count(*) FROM cs_architectures WHERE parent_id IS NOT NULL").fetchone()[
            0
        ]
    assert {"lstm", "gru", "tanh"} <= seeds  # the README: seeded with LSTM, GRU and a tanh RNN
    assert mutants > 0  # ...and mutates them


@pytest.mark.slow
def test_status_and_results_top_show_the_quickstart_job(quickstart: Quickstart) -> None:
    cwd = _finished(quickstart)
    status = _run(_readme_command("cellsearch status"), cwd)
    assert status.returncode == 0, status.stderr
    assert "quickstart" in status.stdout and "finished" in status.stdout
    top = _run(_readme_command("cellsearch results top"), cwd)
    assert top.returncode == 0, top.stderr
    assert "gru" in top.stdout  # the baseline is ranked with the candidates


@pytest.mark.slow
def test_results_export_writes_every_architecture_of_the_quickstart(quickstart: Quickstart) -> None:
    cwd = _finished(quickstart)
    result = _run(_readme_command(EXPORT), cwd)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(cwd / "cellsearch.db") as db:
        (architectures,) = db.execute("SELECT count(*) FROM cs_job_architectures WHERE job_id = 1").fetchone()
    assert result.stdout.strip() == f"wrote {architectures} architectures of job 1 to results.csv"
    with open(cwd / "results.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == architectures > 3  # the seeds, the baseline and mutants
    scores = [float(row["score"]) for row in rows if row["score"]]
    assert scores and scores == sorted(scores, reverse=True)  # scored ones first, best first
    assert {"arith_relative", "xml_relative"} <= set(rows[0])


@pytest.mark.slow
def test_git_ignores_everything_the_quickstart_leaves_behind(quickstart: Quickstart) -> None:
    """Run in the folder of a finished quickstart (databases, their lock files, MLflow's
    artifacts): with the project's .gitignore, git sees only what was there before."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    cwd = _finished(quickstart)
    shutil.copy(REPO / ".gitignore", cwd / ".gitignore")
    left = {p.name for p in cwd.iterdir()}
    assert {"cellsearch.db", "mlflow.db"} <= left, left
    subprocess.run(["git", "init", "-q"], cwd=cwd, check=True)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=cwd, capture_output=True, text=True
    )
    seen = {line[3:] for line in status.stdout.splitlines()}
    expected = {".gitignore", "examples/quickstart.yaml"} | {n for n in seen if n.startswith("results.")}
    assert seen == expected, seen


@pytest.mark.slow
def test_the_sql_query_lists_the_best_architectures(quickstart: Quickstart) -> None:
    if shutil.which("sqlite3") is None:
        pytest.skip("the sqlite3 command-line shell is not installed")
    cwd = _finished(quickstart)
    result = _run(_readme_command(SQL_QUERY), cwd)
    assert result.returncode == 0, result.stderr
    rows = [line.split("|") for line in result.stdout.splitlines()]
    assert 1 <= len(rows) <= 5 and all(len(row) == 3 for row in rows)
    scores = [float(score) for _, _, score in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(re.fullmatch(r"[0-9a-f]{16,64}", canonical_hash) for _, canonical_hash, _ in rows)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_the_dashboard_serves_the_quickstart_runs(quickstart: Quickstart) -> None:
    """`cellsearch dashboard`, with a free port instead of the default 5000 (which another
    program may hold), until its UI answers; then Ctrl-C, as the README says."""
    cwd = _finished(quickstart)
    port = _free_port()
    server = subprocess.Popen(
        [*_readme_command("cellsearch dashboard"), "--port", str(port)],
        cwd=cwd,
        env=CLEAN_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        status = _wait_for_http(url + "/", server, timeout=240)
        assert status == 200
        with urllib.request.urlopen(
            url + "/ajax-api/2.0/mlflow/experiments/search?max_results=10", timeout=10
        ) as r:
            body = r.read().decode()
        assert "quickstart" in body, body[:2000]
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        output = server.stdout.read() if server.stdout else ""
    assert url in output, output[-2000:]


def _wait_for_http(url: str, process: subprocess.Popen[str], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"the dashboard exited with {process.returncode}:\n{output[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status)
        except OSError:
            time.sleep(1)
    pytest.fail(f"{url} did not answer within {timeout:.0f} s")
