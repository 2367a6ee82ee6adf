"""The final round of a job: the best architectures and every baseline trained again with fresh seeds.

A search ranks cells by the best of a few trials on the validation split, which measures luck
as much as the cell. With a ``final`` section (``final: {top_k: 10, seeds: 5}``), once the search
is over the job takes its ``top_k`` best architectures and every baseline, and for each search
task trains the architecture's best hyperparameters again with ``seeds`` seeds, scoring each
trial on the *test* split (``score_split: test``). The seeds are the same for every cell (a
trial's seed derives from the job's seed, the task and the trial's place), so a cell and the
baseline are compared pair by pair, on the same data order and initial draws. The final tasks
are ordinary task entries labelled ``<task>.final``: their trials and evaluations are ordinary
rows, and a resumed job replays them like any other launch.

Each final evaluation then stores the mean over its seeds with a Student-t interval, its mean
relative to the best baseline's (with an interval), and a paired t-test against that baseline:
``better``, ``worse`` or ``indistinguishable`` at 95%. The architecture's final score is its worst
final task, relative to the best baseline; ``results top`` ranks by it where there is one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pydantic import Field

from search._intervals import Interval, mean_interval, relative_interval, score_interval
from search._job_model import StrictModel
from search._job_tasks import TaskEntry
from search._significance import Verdict, paired_verdict
from search._strategies import relative_value, worst_task_score

FINAL_SUFFIX = ".final"
"""A final task's label: its search task's id and this suffix (``arith.final``)."""

MAX_FINAL_TOP_K = 1000
MAX_FINAL_SEEDS = 100


class FinalSection(StrictModel):
    """The job's final round: after the search, its best architectures and every baseline trained
    again with fresh seeds on every search task and scored on the test split."""

    top_k: int = Field(default=10, ge=1, le=MAX_FINAL_TOP_K)
    """Architectures taken from the top of the search's ranking (baselines come too): 1 to 1000."""
    seeds: int = Field(default=5, ge=2, le=MAX_FINAL_SEEDS)
    """Trials per (architecture, task), one per seed: 2 to 100 (a paired test needs 2 at least)."""


def final_task(task: TaskEntry, seeds: int) -> TaskEntry:
    """The final round's entry for search task ``task``: ``seeds`` trials scored on the test split."""
    return task.model_copy(
        update={
            "label": f"{task.id}{FINAL_SUFFIX}",
            "role": "report-only",
            "threshold": None,
            "trials": seeds,
            "budget": task.budget.model_copy(update={"score_split": "test"}),
        }
    )


@dataclass
class FinalEntry:
    """One (architecture, final task) of the round and the values of its seeds, in seed order."""

    arch_hash: str
    task: TaskEntry
    search_task: TaskEntry
    target: int
    running: int = 0
    values: list[float | None] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return max(0, self.target - len(self.values) - self.running)

    @property
    def complete(self) -> bool:
        return len(self.values) >= self.target


@dataclass(frozen=True)
class FinalResult:
    """What the round found for one (architecture, final task)."""

    arch_hash: str
    task_id: str
    mean: float | None
    mean_interval: Interval | None
    relative: float | None
    relative_interval: Interval | None
    verdict: Verdict | None
    """Against the task's best baseline (``None`` for that baseline itself)."""


@dataclass(frozen=True)
class FinalScore:
    arch_hash: str
    score: float | None
    interval: Interval | None


class FinalRound:
    """The entries of a job's final round, in the order they launch (rank, then task)."""

    def __init__(self, arch_hashes: Sequence[str], search_tasks: Sequence[TaskEntry], seeds: int) -> None:
        self.tasks = {t.id: final_task(t, seeds) for t in search_tasks}
        """Search task id -> its final task."""
        self.entries = [
            FinalEntry(h, self.tasks[t.id], t, seeds)
            for h in dict.fromkeys(arch_hashes)
            for t in search_tasks
        ]
        self._by_key = {(e.arch_hash, e.task.id): e for e in self.entries}
        self.task_ids = {t.id for t in self.tasks.values()}

    def next_launch(self) -> FinalEntry | None:
        """The first entry with seeds left to start."""
        return next((e for e in self.entries if e.missing), None)

    @property
    def complete(self) -> bool:
        return all(e.complete and not e.running for e in self.entries)

    def started(self, arch_hash: str, task_id: str) -> None:
        self._by_key[(arch_hash, task_id)].running += 1

    def finished(self, arch_hash: str, task_id: str, value: float | None, counted: bool = True) -> None:
        """A trial of the entry ended (results come in launch order, so in seed order)."""
        entry = self._by_key[(arch_hash, task_id)]
        entry.running -= 1
        if counted:
            entry.values.append(value)

    def results(self, baseline_hashes: Iterable[str]) -> tuple[list[FinalResult], list[FinalScore]]:
        """Every entry's mean, interval, relative score and verdict; every architecture's final score."""
        baselines = set(baseline_hashes)
        results: list[FinalResult] = []
        for search_task in {e.search_task.id: e.search_task for e in self.entries}.values():
            entries = [e for e in self.entries if e.search_task.id == search_task.id]
            results.extend(_task_results(entries, [e for e in entries if e.arch_hash in baselines]))
        scores = []
        for arch_hash in dict.fromkeys(e.arch_hash for e in self.entries):
            mine = [r for r in results if r.arch_hash == arch_hash]
            score = worst_task_score({r.task_id: r.relative for r in mine})
            scores.append(FinalScore(arch_hash, score, score_interval(r.relative_interval for r in mine)))
        return results, scores


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _task_results(entries: list[FinalEntry], baselines: list[FinalEntry]) -> list[FinalResult]:
    """The results of one final task: each cell against the baseline with the best mean."""
    if not entries:
        return []
    direction = entries[0].task.direction
    means = {e.arch_hash: _mean(e.values) for e in entries}
    best: FinalEntry | None = None
    for candidate in baselines:  # the first of equal means: baselines are in the job's order
        value = means[candidate.arch_hash]
        if value is not None and (best is None or direction.is_better(value, means[best.arch_hash] or 0.0)):
            best = candidate
    best_mean = None if best is None else means[best.arch_hash]
    best_interval = None if best is None else mean_interval(best.values)
    results = []
    for entry in entries:
        mean, interval = means[entry.arch_hash], mean_interval(entry.values)
        verdict = None
        if best is not None and entry is not best:
            pairs = [
                (c, b)
                for c, b in zip(entry.values, best.values, strict=False)
                if c is not None and b is not None
            ]
            verdict = paired_verdict([c for c, _ in pairs], [b for _, b in pairs], direction)
        results.append(
            FinalResult(
                entry.arch_hash,
                entry.task.id,
                mean,
                interval,
                relative_value(mean, best_mean, direction),
                relative_interval(interval, best_interval, direction),
                verdict,
            )
        )
    return results
