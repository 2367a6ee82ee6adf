"""Successive halving across architectures: a ladder of budgets, the best ``1/eta`` go up.

With a job's ``halving`` section, each ``search`` task becomes a ladder of ``rungs`` tasks.
Rung ``r`` trains with ``max_steps = floor(task max_steps / eta ** (rungs - 1 - r))`` (the
task's own budget is the top rung, which keeps the task's id; a lower rung's id is the task's
id and ``.r<r>``, so each rung is an evaluation of its own, with its own task key). A
candidate finishing rung ``r`` is promoted as soon as it is among the best
``floor(n / eta)`` of the ``n`` candidates that have finished rung ``r`` so far, as the
book has learned them (asynchronous successive halving, ASHA: Li et al. 2018/2020,
after Jamieson and Talwalkar 2016, Li et al. 2017). Until then it is stopped at its rung;
a later result may still promote it. Filter and report-only tasks are not laddered.

Example:
    >>> from search._job_tasks import TaskEntry
    >>> section = HalvingSection(eta=3, rungs=3)
    >>> job_tasks = [TaskEntry(name="arith", budget={"max_steps": 900})]
    >>> [(t.id, t.budget.max_steps) for t in ladder_tasks(job_tasks, section)]
    [('arith.r0', 100), ('arith.r1', 300), ('arith', 900)]
    >>> ladder = Ladder(job_tasks, section)
    >>> [ladder.record(h, "arith.r0", v) for h, v in (("a", 0.5), ("b", 0.9), ("c", 0.1))]
    [[], [], ['b']]
    >>> ladder.verdict("a", "arith.r0"), ladder.verdict("b", "arith.r0"), ladder.verdict("d", "arith.r0")
    (False, True, None)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import Field

from search._job_model import StrictModel
from search._job_tasks import TaskEntry
from workers import MAX_SCORE_HORIZON, Budget, Direction

MAX_ETA = 10
MAX_RUNGS = 6


class HalvingSection(StrictModel):
    """A job's ``halving`` section: successive halving of the candidates across budgets."""

    eta: int = Field(default=3, ge=2, le=MAX_ETA, strict=True)
    """2 to 10: each rung trains ``eta`` times longer than the one below it, and the best
    ``1/eta`` of a rung's candidates go up to the next."""
    rungs: int = Field(default=3, ge=2, le=MAX_RUNGS, strict=True)
    """2 to 6 budgets per search task, the task's own ``max_steps`` the top one."""

    def steps(self, max_steps: int, rung: int) -> int:
        """The steps of ``rung`` (0 the lowest) of a task trained ``max_steps`` at the top.

        Example:
            >>> [HalvingSection(eta=2, rungs=4).steps(100, r) for r in range(4)]
            [12, 25, 50, 100]
        """
        if not 0 <= rung < self.rungs:
            raise ValueError(f"rung {rung} outside 0 to {self.rungs - 1}")
        return max_steps // self.eta ** (self.rungs - 1 - rung)

    def budget(self, budget: Budget, rung: int) -> Budget:
        """A rung's trial budget: the steps (and any time limit) scaled down, validation at
        least at the end of the rung; a ``predicted`` score reads every rung's curve at the
        same step as the top rung's (its horizon scaled up, within the field's limit).

        Example:
            >>> rung = HalvingSection(eta=3, rungs=3).budget(Budget(max_steps=900, score="predicted"), 0)
            >>> rung.max_steps, rung.score, rung.score_horizon
            (100, 'predicted', 90.0)
        """
        if budget.max_steps is None:
            raise ValueError("a laddered task needs max_steps")
        steps = self.steps(budget.max_steps, rung)
        factor = self.eta ** (self.rungs - 1 - rung)
        seconds = None if budget.max_seconds is None else budget.max_seconds / factor
        horizon = min(budget.score_horizon * budget.max_steps / steps, MAX_SCORE_HORIZON)
        return budget.model_copy(
            update={
                "max_steps": steps,
                "max_seconds": seconds,
                "eval_every": min(budget.eval_every, steps),
                "score_horizon": horizon if budget.score == "predicted" else budget.score_horizon,
            }
        )

    def problems(self, tasks: Sequence[TaskEntry]) -> list[tuple[tuple[int | str, ...], str]]:
        """Why the job's tasks cannot be laddered (field path, reason); empty when they can."""
        problems: list[tuple[tuple[int | str, ...], str]] = []
        ids = {t.id for t in tasks}
        lowest = self.eta ** (self.rungs - 1)
        for i, task in enumerate(tasks):
            if task.role != "search":
                continue
            steps = task.budget.max_steps
            if steps is None:
                reason = "halving needs a step budget on each search task"
                problems.append(((i, "budget", "max_steps"), reason))
            elif steps < lowest:
                reason = f"eta {self.eta} and {self.rungs} rungs need max_steps of at least {lowest}"
                problems.append(((i, "budget", "max_steps"), reason))
            taken = sorted(ids & {rung_id(task.id, r) for r in range(self.rungs - 1)})
            if taken:
                reason = f"halving names this task's rungs {', '.join(taken)}: relabel that task"
                problems.append(((i,), reason))
        return problems


def rung_id(task_id: str, rung: int) -> str:
    """The id of a lower rung of a laddered task (the top rung keeps the task's id)."""
    return f"{task_id}.r{rung}"


@dataclass(frozen=True)
class Rung:
    """One rung of a laddered task: the ladder (the task's id), its place, and whether it is the top."""

    ladder: str
    index: int
    top: bool


def ladder_tasks(tasks: Sequence[TaskEntry], section: HalvingSection | None) -> list[TaskEntry]:
    """The job's stages: each search task preceded by its lower rungs (unchanged without ``section``)."""
    if section is None:
        return list(tasks)
    stages: list[TaskEntry] = []
    for task in tasks:
        if task.role == "search":
            for r in range(section.rungs - 1):
                label = rung_id(task.id, r)
                # A copy keeps the job's hparams (a private attribute) that the task key holds.
                budget = section.budget(task.budget, r)
                stages.append(task.model_copy(update={"label": label, "threshold": None, "budget": budget}))
        stages.append(task)
    return stages


def rungs_of(tasks: Sequence[TaskEntry], section: HalvingSection | None) -> dict[str, Rung]:
    """Task id -> its rung, for every rung of every laddered task of ``ladder_tasks(tasks)``."""
    if section is None:
        return {}
    rungs: dict[str, Rung] = {}
    for task in tasks:
        if task.role == "search":
            for r in range(section.rungs - 1):
                rungs[rung_id(task.id, r)] = Rung(task.id, r, top=False)
            rungs[task.id] = Rung(task.id, section.rungs - 1, top=True)
    return rungs


@dataclass
class _RungResults:
    direction: Direction
    finished: list[tuple[str, float | None]] = field(default_factory=list)
    """(candidate hash, best value) in the order the book learned them."""
    promoted: set[str] = field(default_factory=set)


class Ladder:
    """The job's rungs: which candidates finished each, with what value, and who went up.

    Only gated candidates enter (baselines run every rung and are not ranked). A decision
    depends on the results recorded so far and their order, nothing else.
    """

    def __init__(self, tasks: Sequence[TaskEntry], section: HalvingSection) -> None:
        """``tasks``: the job's own task entries (not yet laddered)."""
        self.eta = section.eta
        self.rungs = rungs_of(tasks, section)
        directions = {t.id: t.direction for t in tasks}
        self._results = {
            i: _RungResults(directions[rung.ladder]) for i, rung in self.rungs.items() if not rung.top
        }

    def laddered(self, task_id: str) -> bool:
        """Whether ``task_id`` is a rung that promotes (below the top of its ladder)."""
        return task_id in self._results

    def verdict(self, cell_hash: str, task_id: str) -> bool | None:
        """Promoted from this rung (``True``), not (yet) (``False``), or not recorded on it (``None``)."""
        results = self._results[task_id]
        if cell_hash in results.promoted:
            return True
        return False if any(h == cell_hash for h, _ in results.finished) else None

    def record(self, cell_hash: str, task_id: str, value: float | None) -> list[str]:
        """A candidate finished rung ``task_id`` with best ``value``: the candidates promoted by it
        (it among them, or earlier ones it lifted past the quota), best first."""
        results = self._results[task_id]
        if any(h == cell_hash for h, _ in results.finished):
            return []
        results.finished.append((cell_hash, value))
        best = top_share(results.finished, self.eta, results.direction)
        new = [h for h in best if h not in results.promoted]
        results.promoted.update(new)
        return new

    def counts(self) -> dict[str, tuple[int, int]]:
        """Rung id -> (candidates finished, candidates promoted)."""
        return {i: (len(r.finished), len(r.promoted)) for i, r in self._results.items()}


def top_share(finished: Sequence[tuple[str, float | None]], eta: int, direction: Direction) -> list[str]:
    """The best ``floor(n / eta)`` of ``n`` finished candidates, best first; no value ranks last,
    ties go to the one finished first.

    Example:
        >>> top_share([("a", 0.2), ("b", 0.7), ("c", None), ("d", 0.7)], 2, Direction.MAXIMIZE)
        ['b', 'd']
    """
    sign = -1.0 if Direction(direction) is Direction.MAXIMIZE else 1.0
    order = sorted(
        range(len(finished)),
        key=lambda i: (finished[i][1] is None, sign * (finished[i][1] or 0.0), i),
    )
    return [finished[i][0] for i in order[: len(finished) // eta]]
