"""``cellsearch status`` and ``cellsearch db upgrade`` on real SQLite files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cells import library
from cellsearch._cli import app
from search import ResultStore
from search._intervals import Interval
from search._jobspec import JobSpec
from search._schema import head_revision
from search._settings import ENV_DB_URL
from workers import TrialResult

runner = CliRunner()


def spec(name: str) -> JobSpec:
    return JobSpec.from_dict(
        {
            "name": name,
            "strategy": {"kind": "jozefowicz"},
            "tasks": [{"name": "memorize", "role": "filter", "threshold": 0.5}, {"name": "arith"}],
            "budget": {"max_trials": 100},
        }
    )


def ok(value: float) -> TrialResult:
    return TrialResult(status="ok", task="arith", metric="char_accuracy", direction="maximize", value=value)


@pytest.fixture
def filled(tmp_path: Path) -> tuple[str, dict[str, int]]:
    """A database with two jobs; the second has trials and a scored architecture."""
    url = f"sqlite:///{tmp_path / 'results.db'}"
    with ResultStore.open(url) as store:
        first = store.create_job(spec("first"))
        second = store.create_job(spec("second"))
        store.set_job_state(second, "running")
        gru, _ = store.add_architecture(library.get("gru"), job_id=second, library_name="gru")
        mut1, _ = store.add_architecture(library.get("mut1"), job_id=second, library_name="mut1")
        evaluation = store.get_or_create_evaluation(second, mut1, spec("second").task("arith"))
        for value in (0.2, 0.4, 0.3):
            store.finish_trial(store.start_trial(evaluation.id, hparams={}), ok(value))
        pruned = store.start_trial(evaluation.id, hparams={})
        store.finish_trial(
            pruned, TrialResult(status="pruned", task="arith", metric="m", direction="maximize")
        )
        store.fail_trial(store.start_trial(evaluation.id, hparams={}), "boom")
        store.start_trial(evaluation.id, hparams={})
        store.update_job_architecture(second, gru, score=1.0, filter_passed=True, evaluated=True)
        store.update_job_architecture(
            second, mut1, score=1.08, score_interval=Interval(0.97, 1.12), filter_passed=True, evaluated=True
        )
    return url, {"first": first, "second": second, "gru": gru, "mut1": mut1}


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    # A wide terminal so table rows are not wrapped; no database URL from the caller's environment.
    result = runner.invoke(app, list(args), env={"COLUMNS": "200", ENV_DB_URL: "", **(env or {})})
    return result.exit_code, result.stdout, result.stderr


def test_status_json_of_the_latest_job(filled: tuple[str, dict[str, int]]) -> None:
    url, ids = filled
    code, out, _ = run("status", "--db", url, "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert (data["job_id"], data["name"], data["state"]) == (ids["second"], "second", "running")
    assert data["architectures"] == 2
    assert {k: data["trials"][k] for k in ("completed", "running", "pruned", "failed")} == {
        "completed": 3,
        "running": 1,
        "pruned": 1,
        "failed": 1,
    }
    assert data["best"] == {"arch_id": ids["mut1"], "score": 1.08, "score_low": 0.97, "score_high": 1.12}


def test_status_of_a_given_job_and_of_all_jobs(filled: tuple[str, dict[str, int]]) -> None:
    url, ids = filled
    code, out, _ = run("status", str(ids["first"]), "--db", url, "-f", "json")
    data = json.loads(out)
    assert code == 0 and data["name"] == "first" and data["architectures"] == 0 and data["best"] is None
    assert data["trials"]["completed"] == 0
    code, out, _ = run("status", "--all", "--db", url, "-f", "json")
    assert code == 0 and [(j["job_id"], j["name"]) for j in json.loads(out)] == [
        (ids["first"], "first"),
        (ids["second"], "second"),
    ]


def test_status_table_shows_the_counts_and_the_leaderboard(filled: tuple[str, dict[str, int]]) -> None:
    url, ids = filled
    code, out, _ = run("status", "--db", url)
    assert code == 0
    assert "job 2: second" in out and "running" in out
    assert "3 completed, 1 running, 1 pruned, 1 failed" in out
    assert f"architecture {ids['mut1']}, score 1.0800 [0.970, 1.120]" in out
    board = out[out.index("top architectures") :]
    assert board.index("mut1") < board.index("gru")  # best first
    [mut1] = [line for line in board.splitlines() if "mut1" in line]
    assert "1.0800 [0.970, 1.120]" in mut1  # the score and its interval
    [gru] = [line for line in board.splitlines() if "gru" in line]
    assert "1.0000" in gru and "[" not in gru  # no interval: the score alone


def test_database_url_comes_from_the_environment(filled: tuple[str, dict[str, int]]) -> None:
    url, _ = filled
    code, out, _ = run("status", "-f", "json", env={ENV_DB_URL: url})
    assert code == 0 and json.loads(out)["name"] == "second"


def test_status_errors_are_one_line_without_traceback(
    tmp_path: Path, filled: tuple[str, dict[str, int]]
) -> None:
    missing = tmp_path / "none.db"
    code, out, err = run("status", "--db", f"sqlite:///{missing}")
    assert code == 1 and err.startswith("error: no results database at") and "Traceback" not in out + err
    assert not missing.exists()  # status never creates a database

    url, _ = filled
    code, _, err = run("status", "7", "--db", url)
    assert code == 1 and err.strip() == f"error: unknown job 7 in {url}"

    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    ResultStore.open(empty).close()
    code, _, err = run("status", "--db", empty)
    assert code == 1 and "no jobs in" in err


def test_db_upgrade_creates_then_reports_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code, out, _ = run("db", "upgrade", "--db", url)
    assert code == 0 and out.strip() == f"created the results schema at revision {head_revision()}"
    code, out, _ = run("db", "upgrade", "--db", url)
    assert code == 0 and out.strip() == f"already at revision {head_revision()}"
    code, out, _ = run("status", "--all", "--db", url, "-f", "json")
    assert code == 0 and json.loads(out) == []


def test_db_upgrade_refuses_a_foreign_database(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE cs_trials (x TEXT)")
    code, _, err = run("db", "upgrade", "--db", f"sqlite:///{path}")
    assert code == 1 and "not a cellsearch database" in err and "Traceback" not in err
