"""What a trial is asked to do and what it returns."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cells import TextEnum
from workers._curve_score import CurveScore
from workers._direction import Direction


class TrialStatus(TextEnum):
    """How a trial ended (``running`` is the store's word for one that has not)."""

    OK = "ok"
    DIVERGED = "diverged"
    PRUNED = "pruned"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


MAX_TRIAL_STEPS = 10_000_000
"""The most training steps (and the largest ``eval_every``) one trial may be given."""
MAX_TRIAL_SECONDS = 7 * 24 * 3600.0
"""The longest wall-clock budget of one trial: a week."""
MAX_BATCH_SIZE = 4096
"""The largest training or evaluation batch (sequences per batch)."""
DEFAULT_CURVE_SCORE: CurveScore = "best"
"""How a trial's curve becomes its value unless its task's budget says otherwise."""
MAX_SCORE_WINDOW = 100
MAX_SCORE_HORIZON = 1000.0


class Budget(BaseModel):
    """How long one trial trains: a step budget, a wall-clock budget, or both (first wins).

    Every number is strict (no ``true`` for 1, no ``"200"``) and finite; the ranges are in
    each field's description.

    Example:
        >>> from pydantic import ValidationError
        >>> try:
        ...     Budget(max_seconds=float("inf"))
        ... except ValidationError as exc:
        ...     exc.errors()[0]["loc"], exc.errors()[0]["msg"]
        (('max_seconds',), 'Input should be a finite number')
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_steps: int | None = Field(default=200, ge=1, le=MAX_TRIAL_STEPS, strict=True)
    """Training steps, 1 to 10,000,000; ``None``: only ``max_seconds`` limits the trial."""
    max_seconds: float | None = Field(
        default=None, gt=0, le=MAX_TRIAL_SECONDS, strict=True, allow_inf_nan=False
    )
    """Wall-clock seconds, above 0 and at most 604,800 (a week); ``None``: no time limit."""
    eval_every: int = Field(default=50, ge=1, le=MAX_TRIAL_STEPS, strict=True)
    """Validate (and report to the callback) every this many steps, and at the end: 1 to 10,000,000."""
    eval_batch_size: int = Field(default=64, ge=1, le=MAX_BATCH_SIZE, strict=True)
    """Held-out sequences per evaluation batch, 1 to 4096."""
    score_split: Literal["valid", "test"] = "valid"
    """The trial's value: ``valid``, the best validation value of its evaluations; ``test``, the
    test split's value of the model at the end of training (validation still draws the curve
    and answers the pruner). The final re-evaluation of a job scores on ``test``."""
    score: CurveScore = DEFAULT_CURVE_SCORE
    """How the validation curve becomes the trial's value (docs/scoring.md): ``best``, its best
    point; ``last_mean``, the mean of its last ``score_window`` evaluations; ``predicted``, its
    power-law fit read at ``score_horizon`` times the trial's last step."""
    score_window: int = Field(default=3, ge=1, le=MAX_SCORE_WINDOW, strict=True)
    """Evaluations ``last_mean`` averages (and ``predicted`` falls back to), 1 to 100."""
    score_horizon: float = Field(default=10.0, ge=1.0, le=MAX_SCORE_HORIZON, strict=True, allow_inf_nan=False)
    """``predicted`` reads the fitted curve at this many times the trial's steps, 1 to 1,000."""

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
