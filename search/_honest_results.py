"""An ``ok`` trial result whose value is no result is a divergence, whoever reports it.

The workers already count a value that is not finite, or outside its task's
``Task.metric_range`` (an overflow, such as a perplexity of 1e304), as a diverged run
(``workers.RunRecord``). The driver checks again before it writes a result, tells a study or
scores a cell, and the store checks once more before it writes the row: defence in depth, so a
worker of another version, a custom ``evaluate`` or a bug upstream can never put an absurd
value on a leaderboard.

Example:
    >>> from workers import TrialResult
    >>> result = TrialResult(status="ok", task="text", metric="perplexity", direction="minimize",
    ...                      value=1e304, steps=20)
    >>> checked = honest_result(result)
    >>> checked.status, checked.value, checked.diverged_at_step
    ('diverged', None, 20)
    >>> honest_result(result.model_copy(update={"value": 120.5})).status
    'ok'
"""

from __future__ import annotations

import math

import workers
from workers import TrialResult, TrialStatus


def admits(result: TrialResult, value: float) -> bool:
    """Whether ``value`` of ``result``'s metric is a result: finite, and within the task's
    ``metric_range`` when the task is known here (a task unknown to this process is only
    checked for finiteness)."""
    if not math.isfinite(value):
        return False
    task_class = workers.TASKS.get(result.task)  # loads the task modules: only the driver writes
    if task_class is None or task_class.primary_metric != result.metric:
        return True
    return task_class.admits(value)


def honest_result(result: TrialResult) -> TrialResult:
    """``result``, or, when it is ``ok`` with a value that is no result, the same trial as
    ``diverged`` without a value (the reason in ``error``, the curve kept as it came)."""
    if result.status != TrialStatus.OK or result.value is None or admits(result, result.value):
        return result
    return result.model_copy(
        update={
            "status": TrialStatus.DIVERGED,
            "value": None,
            "diverged_at_step": result.diverged_at_step or result.steps,
            "error": f"{result.metric} {result.value:g} is no result (not finite, or outside the "
            f"range of task {result.task!r}): recorded diverged",
        }
    )
