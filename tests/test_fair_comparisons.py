"""Within a job, every cell of a task meets the same trials: the k-th trial of each cell on a
task has the same sampled hyperparameters and seed, hence the same stream of training batches
(``docs/fair-comparisons.md``). The job walks through the real architecture book and the
trial scheduler's asks; no Ray (nothing is submitted)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from search import ResultStore
from search._book import Architecture, ArchitectureBook
from search._job_budget import JobBudget
from search._job_strategy import make_strategy
from search._jobspec import JobSpec
from search._progress import ProgressFeed
from search._scheduler import TrialScheduler
from search._tuning import StudyBook
from workers import HyperParams, make_task

TRIALS = 3
BATCHES = 4
MEMORIZE = {"min_length": 3, "max_length": 5, "symbols": 4, "valid_size": 32, "test_size": 32}
SPACE = {
    "hidden_size": 16,
    "batch_size": {"low": 4, "high": 16},
    "learning_rate": {"low": 1e-4, "high": 1e-1, "log": True},
    "dropout": {"low": 0.0, "high": 0.5},
}


def write_corpus(folder: Path) -> dict[str, Any]:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(40)]
    for split, lines in (("train", 300), ("valid", 40), ("test", 40)):
        rows = (" ".join(rng.choice(words) for _ in range(10)) for _ in range(lines))
        (folder / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return {"dir": str(folder), "train": "train.txt", "valid": "valid.txt", "test": "test.txt", "bptt": 8}


def job(text: dict[str, Any], sampler: str, **overrides: Any) -> JobSpec:
    budget = {"max_steps": 10, "eval_every": 10, "eval_batch_size": 16}
    data: dict[str, Any] = {
        "name": "fair",
        "seed": 7,
        "strategy": {"kind": "fixed", "cells": ["tanh"]},
        "seed_cells": [],
        "baselines": ["gru"],
        "tasks": [
            {"name": "memorize", "settings": MEMORIZE, "budget": budget},
            {"name": "text", "settings": text, "budget": budget},
        ],
        "trials_per_task": TRIALS,
        "sampler": sampler,
        "hparams": SPACE,
        "device": "cpu",
        "resources": {"cpus": 1, "max_in_flight": 1},
    }
    data.update(overrides)
    return JobSpec.from_dict(data)


def walk(spec: JobSpec, url: str) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Run the job's decisions without training: each launch's trials are asked as the scheduler
    asks them, and told a value that differs by cell (the draws must not depend on it).
    Returns (cell, task id) -> the trials' hyperparameters in order."""
    feed = ProgressFeed()
    seen: dict[tuple[str, str], list[dict[str, Any]]] = {}
    values = {"gru": 0.6, "tanh": 0.3}
    with ResultStore.open(url) as store:
        job_id = store.create_job(spec)
        budget = JobBudget(spec.budget)
        studies = StudyBook(url, sampler=spec.sampler, pruner=spec.pruner, seed=spec.seed)
        book = ArchitectureBook(spec, job_id, store, studies, make_strategy(spec), budget, feed)
        scheduler = TrialScheduler(spec, job_id, store, book, budget, feed)
        book.start()
        for _ in range(100):
            launch = book.next_launch()
            if launch is None:
                if not book.may_propose(max_in_flight=1):
                    break
                book.propose()
                continue
            arch, task, wanted = launch
            planned = scheduler.ask(arch, task, wanted)
            study = book.study(arch, task)
            for _ in planned:
                book.trial_started(arch, task)
            for trial in planned:
                value = values[_name(arch)] if task.id != "text" else 1.0 / values[_name(arch)]
                study.tell(trial.number, "ok", value)
                book.trial_ended(arch, task, value, hparams=trial.hparams)
                seen.setdefault((_name(arch), task.id), []).append(trial.hparams)
            book.settle()
        studies.close()
    return seen


def _name(arch: Architecture) -> str:
    return "gru" if arch.baseline else "tanh"  # the job's one baseline, its one fixed cell


@pytest.mark.parametrize("sampler", ["random", "tpe"])  # tpe: its random start-up trials
def test_every_cell_of_a_task_meets_the_same_trials_and_batches(tmp_path: Path, sampler: str) -> None:
    text = write_corpus(tmp_path)
    seen = walk(job(text, sampler), f"sqlite:///{tmp_path / 'results.db'}")
    assert sorted(seen) == [("gru", "memorize"), ("gru", "text"), ("tanh", "memorize"), ("tanh", "text")]
    tasks = {"memorize": make_task("memorize", **MEMORIZE), "text": make_task("text", **text)}
    for task_id, task in tasks.items():
        baseline, cell = seen[("gru", task_id)], seen[("tanh", task_id)]
        assert len(baseline) == len(cell) == TRIALS
        assert baseline == cell  # the k-th trials: same draw, same seed
        assert len({hp["seed"] for hp in cell}) == TRIALS  # the trials themselves differ
        assert len({hp["learning_rate"] for hp in cell}) == TRIALS
        for left, right in zip(baseline, cell, strict=True):
            hp = HyperParams.model_validate(left)
            ours = task.train_batches(hp.batch_size, hp.seed)
            theirs = task.train_batches(right["batch_size"], right["seed"])
            for _ in range(BATCHES):
                mine, other = next(ours), next(theirs)
                assert torch.equal(mine.inputs, other.inputs) and torch.equal(mine.targets, other.targets)
                assert torch.equal(mine.mask, other.mask) and mine.continues == other.continues
        # and the data order does differ from one trial to the next
        first, second = (HyperParams.model_validate(hp) for hp in cell[:2])
        a = next(task.train_batches(first.batch_size, first.seed)).inputs
        b = next(task.train_batches(second.batch_size, second.seed)).inputs
        assert a.shape != b.shape or not torch.equal(a, b)
    # Tasks are paired with themselves only: the two tasks' k-th draws are not the same.
    assert [hp["learning_rate"] for hp in seen[("tanh", "memorize")]] != [
        hp["learning_rate"] for hp in seen[("tanh", "text")]
    ]


def test_a_job_seed_changes_every_draw_and_a_job_that_sets_seed_keeps_it(tmp_path: Path) -> None:
    text = write_corpus(tmp_path)
    seven = walk(job(text, "random"), f"sqlite:///{tmp_path / 'a.db'}")
    again = walk(job(text, "random"), f"sqlite:///{tmp_path / 'b.db'}")
    assert again == seven  # a job is a function of its file and seed
    other = walk(job(text, "random", seed=8), f"sqlite:///{tmp_path / 'c.db'}")
    for key, trials in other.items():
        assert [hp["learning_rate"] for hp in trials] != [hp["learning_rate"] for hp in seven[key]]
        assert [hp["seed"] for hp in trials] != [hp["seed"] for hp in seven[key]]
    fixed = walk(job(text, "random", hparams={**SPACE, "seed": 5}), f"sqlite:///{tmp_path / 'd.db'}")
    assert {hp["seed"] for trials in fixed.values() for hp in trials} == {5}
    assert fixed[("gru", "text")] == fixed[("tanh", "text")]
