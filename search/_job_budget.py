"""A job's budget: the trials and architectures it may still start, its clock, and why it stops.

The driver loop asks the budget before it starts anything: out of time, nothing new starts and
the running trials finish; interrupted (Ctrl-C, SIGTERM), the loop leaves at once. A resumed
job continues its clock and its counts from the stored state.

Example:
    >>> from search._jobspec import SearchBudget
    >>> budget = JobBudget(SearchBudget(max_trials=3))
    >>> budget.trials_left()
    3.0
    >>> budget.count_trials(3)
    >>> budget.trials_left(), budget.may_propose()
    (0.0, False)
"""

from __future__ import annotations

import time

from cells import TextEnum
from search._jobspec import SearchBudget


class StopReason(TextEnum):
    """Why a job stops before its budget of trials is spent."""

    INTERRUPTED = "interrupted"
    """Ctrl-C or SIGTERM: leave at once."""
    OUT_OF_TIME = "time"
    """``max_seconds`` have passed: start nothing new, let the running trials finish."""
    CLUSTER_LOST = "cluster"
    """No node of the cluster can run a trial any more: start nothing new; the job fails."""


class JobBudget:
    """What the job's ``budget`` section still allows, counted as the driver starts things."""

    def __init__(self, limits: SearchBudget, elapsed_before: float = 0.0) -> None:
        self.limits = limits
        self.trials_counted = 0
        """Trials started that count against ``max_trials`` (a retry does not count again)."""
        self.proposed = 0
        """Architectures the strategy proposed (baselines excluded)."""
        self.stop_reason: StopReason | None = None
        self.stop_signal = "SIGINT"
        self.stop_detail: str | None = None
        """Why, in words, for a stop the job fails with (:attr:`StopReason.CLUSTER_LOST`)."""
        self.elapsed_before = elapsed_before
        self._clock_start = time.monotonic()

    def elapsed(self) -> float:
        """Seconds the job has run, earlier runs included."""
        return self.elapsed_before + time.monotonic() - self._clock_start

    def check_time(self) -> None:
        """Stop (``StopReason.OUT_OF_TIME``) once ``max_seconds`` have passed."""
        limit = self.limits.max_seconds
        if limit is not None and self.stop_reason is None and self.elapsed() >= limit:
            self.stop_reason = StopReason.OUT_OF_TIME

    def interrupt(self, signal_name: str) -> None:
        """A stop signal arrived: the loop leaves at once."""
        self.stop_reason, self.stop_signal = StopReason.INTERRUPTED, signal_name

    def lose_cluster(self, reason: str) -> None:
        """No node can run the job's trials any more: start nothing new, and fail the job."""
        self.stop_reason, self.stop_detail = StopReason.CLUSTER_LOST, reason

    @property
    def interrupted(self) -> bool:
        return self.stop_reason is StopReason.INTERRUPTED

    def trials_left(self) -> float:
        """Trials that may still start (infinite without ``max_trials``; none once stopping)."""
        if self.stop_reason is not None:
            return 0.0
        limit = self.limits.max_trials
        return float("inf") if limit is None else float(limit - self.trials_counted)

    def spent_limit(self) -> str | None:
        """The limit that stopped the job (``max_trials=3``), or ``None`` if none did."""
        limits = self.limits
        if self.stop_reason is StopReason.OUT_OF_TIME:
            return f"max_seconds={limits.max_seconds:g}"
        if limits.max_trials is not None and self.trials_counted >= limits.max_trials:
            return f"max_trials={limits.max_trials}"
        if limits.max_architectures is not None and self.proposed >= limits.max_architectures:
            return f"max_architectures={limits.max_architectures}"
        return None

    def count_trials(self, count: int) -> None:
        self.trials_counted += count

    def count_proposal(self) -> None:
        self.proposed += 1

    def may_propose(self) -> bool:
        """Whether the budget allows one more architecture (trials and architectures left)."""
        if self.trials_left() <= 0:
            return False
        limit = self.limits.max_architectures
        return limit is None or self.proposed < limit
