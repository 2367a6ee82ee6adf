"""The driver's parts against real Optuna storage and a real local Ray instance.

One Ray instance serves the module. Trials really train (tiny budgets); the one fault that
is caused on purpose, a worker dying mid-trial, is a real SIGKILL of the worker process.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState

from search import ResultStore
from search._jobspec import JobSpec
from search._progress import ProgressFeed
from search._settings import resolve_settings
from search._tuning import StudyBook

SPACE = {"learning_rate": FloatDistribution(1e-4, 1e-1, log=True), "num_layers": IntDistribution(1, 4)}
MEMORIZE = {"min_length": 3, "max_length": 5, "symbols": 4, "valid_size": 32, "test_size": 32}
HPARAMS = {"hidden_size": 16, "num_layers": 1, "batch_size": 16}


def _sqlite(tmp_path: Path, name: str = "results.db") -> str:
    return f"sqlite:///{tmp_path / name}"


# -- tuning: the write-through studies (no Ray) ----------------------------------------------


def test_studies_written_through_read_back_as_optuna_studies(tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    book = StudyBook(url, sampler="random", pruner="median", seed=1)
    study = book.study("job1-arch1-memorize", "maximize", SPACE)
    assert study.enqueue({"learning_rate": 0.01, "num_layers": 2, "dropout": 0.3})  # dropout: not in space
    asked = [study.ask(), *study.ask_many(3)]  # one alone, three as a population
    assert asked[0].params == {"learning_rate": 0.01, "num_layers": 2}  # the enqueued setting first
    assert [a.number for a in asked] == [0, 1, 2, 3]
    for step, value in ((10, 0.2), (20, 0.4)):
        assert study.report(0, step, value) is False
    study.tell(0, "ok", 0.4)
    study.tell_many([(1, "pruned", None), (2, "failed", None), (2, "ok", 0.9)])  # a second tell is ignored
    book.close()

    # Optuna's own reader sees exactly what happened; trial 3 was left running.
    loaded = optuna.load_study(study_name="job1-arch1-memorize", storage=url)
    trials = loaded.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.FAIL,
        TrialState.RUNNING,
    ]
    assert trials[0].params == asked[0].params and trials[3].params == asked[3].params
    assert trials[0].value == 0.4 and trials[0].intermediate_values == {10: 0.2, 20: 0.4}
    assert trials[0].datetime_complete is not None and trials[3].datetime_complete is None
    assert isinstance(trials[1].distributions["num_layers"], IntDistribution)

    # A resumed run loads the study: the running trial became FAIL, numbering goes on, and the
    # random stream does not repeat the settings already tried.
    book = StudyBook(url, sampler="random", pruner="median", seed=1)
    again = book.study("job1-arch1-memorize", "maximize", SPACE)
    assert again.num_trials == 4
    assert optuna.load_study(study_name="job1-arch1-memorize", storage=url).trials[3].state == TrialState.FAIL
    fresh = again.ask()
    assert fresh.number == 4
    assert fresh.params not in [a.params for a in asked]
    book.close()


def test_a_pruner_in_the_driver_stops_a_trial_that_lags_the_median(tmp_path: Path) -> None:
    book = StudyBook(_sqlite(tmp_path), sampler="random", pruner="median", seed=0)
    study = book.study("s", "maximize", SPACE)
    for value in (0.5, 0.6, 0.7):  # three finished trials reach 0.5-0.7 at step 10
        trial = study.ask()
        assert study.report(trial.number, 10, value) is False
        study.tell(trial.number, "ok", value)
    laggard = study.ask()
    assert study.report(laggard.number, 10, 0.1) is True
    study.tell(laggard.number, "pruned", None)
    book.close()


# -- the progress feed and the command line (no Ray) -----------------------------------------


def test_the_display_shows_the_numbers_trackers_read() -> None:
    from rich.console import Console

    from search._progress import render

    feed = ProgressFeed(job_id=7, job_name="demo")
    for key, status in (("a", "ok"), ("b", "pruned"), ("c", "failed"), ("d", "ok")):
        feed.trial_submitted(key)
        feed.trial_finished(key, status)
    feed.trial_submitted("e")
    feed.architectures_proposed = 3
    feed.architecture_done(1, "filtered", None)
    feed.new_best(2, 1.25, "gru", "h' = tanh(W x + U h + b)")
    metrics = feed.metrics()
    assert metrics["trials_done"] == 4 and metrics["trials_running"] == 1 and metrics["trials_pruned"] == 1
    assert metrics["trials_failed"] == 1 and metrics["architectures_filtered"] == 1
    assert metrics["best_score"] == 1.25
    console = Console(record=True, width=200)
    console.print(render(feed))
    text = console.export_text()
    assert "3 proposed   1 filtered" in text
    assert "4 done   1 running   1 pruned   1 failed" in text
    assert "arch 2  score 1.2500  gru" in text and "h' = tanh(W x + U h + b)" in text


def test_stage_queries_change_nothing() -> None:
    from search._jobspec import TaskEntry
    from search._strategies import Stages

    tasks = [TaskEntry(name="memorize", role="filter", threshold=0.5), TaskEntry(name="arith")]
    stages = Stages(tasks, {"memorize": 1, "arith": 1}, gated=True)
    stages.started("memorize")
    stages.finished("memorize", 0.1)
    assert stages.wanted({}) == [] and stages.status == "running"  # asked twice, same answer
    assert stages.wanted({}) == [] and stages.status == "running"
    stages.update({})
    assert stages.status == "filtered" and stages.stopped_at == "memorize"


def test_the_job_budget_counts_trials_and_architectures_and_stops() -> None:
    from search._job_budget import JobBudget
    from search._jobspec import SearchBudget

    budget = JobBudget(SearchBudget(max_trials=4, max_architectures=1, max_seconds=3600), elapsed_before=10)
    assert budget.trials_left() == 4 and budget.may_propose() and budget.elapsed() >= 10
    budget.count_trials(3)
    budget.count_proposal()
    assert budget.trials_left() == 1 and not budget.may_propose()  # one architecture at most
    budget.check_time()
    assert budget.stop_reason is None
    budget.interrupt("SIGTERM")
    assert budget.interrupted and budget.stop_signal == "SIGTERM" and budget.trials_left() == 0


def test_the_architecture_book_walks_a_job_without_ray(tmp_path: Path) -> None:
    """The book alone (no scheduler): trials reported by hand settle, score and finish the job."""
    from search._book import ArchitectureBook
    from search._job_budget import JobBudget
    from search._job_strategy import make_strategy

    url = _sqlite(tmp_path)
    spec = _spec()
    feed = ProgressFeed()
    with ResultStore.open(url) as store:
        job_id = store.create_job(spec)
        budget = JobBudget(spec.budget)
        studies = StudyBook(url, sampler=spec.sampler, pruner=spec.pruner, seed=spec.seed)
        book = ArchitectureBook(spec, job_id, store, studies, make_strategy(spec), budget, feed)
        book.start()
        for value in (0.6, 0.3):  # the baseline (gru), then the fixed cell (tanh)
            if book.next_launch() is None:
                assert book.may_propose(max_in_flight=2)
                book.propose()
            launch = book.next_launch()
            assert launch is not None and book.next_launch() == launch  # a query: asked twice, same
            arch, task, wanted = launch
            assert wanted == 1
            book.trial_started(arch, task)
            book.trial_ended(arch, task, value)
            book.settle()
        studies.close()
        assert book.baseline_best == {"memorize": 0.6}
        assert not book.active and book.next_launch() is None and not book.may_propose(max_in_flight=2)
        assert feed.architectures_proposed == 1 and feed.architectures_evaluated == 1
        assert feed.best_score == 1.0  # the baseline, scored against itself
        [member] = [m for m in store.job_architectures(job_id) if m.architecture_id == arch.id]
        assert member.score == pytest.approx(0.5) and member.evaluated  # half the baseline's best


def test_launch_refuses_a_bad_job_naming_every_field_and_writes_nothing(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cellsearch._cli import app

    job = tmp_path / "bad.yaml"
    job.write_text(
        "name: bad\nstrategy: {kind: jozefowicz, top_k: 0}\n"
        "tasks: [{name: memorize, role: filter}, {name: nosuch}]\nbudget: {max_trials: -1}\n"
    )
    db = tmp_path / "results.db"
    result = CliRunner().invoke(app, ["launch", str(job), "--db", f"sqlite:///{db}"])
    assert result.exit_code == 2
    for field in ("strategy.top_k", "tasks.0.threshold", "tasks.1.name", "budget.max_trials"):
        assert field in result.output, result.output
    assert not db.exists()


def test_resume_refuses_unknown_and_finished_jobs(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cellsearch._cli import app

    url = _sqlite(tmp_path)
    with ResultStore.open(url) as store:
        job_id = store.create_job(_spec())
        store.set_job_state(job_id, "finished")
    runner = CliRunner()
    unknown = runner.invoke(app, ["resume", "99", "--db", url])
    assert unknown.exit_code == 1 and "unknown job 99" in unknown.output
    finished = runner.invoke(app, ["resume", str(job_id), "--db", url])
    assert finished.exit_code == 1 and f"job {job_id} is already finished" in finished.output
    missing = runner.invoke(app, ["resume", "1", "--db", _sqlite(tmp_path, "none.db")])
    assert missing.exit_code == 1 and not (tmp_path / "none.db").exists()


# -- the driver on Ray -----------------------------------------------------------------------


def _spec(**overrides: Any) -> JobSpec:
    data: dict[str, Any] = {
        "name": "driver-test",
        "strategy": {"kind": "fixed", "cells": ["tanh"]},
        "seed_cells": [],
        "baselines": ["gru"],
        "tasks": [
            {
                "name": "memorize",
                "settings": MEMORIZE,
                "budget": {"max_steps": 30, "eval_every": 10, "eval_batch_size": 32},
            }
        ],
        "trials_per_task": 1,
        "hparams": HPARAMS,
        "device": "cpu",
        "resources": {"cpus": 1, "max_in_flight": 2},
    }
    data.update(overrides)
    return JobSpec.from_dict(data)


def test_intermediate_values_travel_through_the_relay_into_the_studies(
    ray_instance: None, tmp_path: Path
) -> None:
    from search._driver import run_job

    url = _sqlite(tmp_path)
    spec = _spec(pruner="median", trials_per_task=2)
    started: list[dict[str, Any]] = []
    feed = ProgressFeed()
    feed.subscribe(lambda event, data: started.append(data["worker"]) if event == "trial_started" else None)
    job_id = run_job(spec, resolve_settings(db_url=url, env={}), progress=feed)

    with ResultStore.open(url) as store:
        assert store.get_job(job_id).state == "finished"
        trials = store.trials(job_id=job_id)
    assert len(trials) == 4 and all(t.status in ("ok", "pruned") for t in trials)
    assert {t.worker_pid for t in trials} <= {w["pid"] for w in started}  # the relay saw each worker
    for trial in trials:
        study = optuna.load_study(study_name=trial.study_name, storage=url)
        frozen = study.trials[trial.optuna_trial_number]
        # Every validation value the worker reported reached the trial's Optuna study.
        assert frozen.intermediate_values == {step: value for step, value in trial.curve}
        assert len(frozen.intermediate_values) >= 1
        assert frozen.state == (TrialState.COMPLETE if trial.status == "ok" else TrialState.PRUNED)
        assert frozen.params["learning_rate"] == pytest.approx(trial.hparams["learning_rate"])
    assert feed.trials_done == 4 and feed.trials_running == 0


def test_a_worker_killed_mid_trial_is_retried_then_recorded_failed(
    ray_instance: None, tmp_path: Path
) -> None:
    """SIGKILL the worker process of three trial attempts: the baseline's first attempt (its
    retry succeeds) and both attempts of the fixed cell's trial (recorded failed)."""
    from search._driver import run_job

    url = _sqlite(tmp_path)
    # Trials long enough to be killed while they run (the relay reports the start at once).
    task = {"name": "memorize", "settings": MEMORIZE, "budget": {"max_steps": 100000, "max_seconds": 2.0}}
    spec = _spec(tasks=[task], resources={"cpus": 1, "max_in_flight": 1})
    starts: list[int] = []
    killed: list[int] = []
    feed = ProgressFeed()

    def kill(event: str, data: dict[str, Any]) -> None:
        # One trial at a time: starts 1-2 are the baseline's attempts, 3-4 the fixed cell's.
        if event == "trial_started":
            starts.append(data["worker"]["pid"])
            if len(starts) in (1, 3, 4):
                os.kill(data["worker"]["pid"], signal.SIGKILL)
                killed.append(data["worker"]["pid"])

    feed.subscribe(kill)
    job_id = run_job(spec, resolve_settings(db_url=url, env={}), progress=feed, max_retries=1)

    assert len(killed) == 3
    with ResultStore.open(url) as store:
        assert store.get_job(job_id).state == "finished"
        trials = store.trials(job_id=job_id)
        names = {t.architecture_id: store.get_architecture(t.architecture_id).library_name for t in trials}
    by_cell = {name: [t for t in trials if names[t.architecture_id] == name] for name in ("gru", "tanh")}
    gru, tanh = by_cell["gru"], by_cell["tanh"]
    assert [(t.attempt, t.status) for t in gru] == [(1, "interrupted"), (2, "ok")]
    assert "WorkerCrashedError" in gru[0].error or "died" in gru[0].error.lower()
    assert [(t.attempt, t.status) for t in tanh] == [(1, "interrupted"), (2, "failed")]
    assert "after 2 attempts" in tanh[1].error
    # The retry is the same Optuna trial with the same hyperparameters.
    assert gru[0].optuna_trial_number == gru[1].optuna_trial_number and gru[0].hparams == gru[1].hparams
    study = optuna.load_study(study_name=tanh[0].study_name, storage=url)
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    assert feed.trials_retried == 2 and feed.trials_failed == 1 and feed.trials_done == 2


@pytest.mark.parametrize("budget", [{"max_trials": 3}, {"max_seconds": 4.0}], ids=["trials", "seconds"])
def test_a_search_stops_at_its_budget(ray_instance: None, tmp_path: Path, budget: dict[str, Any]) -> None:
    from search._driver import run_job

    url = _sqlite(tmp_path)
    spec = _spec(
        strategy={"kind": "random", "num_states": 1, "max_nodes": 6},
        seed_cells=["lstm"],
        trials_per_task=2,
        budget=budget,
    )
    job_id = run_job(spec, resolve_settings(db_url=url, env={}))
    with ResultStore.open(url) as store:
        job = store.get_job(job_id)
        trials = store.trials(job_id=job_id)
    assert all(t.status != "running" for t in trials)
    if "max_trials" in budget:
        assert len(trials) == 3  # the baseline's two, then one of lstm's: the stages are cut short
        # lstm never got a score: the job found nothing, and says why.
        assert (job.state, job.error) == (
            "failed",
            "nothing was scored: the budget (max_trials=3) ran out before a candidate got a score",
        )
    else:
        # Whether lstm was scored in time depends on the machine's speed; either way it is said.
        budget_spent = "nothing was scored: the budget (max_seconds=4) ran out before a candidate got a score"
        assert (job.state, job.error) in (("finished", None), ("failed", budget_spent))
        assert job.started_at is not None
        # Nothing started after the deadline; what ran then was allowed to finish.
        assert all((t.started_at - job.started_at).total_seconds() <= budget["max_seconds"] for t in trials)
        assert all(t.status in ("ok", "diverged", "failed") for t in trials)  # none cut off


def test_a_child_starts_from_its_parents_best_hyperparameters(ray_instance: None, tmp_path: Path) -> None:
    """No seed cells: the list holds only the baseline once it is scored, so the one child is a
    mutant of gru, proposed after gru's trials, and its first trial is gru's best setting."""
    from search._driver import run_job

    url = _sqlite(tmp_path)
    spec = _spec(
        strategy={"kind": "jozefowicz", "p_refine": 0.0},
        seed_cells=[],
        trials_per_task=2,
        budget={"max_architectures": 1},
    )
    job_id = run_job(spec, resolve_settings(db_url=url, env={}))
    with ResultStore.open(url) as store:
        assert store.get_job(job_id).state == "finished"
        members = store.job_architectures(job_id)
        records = {m.architecture_id: store.get_architecture(m.architecture_id) for m in members}
        (child,) = [r for r in records.values() if r.library_name is None]
        parent = records[child.parent_id]
        assert parent.library_name == "gru" and child.mutation
        (parent_eval,) = store.evaluations(job_id, arch_id=parent.id)
        best = store.get_trial(parent_eval.best_trial_id)
        first = min(store.trials(job_id=job_id), key=lambda t: (t.architecture_id != child.id, t.id))
    assert first.architecture_id == child.id and first.optuna_trial_number == 0
    sampled = spec.search_space(spec.tasks[0]).to_optuna()
    assert sampled and {k: first.hparams[k] for k in sampled} == {k: best.hparams[k] for k in sampled}
