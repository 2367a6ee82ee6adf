"""A search replays from its seed: two runs of one job file give the same architectures,
hyperparameters and scores, and a run killed with SIGKILL and resumed ends as one that ran through.

The jobs run through the ``cellsearch`` command against one Ray head node of 2 CPUs with half
a CPU per trial, so four trials run at once and finish in whatever order the machine makes.
The quickstart runs with its own strategy, cells and tasks, at a smaller number of
architectures and training steps, and a small final round (the same code path, a fraction of
the time).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from _ray_head import REPO, RayHead, cellsearch, count, finish, kill_group, ray_head_node, rows, wait_for

pytestmark = pytest.mark.slow

EVOLUTION_JOB = """\
name: evolution-replay
strategy: {kind: regularized_evolution, population_size: 4, sample_size: 2}
seed_cells: [lstm, gru]
baselines: [gru]
tasks:
  - name: memorize
    role: filter
    threshold: 0.3
    trials: 2
    settings: {min_length: 3, max_length: 4, symbols: 4, valid_size: 32, test_size: 32}
    budget: {max_steps: 60, eval_every: 30}
  - name: arith
    settings: {max_digits: 2, valid_size: 32, test_size: 32}
    budget: {max_steps: 60, eval_every: 30}
hparams: {num_layers: 1, hidden_size: 16, dropout: 0.0}
trials_per_task: 2
budget: {max_architectures: 8}
resources: {cpus: 0.5}
device: cpu
seed: 11
"""


def _small_quickstart() -> str:
    """The quickstart job file with fewer architectures and steps, four trials at a time."""
    job: dict[str, Any] = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    job["budget"] = {"max_architectures": 5}
    job["final"] = {"top_k": 2, "seeds": 2}  # the final round replays too
    job["resources"] = {"cpus": 0.5}
    for task in job["tasks"]:
        steps = max(40, task["budget"]["max_steps"] // 3)
        task["budget"] = {"max_steps": steps, "eval_every": steps // 2}
    return yaml.safe_dump(job, sort_keys=False)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    with ray_head_node() as head:
        yield head


def _outcome(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """What a researcher takes from a job, by content (ids and times differ between runs):
    every architecture and its score, every evaluation's best value and best hyperparameters,
    every trial that counted, with its seed and value."""
    return {
        "architectures": rows(
            db,
            "SELECT a.canonical_hash, ja.score, ja.filter_passed, ja.evaluated, ja.final_score "
            "FROM cs_job_architectures ja "
            "JOIN cs_architectures a ON a.id = ja.architecture_id ORDER BY a.canonical_hash",
        ),
        "evaluations": rows(
            db,
            "SELECT a.canonical_hash, e.task_label, e.status, e.best_value, e.relative_score, e.verdict, "
            "t.hparams "
            "FROM cs_evaluations e JOIN cs_architectures a ON a.id = e.architecture_id "
            "LEFT JOIN cs_trials t ON t.id = e.best_trial_id ORDER BY 1, 2",
        ),
        "trials": rows(
            db,
            "SELECT a.canonical_hash, e.task_label, t.ordinal, t.launch, t.hparams, t.status, t.value "
            "FROM cs_trials t JOIN cs_evaluations e ON e.id = t.evaluation_id "
            "JOIN cs_architectures a ON a.id = t.architecture_id "
            "WHERE t.status != 'interrupted' ORDER BY 1, 2, 3",
        ),
    }


def _run(ray_head: RayHead, folder: Path, job: str) -> Path:
    folder.mkdir()
    (folder / "job.yaml").write_text(job)
    db, log = folder / "results.db", folder / "cellsearch.log"
    args = ["launch", "job.yaml", "--db", f"sqlite:///{db}", "--no-mlflow", "--ray-address", ray_head.address]
    assert finish(cellsearch(args, ray_head.env, folder, log), log) == 0, log.read_text()[-4000:]
    return db


@pytest.fixture(scope="module")
def quickstart_run(ray_head: RayHead, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(ray_head, tmp_path_factory.mktemp("quickstart") / "first", _small_quickstart())


def _assert_same(first: Path, second: Path) -> None:
    a, b = _outcome(first), _outcome(second)
    assert a["architectures"] and a["trials"]
    for part in ("architectures", "evaluations", "trials"):
        assert a[part] == b[part], part


def test_two_runs_of_the_quickstart_give_the_same_search(
    ray_head: RayHead, quickstart_run: Path, tmp_path: Path
) -> None:
    again = _run(ray_head, tmp_path / "second", _small_quickstart())
    _assert_same(quickstart_run, again)
    outcome = _outcome(quickstart_run)
    # Several trials ran at once (launches overlapped), and trials of one task got different seeds.
    seeds = {yaml.safe_load(hp)["seed"] for *_, hp, _, _ in outcome["trials"]}
    assert len(seeds) >= 2
    assert len(outcome["architectures"]) >= 6  # the baseline, the seed cells and mutants
    finals = [e for e in outcome["evaluations"] if e[1].endswith(".final")]
    assert len(finals) == 3 * 2  # two architectures and the baseline, on arith and xml
    assert sum(e[5] is not None for e in finals) == 2 * 2  # a verdict for each but the baseline
    assert sum(a[4] is not None for a in outcome["architectures"]) == 3


def test_two_runs_of_regularized_evolution_give_the_same_search(ray_head: RayHead, tmp_path: Path) -> None:
    first = _run(ray_head, tmp_path / "first", EVOLUTION_JOB)
    second = _run(ray_head, tmp_path / "second", EVOLUTION_JOB)
    _assert_same(first, second)
    mutants = rows(first, "SELECT count(*) FROM cs_architectures WHERE mutation IS NOT NULL")
    assert mutants[0][0] >= 3  # evolution mutated: the comparison covers its proposals


def test_a_job_killed_and_resumed_ends_as_one_that_ran_through(
    ray_head: RayHead, quickstart_run: Path, tmp_path: Path
) -> None:
    total = len(_outcome(quickstart_run)["trials"])
    tmp_path.joinpath("job.yaml").write_text(_small_quickstart())
    db, log = tmp_path / "results.db", tmp_path / "cellsearch.log"
    common = ["--db", f"sqlite:///{db}", "--no-mlflow", "--ray-address", ray_head.address]
    launch = cellsearch(["launch", "job.yaml", *common], ray_head.env, tmp_path, log)
    try:
        wait_for(lambda: count(db, "ok") >= total // 2, launch, log, "half of the trials were committed")
    finally:
        kill_group(launch)  # SIGKILL: no handler runs, nothing is cleaned up
    assert launch.returncode == -signal.SIGKILL
    assert rows(db, "SELECT state FROM cs_jobs") == [("running",)]
    resume = cellsearch(["resume", "1", *common], ray_head.env, tmp_path, log)
    assert finish(resume, log) == 0, log.read_text()[-4000:]
    assert rows(db, "SELECT state FROM cs_jobs") == [("finished",)]
    _assert_same(quickstart_run, db)
