"""What a trial is asked to do and what it returns."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cells import TextEnum
from workers._direction import Direction


class TrialStatus(TextEnum):
    """How a trial ended (``running`` is the store's word for one that has not)."""

    OK = "ok"
    DIVERGED = "diverged"
    PRUNED = "pruned"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class Budget(BaseModel):
    """How long one trial trains: a step budget, a wall-clock budget, or both (first wins)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_steps: int | None = Field(default=200, ge=1)
    max_seconds: float | None = Field(default=None, gt=0)
    eval_every: int = Field(default=50, ge=1)
    """Validate (and report to the callback) every this many steps, and at the end."""
    eval_batch_size: int = Field(default=64, ge=1)

    @model_validator(mode="after")
    def _some_limit(self) -> Budget:
        if self.max_steps is None and self.max_seconds is None:
            raise ValueError("budget: set max_steps, max_seconds or both")
        return self

    def is_spent(self, steps: int, seconds: float) -> bool:
        """Whether ``steps`` training steps that took ``seconds`` use the budget up (either limit).

        Example:
            >>> Budget(max_steps=10, max_seconds=60).is_spent(10, 1.0), Budget(max_steps=10).is_spent(9, 1e9)
            (True, False)
        """
        return (self.max_steps is not None and steps >= self.max_steps) or (
            self.max_seconds is not None and seconds >= self.max_seconds
        )

    def validates_after(self, steps: int, spent: bool) -> bool:
        """Whether the run validates after ``steps`` steps: every ``eval_every`` and at the end."""
        return spent or steps % self.eval_every == 0


class TrialResult(BaseModel):
    """The outcome of one training run of one cell on one task with one set of hyperparameters.

    ``value`` is the primary validation metric (``metric``), ``None`` when the trial failed
    before any evaluation. ``curve`` holds ``(step, validation value)`` pairs.
    """

    model_config = ConfigDict(extra="forbid")

    status: TrialStatus
    task: str
    metric: str
    direction: Direction
    value: float | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    curve: list[tuple[int, float]] = Field(default_factory=list)
    num_params: int = 0
    steps: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    error: str | None = None
    diverged_at_step: int | None = None
    hparams: dict[str, Any] = Field(default_factory=dict)
    worker: dict[str, Any] = Field(default_factory=dict)
    """Where it ran: node id, pid, hostname (filled by the runner)."""
