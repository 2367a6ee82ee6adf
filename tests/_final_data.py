"""A hand-made job with a final round, for the results, views, report and tracking tests.

Four cells on two search tasks, ``gru`` the baseline. The round took three of them (and gru)
and trained each again with 3 seeds; ``tanh`` it did not take. The answers the tests expect:

- by the final score: mut1 (1.02), gru (1.0), lstm (0.9), then tanh (not taken, search 0.95)
  although lstm has the best search score (1.2);
- lstm is better than gru on arith (p = 0.003) and worse on xml (p = 0.0004); mut1 is not
  distinguishable on arith (p = 0.2) and better on xml (p = 0.04).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cells import library
from search import ResultStore
from search._final_round import final_task
from search._intervals import Interval
from search._jobspec import JobSpec
from workers import TrialResult

FINAL_JOB = {
    "name": "finals",
    "strategy": {"kind": "fixed", "cells": ["gru", "lstm", "mut1", "tanh"]},
    "seed_cells": [],
    "baselines": ["gru"],
    "tasks": [{"name": "arith", "role": "search"}, {"name": "xml", "role": "search"}],
    "final": {"top_k": 2, "seeds": 3},
}

SEARCH_SCORES = {"gru": 1.0, "lstm": 1.2, "mut1": 1.1, "tanh": 0.95}
FINAL_SCORES = {
    "gru": (1.0, Interval(0.95, 1.04)),
    "lstm": (0.9, Interval(0.85, 0.95)),
    "mut1": (1.02, Interval(0.98, 1.06)),
}
BY_FINAL = ["mut1", "gru", "lstm", "tanh"]

# cell -> final task -> (seed values, mean, mean interval, relative, relative interval, verdict, p)
FINALS: dict[
    str, dict[str, tuple[list[float], float, Interval, float, Interval, str | None, float | None]]
] = {
    "gru": {
        "arith.final": ([0.49, 0.5, 0.51], 0.5, Interval(0.475, 0.525), 1.0, Interval(0.9, 1.1), None, None),
        "xml.final": ([0.59, 0.6, 0.61], 0.6, Interval(0.575, 0.625), 1.0, Interval(0.95, 1.04), None, None),
    },
    "lstm": {
        "arith.final": (
            [0.54, 0.55, 0.56],
            0.55,
            Interval(0.525, 0.575),
            1.1,
            Interval(1.0, 1.2),
            "better",
            0.003,
        ),
        "xml.final": (
            [0.53, 0.54, 0.55],
            0.54,
            Interval(0.515, 0.565),
            0.9,
            Interval(0.85, 0.95),
            "worse",
            0.0004,
        ),
    },
    "mut1": {
        "arith.final": (
            [0.5, 0.52, 0.54],
            0.52,
            Interval(0.47, 0.57),
            1.04,
            Interval(0.9, 1.2),
            "indistinguishable",
            0.2,
        ),
        "xml.final": (
            [0.61, 0.612, 0.614],
            0.612,
            Interval(0.607, 0.617),
            1.02,
            Interval(0.98, 1.06),
            "better",
            0.04,
        ),
    },
}


@dataclass
class FinalJob:
    url: str
    job: int = 0
    ids: dict[str, int] = field(default_factory=dict)


def build_final_job(url: str, *, with_final: bool = True) -> FinalJob:
    """Record the job described above in the database at ``url`` (created if missing);
    without ``with_final``, as it stands before its final round (see :func:`record_final_round`)."""
    data = FinalJob(url=url)
    store = ResultStore.open(url)
    try:
        spec = JobSpec.from_dict(FINAL_JOB)
        job = data.job = store.create_job(spec)
        store.set_job_state(job, "running")
        for name, score in SEARCH_SCORES.items():
            arch, _ = store.add_architecture(library.get(name), job_id=job, library_name=name)
            data.ids[name] = arch
            for task in spec.tasks:
                evaluation = store.get_or_create_evaluation(job, arch, task)
                _trials(store, evaluation.id, [0.5 * score], task.name)
                store.set_evaluation(evaluation.id, status="done", relative_score=score)
            store.update_job_architecture(job, arch, score=score, evaluated=True)
        store.set_job_state(job, "finished")
    finally:
        store.close()
    if with_final:
        record_final_round(data)
    return data


def record_final_round(data: FinalJob) -> None:
    """What the job's final round found: its evaluations and final scores."""
    store = ResultStore.open(data.url)
    try:
        spec = JobSpec.from_dict(FINAL_JOB)
        finals = {f"{t.id}.final": final_task(t, 3) for t in spec.tasks}
        for name, results in FINALS.items():
            arch = data.ids[name]
            for label, (values, mean, mean_iv, relative, relative_iv, verdict, p) in results.items():
                evaluation = store.get_or_create_evaluation(data.job, arch, finals[label])
                _trials(store, evaluation.id, values, finals[label].name)
                store.set_evaluation(
                    evaluation.id,
                    status="done",
                    relative_score=relative,
                    best_interval=mean_iv,
                    relative_interval=relative_iv,
                    final=(mean, verdict, p),
                )
            final_score, final_iv = FINAL_SCORES[name]
            store.update_job_architecture(data.job, arch, final_score=final_score, final_interval=final_iv)
    finally:
        store.close()


def _trials(store: ResultStore, evaluation_id: int, values: list[float], task: str) -> None:
    for seed, value in enumerate(values):
        trial = store.start_trial(evaluation_id, hparams={"learning_rate": 0.01, "seed": seed})
        store.finish_trial(
            trial, TrialResult(status="ok", task=task, metric="accuracy", direction="maximize", value=value)
        )
