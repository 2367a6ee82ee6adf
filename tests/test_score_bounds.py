"""The intervals the store keeps and the architecture book writes (:mod:`search._score_bounds`):
an evaluation's best-value interval from its ``ok`` trials, the relative score's against the
best baseline's, the score's over the search tasks; a reused evaluation carries them."""

from __future__ import annotations

from pathlib import Path

import pytest
from _store_data import job_spec, result

from cells import library
from search import ResultStore
from search._intervals import Interval, best_interval, relative_interval
from search._jobspec import JobSpec
from search._progress import ProgressFeed
from search._tuning import StudyBook
from workers import Direction

MEMORIZE = {"min_length": 3, "max_length": 5, "symbols": 4, "valid_size": 32, "test_size": 32}
BASELINE_VALUES = (0.50, 0.62, 0.58)
CELL_VALUES = (0.30, 0.41, 0.36)


def test_intervals_round_trip_and_a_copy_carries_them(store: ResultStore) -> None:
    spec = job_spec("first")
    first = store.create_job(spec)
    arch_id, _ = store.add_architecture(library.get("gru"), job_id=first)
    evaluation = store.get_or_create_evaluation(first, arch_id, spec.task("arith"))
    for value, status in ((0.3, "ok"), (0.6, "ok"), (0.9, "pruned"), (None, "failed")):
        store.finish_trial(store.start_trial(evaluation.id, hparams={}), result(status, value))
    assert store.ok_trial_values(evaluation.id) == [0.3, 0.6]  # only ok trials with a value
    store.set_evaluation(
        evaluation.id, status="done", best_interval=Interval(0.3, 0.6), relative_interval=Interval(0.9, 1.2)
    )
    store.update_job_architecture(first, arch_id, score=1.0, score_interval=Interval(0.9, 1.2))
    stored = store.get_evaluation(evaluation.id)
    assert (stored.best_interval, stored.relative_interval) == (Interval(0.3, 0.6), Interval(0.9, 1.2))
    assert store.job_architecture(first, arch_id).score_interval == Interval(0.9, 1.2)  # type: ignore[union-attr]

    second = store.create_job(job_spec("second"))
    store.add_architecture(library.get("gru"), job_id=second)
    copied = store.copy_evaluation_into_job(evaluation.id, second)
    assert (copied.best_interval, copied.relative_interval) == (Interval(0.3, 0.6), Interval(0.9, 1.2))
    # The copy has no trials of its own: its values are the original's, then its own.
    assert store.ok_trial_values(copied.id) == [0.3, 0.6]
    store.finish_trial(store.start_trial(copied.id, hparams={}), result("ok", 0.7))
    assert store.ok_trial_values(copied.id) == [0.3, 0.6, 0.7]

    store.set_evaluation(evaluation.id, best_interval=None)  # None clears, the other stays
    cleared = store.get_evaluation(evaluation.id)
    assert (cleared.best_low, cleared.best_high) == (None, None)
    assert cleared.relative_interval == Interval(0.9, 1.2)
    store.update_job_architecture(first, arch_id, listed=True)  # other fields leave the bounds alone
    assert store.job_architecture(first, arch_id).score_interval == Interval(0.9, 1.2)  # type: ignore[union-attr]


def _spec() -> JobSpec:
    return JobSpec.from_dict(
        {
            "name": "bounds",
            "strategy": {"kind": "fixed", "cells": ["tanh"]},
            "seed_cells": [],
            "baselines": ["gru"],
            "tasks": [{"name": "memorize", "settings": MEMORIZE, "budget": {"max_steps": 30}}],
            "trials_per_task": len(BASELINE_VALUES),
            "hparams": {"hidden_size": 16, "num_layers": 1, "batch_size": 16},
            "device": "cpu",
        }
    )


def test_the_book_writes_every_interval_from_the_stored_trials(tmp_path: Path) -> None:
    """The book alone (no Ray): each trial is stored as the scheduler would, then reported."""
    from search._book import ArchitectureBook
    from search._job_budget import JobBudget
    from search._job_strategy import make_strategy

    url = f"sqlite:///{tmp_path / 'results.db'}"
    spec = _spec()
    with ResultStore.open(url) as store:
        job_id = store.create_job(spec)
        studies = StudyBook(url, sampler=spec.sampler, pruner=spec.pruner, seed=spec.seed)
        budget, feed = JobBudget(spec.budget), ProgressFeed()
        book = ArchitectureBook(spec, job_id, store, studies, make_strategy(spec), budget, feed)
        book.start()
        archs = []
        for values in (BASELINE_VALUES, CELL_VALUES):  # the baseline (gru), then the fixed cell (tanh)
            if book.next_launch() is None:
                book.propose()
            launch = book.next_launch()
            assert launch is not None
            arch, task, wanted = launch
            assert wanted == len(values)
            evaluation_id = book.evaluation(arch, task)
            for value in values:
                book.trial_started(arch, task)
                trial_id = store.start_trial(evaluation_id, hparams={})
                store.finish_trial(trial_id, result("ok", value, task="memorize"))
                book.trial_ended(arch, task, value)
            book.settle()
            archs.append(arch)
        studies.close()
        baseline, cell = (store.get_evaluation(a.evaluations["memorize"]) for a in archs)
        members = {m.architecture_id: m for m in store.job_architectures(job_id)}

    baseline_iv = best_interval(BASELINE_VALUES, Direction.MAXIMIZE)
    cell_iv = best_interval(CELL_VALUES, Direction.MAXIMIZE)
    assert baseline_iv is not None and cell_iv is not None
    assert (baseline.best_interval, cell.best_interval) == (baseline_iv, cell_iv)
    assert baseline_iv.high == 0.62 and cell_iv.high == 0.41  # a resample never beats the best trial
    expected = relative_interval(cell_iv, baseline_iv, Direction.MAXIMIZE)
    assert cell.relative_interval == expected
    assert expected is not None and expected.contains(cell.relative_score)  # type: ignore[arg-type]
    assert cell.relative_score == pytest.approx(0.41 / 0.62)
    # One search task: the score's interval is that task's relative interval.
    assert members[archs[1].id].score_interval == expected
    own = members[archs[0].id]  # the baseline against itself: its interval holds 1
    assert own.score == 1.0 and own.score_interval is not None and own.score_interval.contains(1.0)
