"""The records the results database hands out: plain frozen dataclasses, never live ORM
objects, so a caller can keep one after its session is gone.

Example:
    >>> TrialCounts(completed=3, pruned=1).total
    4
    >>> JobSummary(job_id=1, name="demo", state="created", created_at=datetime(2026, 1, 1, tzinfo=UTC),
    ...            started_at=None, finished_at=None).to_dict()["best"] is None
    True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, TypeVar

from cells import CellGraph
from search._intervals import Interval
from search._jobspec import JobSpec


@dataclass(frozen=True)
class JobRecord:
    id: int
    name: str
    state: str
    spec: dict[str, Any]
    code_version: str
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    def job_spec(self) -> JobSpec:
        """The stored spec, validated again (raises :class:`~search._jobspec.JobError`)."""
        return JobSpec.from_dict(self.spec, source=f"job {self.id}")


@dataclass(frozen=True)
class ArchitectureRecord:
    id: int
    canonical_hash: str
    graph: dict[str, Any]
    equations: str
    num_states: int
    num_nodes: int
    op_counts: dict[str, int]
    requires_input_equals_hidden: bool
    parent_id: int | None
    mutation: str | None
    generation: int
    library_name: str | None
    first_job_id: int | None

    def cell(self) -> CellGraph:
        return CellGraph.parse(self.graph)


@dataclass(frozen=True)
class EvaluationRecord:
    id: int
    job_id: int
    architecture_id: int
    task: str
    task_label: str
    task_key: str
    task_settings: dict[str, Any]
    metric: str
    direction: str
    status: str
    best_value: float | None
    relative_score: float | None
    best_trial_id: int | None
    trials_completed: int
    trials_pruned: int
    trials_failed: int
    trials_diverged: int
    reused_from_id: int | None
    best_low: float | None = None
    best_high: float | None = None
    relative_low: float | None = None
    relative_high: float | None = None
    mean_value: float | None = None
    verdict: str | None = None
    p_value: float | None = None

    @property
    def best_interval(self) -> Interval | None:
        """How much ``best_value`` depends on which trials were drawn (``docs/uncertainty.md``)."""
        return Interval.of(self.best_low, self.best_high)

    @property
    def relative_interval(self) -> Interval | None:
        return Interval.of(self.relative_low, self.relative_high)

    @property
    def trials_finished(self) -> int:
        """Trials that ended (ok, pruned, failed or diverged); interrupted ones are not counted."""
        return self.trials_completed + self.trials_pruned + self.trials_failed + self.trials_diverged


@dataclass(frozen=True)
class TrialRecord:
    id: int
    job_id: int
    architecture_id: int
    evaluation_id: int
    task: str
    study_name: str | None
    optuna_trial_number: int | None
    hparams: dict[str, Any]
    status: str
    value: float | None
    metrics: dict[str, Any] | None
    curve: list[Any] | None
    num_params: int | None
    steps: int | None
    seconds: float | None
    device: str | None
    worker_node: str | None
    worker_host: str | None
    worker_pid: int | None
    error: str | None
    attempt: int
    launch: int | None
    ordinal: int | None
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class JobArchitectureRecord:
    job_id: int
    architecture_id: int
    generation: int
    score: float | None
    filter_passed: bool | None
    evaluated: bool
    listed: bool
    duplicate: bool
    score_low: float | None = None
    score_high: float | None = None
    final_score: float | None = None
    final_low: float | None = None
    final_high: float | None = None

    @property
    def score_interval(self) -> Interval | None:
        return Interval.of(self.score_low, self.score_high)

    @property
    def final_interval(self) -> Interval | None:
        return Interval.of(self.final_low, self.final_high)


@dataclass(frozen=True)
class TrialCounts:
    completed: int = 0
    running: int = 0
    pruned: int = 0
    failed: int = 0
    diverged: int = 0
    interrupted: int = 0

    @property
    def total(self) -> int:
        return self.completed + self.running + self.pruned + self.failed + self.diverged + self.interrupted

    @property
    def finished(self) -> int:
        """Trials that ended (ok, pruned, failed or diverged); interrupted ones are not counted."""
        return self.completed + self.pruned + self.failed + self.diverged


@dataclass(frozen=True)
class ArchitectureCounts:
    proposed: int = 0
    passed_filter: int = 0
    filtered_out: int = 0
    evaluated: int = 0
    listed: int = 0


@dataclass(frozen=True)
class JobSummary:
    """What ``cellsearch status`` shows for a job."""

    job_id: int
    name: str
    state: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    architectures: ArchitectureCounts = field(default_factory=ArchitectureCounts)
    trials: TrialCounts = field(default_factory=TrialCounts)
    best_arch_id: int | None = None
    best_score: float | None = None
    best_score_interval: Interval | None = None
    error: str | None = None
    """Why the job failed (e.g. nothing was scored, and why); ``None`` otherwise."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``architectures`` is the number proposed, the stages are under
        ``architecture_stages``; ``best`` is ``None`` until an architecture has a score (with
        its interval, ``score_low`` and ``score_high``, ``None`` without one)."""
        return {
            "job_id": self.job_id,
            "name": self.name,
            "state": self.state,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "error": self.error,
            "architectures": self.architectures.proposed,
            "architecture_stages": asdict(self.architectures),
            "trials": {**asdict(self.trials), "total": self.trials.total},
            "best": None
            if self.best_arch_id is None
            else {
                "arch_id": self.best_arch_id,
                "score": self.best_score,
                **interval_columns("score", self.best_score_interval),
            },
        }


EVALUATION_BOUNDS = ("best_low", "best_high", "relative_low", "relative_high")
"""An evaluation's interval columns (``docs/uncertainty.md``)."""


def interval_columns(prefix: str, interval: Interval | None) -> dict[str, float | None]:
    """The two columns (or JSON keys) that hold ``interval``, e.g. ``best_low`` and ``best_high``
    (both ``None`` without one)."""
    return {
        f"{prefix}_low": None if interval is None else interval.low,
        f"{prefix}_high": None if interval is None else interval.high,
    }


def finite(value: float | None) -> float | None:
    """``value``, or ``None`` where it is missing, NaN or infinite (JSON has no such numbers)."""
    return value if value is not None and math.isfinite(value) else None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def aware_utc(value: datetime | None) -> Any:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


_R = TypeVar("_R")


def record(cls: type[_R], row: Any) -> _R:
    """A record from an ORM object or a Core row with the same column names; times made UTC."""
    values = {f.name: getattr(row, f.name) for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: aware_utc(v) if isinstance(v, datetime) else v for k, v in values.items()})
