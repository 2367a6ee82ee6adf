"""Population training in the driver: trials of one (cell, task) that share a shape go to Ray as
one task, and each member is still its own Optuna trial and its own trial row.

Real local Ray, real SQLite, real training (tiny budgets), a real median pruner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from search import ResultStore
from search._jobspec import JobSpec
from search._settings import resolve_settings

MEMORIZE = {"min_length": 3, "max_length": 5, "symbols": 4, "valid_size": 32, "test_size": 32}
STATES = {"ok": TrialState.COMPLETE, "pruned": TrialState.PRUNED}


def _spec(**overrides: Any) -> JobSpec:
    data: dict[str, Any] = {
        "name": "population-driver-test",
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
        "trials_per_task": 3,
        "population": 3,
        # One shape (the learning rate, init scale, seed... differ): each (cell, task) is one population.
        "hparams": {"hidden_size": 16, "num_layers": 1, "batch_size": 16, "optimizer": "adam"},
        "device": "cpu",
        "resources": {"cpus": 1, "max_in_flight": 2},
    }
    data.update(overrides)
    return JobSpec.from_dict(data)


def _by_study(url: str, job_id: int) -> dict[str | None, list[Any]]:
    with ResultStore.open(url) as store:
        assert store.get_job(job_id).state == "finished"
        trials = sorted(store.trials(job_id=job_id), key=lambda t: t.id)
    grouped: dict[str | None, list[Any]] = {}
    for trial in trials:
        grouped.setdefault(trial.study_name, []).append(trial)
    return grouped


def _check_against_study(url: str, rows: list[Any]) -> list[optuna.trial.FrozenTrial]:
    """Each row is the Optuna trial of its number: same parameters, state, value and curve."""
    study = optuna.load_study(study_name=rows[0].study_name, storage=url)
    assert [t.number for t in study.trials] == list(range(len(rows)))
    assert [r.optuna_trial_number for r in rows] == list(range(len(rows)))  # rows in the study's order
    for row in rows:
        frozen = study.trials[row.optuna_trial_number]
        assert frozen.state == STATES[row.status]
        assert frozen.params["learning_rate"] == pytest.approx(row.hparams["learning_rate"])
        assert frozen.intermediate_values == {step: value for step, value in row.curve}
        if row.status == "ok":
            assert frozen.value == pytest.approx(row.value)
    return study.trials


def test_a_population_of_three_records_three_trials_and_three_optuna_trials(
    ray_instance: None, tmp_path: Path
) -> None:
    """Real training; the median pruner is on so every member reports its curve (three trials:
    none finished before, so none is pruned)."""
    from search._driver import run_job

    url = f"sqlite:///{tmp_path / 'results.db'}"
    job_id = run_job(_spec(pruner="median"), resolve_settings(db_url=url, env={}))
    studies = _by_study(url, job_id)
    assert len(studies) == 2  # (gru, memorize) and (tanh, memorize)
    for rows in studies.values():
        assert len(rows) == 3 and len({r.id for r in rows}) == 3
        assert all(r.status == "ok" and r.value is not None for r in rows)
        assert len({r.hparams["learning_rate"] for r in rows}) == 3  # three distinct settings
        assert len({r.worker_pid for r in rows}) == 1  # trained together, in one Ray task
        assert all(len(r.curve) == 3 for r in rows)  # evaluated at steps 10, 20, 30
        _check_against_study(url, rows)


def test_a_pruned_member_is_recorded_pruned_and_the_rest_finish(ray_instance: None, tmp_path: Path) -> None:
    """Six trials per (cell, task) in populations of three, one population at a time. The
    training is a stand-in (``run_job(evaluate=...)``, members one after another in the
    population's Ray task) so the values, hence the pruner's verdicts, are certain: members
    score 1.0, 0.6, 0.2 in order. The median pruner (three finished trials first) lets the
    second population's 1.0 and 0.6 finish and prunes its 0.2 at its first report."""
    from search._driver import run_job
    from workers import TrialResult

    calls: list[int] = []  # per worker process (Ray keeps the function); three calls per population

    def ranked(cell: Any, task: Any, hparams: Any, budget: Any, report: Any, device: str) -> TrialResult:
        value = 1.0 - 0.4 * (len(calls) % 3)
        calls.append(1)
        curve = []
        for step in (10, 20, 30):
            curve.append((step, value))
            if report is not None and report(step, value):
                return TrialResult(
                    status="pruned", task=task.name, metric="accuracy", direction="maximize", curve=curve
                )
        return TrialResult(
            status="ok", task=task.name, metric="accuracy", direction="maximize", value=value, curve=curve
        )

    url = f"sqlite:///{tmp_path / 'results.db'}"
    spec = _spec(trials_per_task=6, pruner="median", resources={"cpus": 1, "max_in_flight": 1})
    job_id = run_job(spec, resolve_settings(db_url=url, env={}), evaluate=ranked)
    studies = _by_study(url, job_id)
    assert len(studies) == 2
    for rows in studies.values():
        assert [r.status for r in rows] == ["ok", "ok", "ok", "ok", "ok", "pruned"]
        assert [r.value for r in rows] == pytest.approx([1.0, 0.6, 0.2, 1.0, 0.6, None])
        assert [tuple(p) for p in rows[5].curve] == [(10, pytest.approx(0.2))]  # stopped at its first report
        assert len({r.worker_pid for r in rows[:3]}) == 1 and len({r.worker_pid for r in rows[3:]}) == 1
        frozen = _check_against_study(url, rows)
        assert frozen[5].state == TrialState.PRUNED
