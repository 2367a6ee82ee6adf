"""The intervals the architecture book records next to its point estimates.

When a task's stage is recorded, its evaluation gets the bootstrap interval of its best
value (:func:`evaluation_interval`, from its ``ok`` trials, read in one query: never on the
per-trial path). When an architecture is scored, :func:`score_bounds` recomputes its
evaluations' intervals (a refinement may have added trials), carries each against the best
baseline's interval on that task to the relative score, and takes the minimum over the search
tasks for the score (:mod:`search._intervals`; what they mean: ``docs/uncertainty.md``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from search._intervals import Interval, best_interval, relative_interval, score_interval
from search._jobspec import TaskEntry
from search._store_reader import StoreReader
from search._strategies import Stages
from workers import Direction


class Evaluated(Protocol):
    """An architecture of the book as far as its bounds go: its evaluations and stages."""

    evaluations: dict[str, int]
    stages: Stages


@dataclass(frozen=True)
class ScoreBounds:
    """An architecture's intervals: per task id, its best value's and its relative score's; its score's."""

    best: dict[str, Interval | None] = field(default_factory=dict)
    relative: dict[str, Interval | None] = field(default_factory=dict)
    score: Interval | None = None


def evaluation_interval(store: StoreReader, evaluation_id: int, direction: Direction) -> Interval | None:
    """The bootstrap interval of an evaluation's best value over its ``ok`` trials (``None``
    with fewer than 2)."""
    return best_interval(store.ok_trial_values(evaluation_id), direction)


def best_baseline_evaluation(baselines: Sequence[Evaluated], task_id: str, best: float | None) -> int | None:
    """The evaluation of the baseline that set the task's best baseline value (the first of
    equals), ``None`` when none did."""
    if best is None:
        return None
    for baseline in baselines:
        if baseline.stages.progress[task_id].best == best and task_id in baseline.evaluations:
            return baseline.evaluations[task_id]
    return None


def score_bounds(
    store: StoreReader,
    tasks: Sequence[TaskEntry],
    arch: Evaluated,
    baselines: Sequence[Evaluated],
    relative: Mapping[str, float | None],
    baseline_best: Mapping[str, float | None],
) -> ScoreBounds:
    """The intervals of a retired architecture's evaluations, relative scores and score.

    ``relative``: its relative scores by task id (:meth:`Stages.relative`); ``baseline_best``:
    the best baseline value of each task. A task's relative interval is ``None`` where its
    relative score is, or either side has too few trials; the score's is ``None`` when a
    search task that counts in the score has none."""
    best: dict[str, Interval | None] = {}
    bounds: dict[str, Interval | None] = {}
    for task in tasks:
        if task.id not in relative or task.id not in arch.evaluations:
            continue
        best[task.id] = evaluation_interval(store, arch.evaluations[task.id], task.direction)
        baseline_id = best_baseline_evaluation(baselines, task.id, baseline_best.get(task.id))
        baseline = None if baseline_id is None else store.get_evaluation(baseline_id).best_interval
        bounds[task.id] = (
            None if relative[task.id] is None else relative_interval(best[task.id], baseline, task.direction)
        )
    counted = set(arch.stages.scored())  # of a halving ladder, the highest rung reached
    scored = [bounds.get(t.id) for t in tasks if t.id in counted and relative.get(t.id) is not None]
    return ScoreBounds(best=best, relative=bounds, score=score_interval(scored))
