"""The ``cellsearch`` commands that read the results database start without torch, Ray, MLflow,
Optuna or SciPy (each costs a fraction of a second to a second or so to import; SciPy is only
for computing intervals, which the read commands only print), and the lazily loaded package
APIs still give every public name.

Each check runs in a fresh interpreter: this test process has imported everything already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _dashboard_data import Synthetic, build_synthetic

from dashboards import describe_architecture, top_architectures
from search import ResultStore

HEAVY = ("torch", "ray", "mlflow", "optuna", "scipy")

# Runs the command line in-process, then reports the exit code and which heavy packages loaded.
RUN_CLI = """
import json, sys
from cellsearch._cli import app
try:
    app(sys.argv[1:], prog_name="cellsearch")
    code = 0
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print(json.dumps({{"exit": code, "heavy": heavy}}), file=sys.stderr)
"""


def run_python(code: str, *args: str, cwd: Path) -> tuple[str, dict[str, Any]]:
    """stdout, and the JSON object on the last line of stderr."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("CELLSEARCH_")}, "COLUMNS": "250"},
    )
    assert done.stderr, f"no report on stderr; stdout: {done.stdout}"
    return done.stdout, json.loads(done.stderr.strip().splitlines()[-1])


def cli(*args: str, cwd: Path) -> tuple[str, dict[str, Any]]:
    return run_python(RUN_CLI.format(heavy=HEAVY), *args, cwd=cwd)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Synthetic:
    return build_synthetic(f"sqlite:///{tmp_path_factory.mktemp('results') / 'results.db'}")


def test_importing_the_cli_loads_no_heavy_package(tmp_path: Path) -> None:
    code = f"""
import json, sys, cellsearch._cli
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)), file=sys.stderr)
"""
    _, heavy = run_python(code, cwd=tmp_path)
    assert heavy == []


def test_results_top_runs_without_heavy_packages(synthetic: Synthetic, tmp_path: Path) -> None:
    job = str(synthetic.search_job)
    out, report = cli("results", "top", "--job", job, "--format", "json", "--db", synthetic.url, cwd=tmp_path)
    assert report == {"exit": 0, "heavy": []}
    with ResultStore.open(synthetic.url, upgrade=False, create=False) as store:
        expected = [r.to_dict() for r in top_architectures(store, synthetic.search_job)]
    assert json.loads(out) == expected
    assert [row["arch_id"] for row in expected][:2] == [synthetic.ids["child"], synthetic.ids["grandchild"]]


def test_results_show_runs_without_heavy_packages(synthetic: Synthetic, tmp_path: Path) -> None:
    arch = synthetic.ids["grandchild"]
    out, report = cli("results", "show", str(arch), "--format", "json", "--db", synthetic.url, cwd=tmp_path)
    assert report == {"exit": 0, "heavy": []}
    with ResultStore.open(synthetic.url, upgrade=False, create=False) as store:
        expected = describe_architecture(store, arch).to_dict("http://127.0.0.1:5000")
    assert json.loads(out) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--help",), "results"),
        (("status", "--format", "json"), '"name": "table"'),  # the latest job
        (("results", "views"), "CREATE VIEW leaderboard"),
        (("results", "export", "--output", "out.csv"), "wrote 7 architectures of job 1"),
        (("cells", "list", "--format", "json"), '"name": "lstm"'),
    ],
)
def test_reading_commands_run_without_heavy_packages(
    synthetic: Synthetic, tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    db: tuple[str, ...] = ("--db", synthetic.url) if args[0] in ("status", "results") else ()
    if args[0] == "results" and args[1] == "export":
        db += ("--job", str(synthetic.search_job))
    out, report = cli(*args, *db, cwd=tmp_path)
    assert report == {"exit": 0, "heavy": []}
    assert expected in out


@pytest.mark.parametrize("package", ["cells", "workers", "search", "dashboards"])
def test_every_public_name_of_a_lazy_package_resolves(package: str, tmp_path: Path) -> None:
    # `from package import *` loads every name of __all__ through the package's __getattr__.
    code = f"""
import json, sys
import {package} as p
from {package} import *
missing = [n for n in p.__all__ if n not in globals()]
print(json.dumps({{"count": len(p.__all__), "missing": missing}}), file=sys.stderr)
"""
    _, report = run_python(code, cwd=tmp_path)
    assert report["missing"] == []
    assert report["count"] > 5


@pytest.mark.parametrize("first", ["workers._task", "workers._evaluate", "workers._arith", "workers"])
def test_task_registry_is_complete_whichever_module_loads_first(first: str, tmp_path: Path) -> None:
    # A Ray worker imports workers._evaluate directly, never the package's lazy names.
    code = f"""
import json, sys
import {first}
from workers._task_registry import TASKS
print(json.dumps(sorted(TASKS)), file=sys.stderr)
"""
    _, names = run_python(code, cwd=tmp_path)
    assert names == ["arith", "memorize", "music", "text", "xml"]
