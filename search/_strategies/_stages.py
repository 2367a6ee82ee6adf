"""Where one architecture stands in a job's task stages, as pure logic.

Tasks run in the job's order. A gated candidate finishes one task's trials before the
next starts: a ``filter`` task must reach its absolute threshold, a ``search`` task its
threshold relative to the best baseline; otherwise it stops there. An ungated cell (a
baseline, a fixed cell) runs every task at once. With successive halving
(:mod:`search._strategies._halving`) a search task is a ladder of rungs: a lower rung's gate is
the candidate's promotion (``promotion``), the search task's threshold applies at the top rung,
and the score takes each ladder's highest rung finished. The driver applies the gates
(:meth:`Stages.update`), launches what :meth:`Stages.wanted` asks for (a query: it changes
nothing) and reports each finished trial back.

Example:
    >>> from search._job_tasks import TaskEntry
    >>> tasks = [TaskEntry(name="memorize", role="filter", threshold=0.5), TaskEntry(name="arith")]
    >>> stages = Stages(tasks, {"memorize": 2, "arith": 3}, gated=True)
    >>> stages.advance({})
    [('memorize', 2)]
    >>> for value in (0.2, 0.7):
    ...     stages.started("memorize"); stages.finished("memorize", value)
    >>> stages.advance({})  # best 0.7 passes the filter: on to arith
    [('arith', 3)]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from cells import TextEnum
from search._job_tasks import TaskEntry
from search._strategies._halving import Rung
from search._strategies._scoring import best_of, relative_value, worst_task_score


class StageStatus(TextEnum):
    """Where an architecture stands in its stages: still ``running``, stopped by a filter task
    (``filtered``) or a search task's threshold (``stopped``), or through every stage (``done``)."""

    RUNNING = "running"
    FILTERED = "filtered"
    STOPPED = "stopped"
    DONE = "done"


@dataclass
class TaskProgress:
    """Trials of one architecture on one task: wanted, finished, running, and the best value."""

    target: int
    done: int = 0
    running: int = 0
    best: float | None = None

    @property
    def missing(self) -> int:
        """Trials still to launch."""
        return max(0, self.target - self.done - self.running)

    @property
    def complete(self) -> bool:
        return self.done >= self.target


class Stages:
    """The task pipeline of one architecture: what to run next and what the results mean.

    Tasks are named by their id in the job (:attr:`TaskEntry.id`: label, else name).
    ``baselines`` (in :meth:`advance`, :meth:`relative`, :meth:`score`) maps a task id to
    the best baseline value on it, for tasks whose baselines are complete; a gate waits for
    its task's baseline.
    """

    def __init__(
        self,
        tasks: Sequence[TaskEntry],
        trials: Mapping[str, int],
        gated: bool = True,
        rungs: Mapping[str, Rung] | None = None,
        promotion: Callable[[str], bool | None] | None = None,
    ) -> None:
        """``rungs``: task id -> its rung, for laddered tasks; ``promotion(task id)``: whether the
        candidate went up from that lower rung (``None``: its result is not ranked yet)."""
        self.tasks = list(tasks)
        self.gated = gated
        self.rungs = dict(rungs or {})
        self.promotion = promotion
        self.progress = {t.id: TaskProgress(target=trials[t.id]) for t in self.tasks}
        self.status = StageStatus.RUNNING
        self.stopped_at: str | None = None
        """The task whose gate stopped the architecture."""

    def advance(self, baselines: Mapping[str, float | None]) -> list[tuple[str, int]]:
        """Update the status (:meth:`update`) and return what to launch (:meth:`wanted`)."""
        self.update(baselines)
        return self.wanted(baselines)

    def update(self, baselines: Mapping[str, float | None]) -> None:
        """Apply the gates the finished trials decide: ``filtered``, ``stopped`` or ``done``."""
        self.status, self.stopped_at, _ = self._walk(baselines)

    def wanted(self, baselines: Mapping[str, float | None]) -> list[tuple[str, int]]:
        """``(task id, trials to launch)`` pairs; a query: the status does not change."""
        return self._walk(baselines)[2]

    def _walk(
        self, baselines: Mapping[str, float | None]
    ) -> tuple[StageStatus, str | None, list[tuple[str, int]]]:
        """The status, the stopping task and the launches the current progress implies."""
        if self.status in (StageStatus.FILTERED, StageStatus.STOPPED):
            return self.status, self.stopped_at, []
        launch = []
        for task in self.tasks:
            progress = self.progress[task.id]
            if progress.missing:
                launch.append((task.id, progress.missing))
            if not self.gated:
                continue
            if not progress.complete:
                return self.status, self.stopped_at, launch
            verdict = self._gate(task, progress.best, baselines)
            if verdict == "wait":
                return self.status, self.stopped_at, launch
            if isinstance(verdict, StageStatus):  # the gate stopped it here
                return verdict, task.id, []
        if all(p.complete for p in self.progress.values()):
            return StageStatus.DONE, self.stopped_at, launch
        return self.status, self.stopped_at, launch

    def started(self, task: str) -> None:
        self.progress[task].running += 1

    def finished(self, task: str, value: float | None, counted: bool = True) -> None:
        """A trial ended; ``counted=False`` for one that must run again (interrupted)."""
        progress = self.progress[task]
        progress.running -= 1
        if counted:
            progress.done += 1
            direction = self._task(task).direction
            progress.best = best_of([progress.best, value], direction)

    def restore(self, task: str, done: int, best: float | None) -> None:
        """Set a task's finished trials and best value (from the database, or a reused evaluation)."""
        progress = self.progress[task]
        progress.done, progress.best = done, best
        progress.target = max(progress.target, done)

    def refine(self, trials: int) -> bool:
        """Ask for ``trials`` more trials on every search task finished; ``False`` if there is none."""
        tasks = [t for t in self.scored() if self.progress[t].complete]
        for name in tasks:
            self.progress[name].target += trials
        if tasks and self.status is StageStatus.DONE:
            self.status = StageStatus.RUNNING
        return bool(tasks)

    def promote(self) -> bool:
        """Go on from the lower rung the candidate was stopped at (a later result promoted it)."""
        rung = self.rungs.get(self.stopped_at or "")
        if self.status is not StageStatus.STOPPED or rung is None or rung.top:
            return False
        self.status, self.stopped_at = StageStatus.RUNNING, None
        return True

    def scored(self) -> list[str]:
        """The search tasks that count in the score: of a ladder, its highest rung finished (its
        lowest while none is)."""
        plain = [t.id for t in self.tasks if t.role == "search" and t.id not in self.rungs]
        highest: dict[str, tuple[int, str]] = {}  # ladder -> (rung index, rung task id)
        for task_id, rung in self.rungs.items():
            reached = highest.get(rung.ladder)
            if reached is None or (self.progress[task_id].complete and rung.index > reached[0]):
                highest[rung.ladder] = (rung.index, task_id)
        return plain + [task_id for _, task_id in highest.values()]

    @property
    def running(self) -> int:
        return sum(p.running for p in self.progress.values())

    @property
    def complete(self) -> bool:
        """Every stage meant for the architecture is done (no filter or threshold stopped it)."""
        return self.status is StageStatus.DONE

    def relative(self, baselines: Mapping[str, float | None]) -> dict[str, float | None]:
        """Relative value on each finished search or report-only task whose baseline is known."""
        return {
            t.id: relative_value(self.progress[t.id].best, baselines[t.id], t.direction)
            for t in self.tasks
            if t.role != "filter" and self.progress[t.id].complete and t.id in baselines
        }

    def score(self, baselines: Mapping[str, float | None]) -> float | None:
        """The worst finished search task (of a ladder, its highest rung) relative to the best baseline."""
        relative = self.relative(baselines)
        return worst_task_score({t: relative.get(t) for t in self.scored()})

    def _gate(
        self, task: TaskEntry, best: float | None, baselines: Mapping[str, float | None]
    ) -> Literal["pass", "wait"] | StageStatus:
        """``pass`` on to the next task, ``wait`` for the baseline, or the status it stops at."""
        if task.role == "filter":
            return "pass" if task.passes_filter(best) else StageStatus.FILTERED
        rung = self.rungs.get(task.id)
        if rung is not None and not rung.top and self.promotion is not None:
            promoted = self.promotion(task.id)
            return "wait" if promoted is None else "pass" if promoted else StageStatus.STOPPED
        if task.role != "search" or task.threshold is None:
            return "pass"
        if task.id not in baselines:
            return "wait"
        relative = relative_value(best, baselines[task.id], task.direction)
        # Without a usable baseline there is no yardstick: let the candidate go on.
        return "pass" if relative is None or relative >= task.threshold else StageStatus.STOPPED

    def _task(self, name: str) -> TaskEntry:
        return next(t for t in self.tasks if t.id == name)
