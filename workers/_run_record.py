"""One trial's training record, shared by the lone loop and the population loop.

Both loops report the same events to a :class:`RunRecord` (each validation, a divergence, a
prune) and turn it into the :class:`~workers.TrialResult` the same way, so a population
member's result has exactly the fields and metrics of the same trial trained alone.

Example:
    >>> from workers import HyperParams, make_task
    >>> task = make_task("arith", max_digits=2, valid_size=16, test_size=16)
    >>> record = RunRecord(task, HyperParams(hidden_size=8))
    >>> record.evaluated(10, {"char_accuracy": 0.5}), record.evaluated(20, {"char_accuracy": 0.25})
    (0.5, 0.25)
    >>> result = record.result(
    ...     steps=20, seconds=1.0, num_params=100, hidden_size=8, startup_seconds=0.1, train_seconds=0.8,
    ...     device="cpu",
    ... )
    >>> result.status, result.value, result.metrics["best_step"], result.metrics["final_value"]
    ('ok', 0.5, 10, 0.25)
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from workers._curve_score import curve_score
from workers._direction import Direction
from workers._results import Budget, TrialResult, TrialStatus
from workers._task import Task

if TYPE_CHECKING:
    from workers._hparams import HyperParams


class RunRecord:
    """What one trial's training has seen so far: its curve, its best evaluation, how it ended."""

    def __init__(self, task: Task, hparams: HyperParams, budget: Budget | None = None) -> None:
        self.task, self.hparams = task, hparams
        self.budget = budget or Budget()
        """Its score settings decide how the curve becomes the trial's value."""
        self.direction = Direction(task.direction)
        self.status = TrialStatus.OK
        self.curve: list[tuple[int, float]] = []
        """``(step, validation value)`` of every finite evaluation."""
        self.best: tuple[float, dict[str, Any], int] | None = None
        """The best evaluation: its value, all its metrics and its step."""
        self.diverged_at_step: int | None = None
        self.test: tuple[float, dict[str, Any]] | None = None
        """The test split's value and metrics at the end (a budget that scores on ``test``)."""

    def diverge(self, step: int) -> None:
        """The run diverged at ``step``: a non-finite training loss at that step (1-based), or a
        non-finite validation value after it."""
        self.status, self.diverged_at_step = TrialStatus.DIVERGED, step

    def prune(self) -> None:
        """The caller's report asked to stop the run."""
        self.status = TrialStatus.PRUNED

    def evaluated(self, step: int, metrics: dict[str, Any]) -> float | None:
        """Record the validation ``metrics`` after ``step``; returns the primary metric's value,
        or ``None`` when it is no result (not finite, or outside the task's ``metric_range``: an
        overflow): the run then counts as diverged at ``step``."""
        value = float(metrics[self.task.primary_metric])
        if not self.task.admits(value):
            self.diverge(step)
            return None
        self.curve.append((step, value))
        if self.best is None or self.direction.is_better(value, self.best[0]):
            self.best = (value, metrics, step)
        return value

    def tested(self, metrics: dict[str, Any]) -> None:
        """The test split's ``metrics`` of the trained model: they become the trial's value
        (the best validation value is kept as ``valid_value``); one that is no result (see
        :meth:`evaluated`) is divergence."""
        value = float(metrics[self.task.primary_metric])
        if not self.task.admits(value):
            self.diverge(self.curve[-1][0] if self.curve else 0)
            return
        self.test = (value, metrics)

    def result(
        self,
        *,
        steps: int,
        seconds: float,
        num_params: int,
        hidden_size: int,
        startup_seconds: float,
        train_seconds: float,
        device: str,
        **extra_metrics: Any,
    ) -> TrialResult:
        """The trial's result after ``steps`` completed optimizer steps.

        ``metrics`` holds the best evaluation's metrics plus ``best_step``, ``final_value``,
        ``hidden_size``, ``startup_seconds``, ``train_seconds`` (training steps alone,
        validation excluded) and ``extra_metrics``. The value is the budget's curve score
        (``best``: the best evaluation's value); under another score ``metrics`` also holds
        ``best_value`` and ``score`` (the kind).
        """
        metrics: dict[str, Any] = {}
        if self.best is not None:
            metrics = {**self.best[1], "best_step": self.best[2], "final_value": self.curve[-1][1]}
        metrics["hidden_size"] = hidden_size  # the size param_budget chose, if it did
        metrics["startup_seconds"] = startup_seconds
        metrics["train_seconds"] = train_seconds
        metrics.update(extra_metrics)
        value = None if self.best is None else self.best[0]
        budget = self.budget
        if value is not None and budget.score != "best":
            metrics["best_value"], metrics["score"] = value, budget.score
            value = curve_score(
                self.curve,
                budget.score,
                self.direction,
                budget.score_window,
                budget.score_horizon,
                self.task.metric_range,
            )
        if self.test is not None and self.status == TrialStatus.OK:
            metrics["valid_value"] = value
            metrics.update({f"test_{k}": v for k, v in self.test[1].items()})
            value = self.test[0]
        return TrialResult(
            status=self.status,
            task=self.task.name,
            metric=self.task.primary_metric,
            direction=self.direction,
            value=value,
            metrics=metrics,
            curve=list(self.curve),
            num_params=num_params,
            steps=steps,
            seconds=seconds,
            device=device,
            diverged_at_step=self.diverged_at_step,
            hparams=self.hparams.model_dump(),
        )


def error_text(exc: BaseException) -> str:
    """A failed trial's ``error``: the exception's type and message, then its last frames."""
    details = "".join(traceback.format_exception(exc, limit=-3)[:-1]).rstrip()
    return f"{type(exc).__name__}: {exc}\n{details}"


def failed_result(error: str, task: Task | str, hparams: Any, seconds: float, device: str) -> TrialResult:
    """The ``failed`` result of a trial; ``task`` is its name alone when it could not be built
    (the result then has no metric, and direction ``minimize``)."""
    dumped = hparams.model_dump() if isinstance(hparams, BaseModel) else hparams
    built = task if isinstance(task, Task) else None
    return TrialResult(
        status=TrialStatus.FAILED,
        task=built.name if built else str(task),
        metric=built.primary_metric if built else "",
        direction=Direction(built.direction) if built else Direction.MINIMIZE,
        error=error,
        seconds=seconds,
        device=device,
        hparams=dumped if isinstance(dumped, dict) else {},
    )
