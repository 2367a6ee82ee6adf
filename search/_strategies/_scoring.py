"""Scores relative to the best baseline: above 1 beats the baseline.

Example:
    >>> relative_value(0.9, 0.6, Direction.MAXIMIZE)  # accuracy 0.9 against a baseline's 0.6
    1.5
    >>> relative_value(120.0, 100.0, Direction.MINIMIZE)  # perplexity 120 against 100
    0.8333333333333334
    >>> worst_task_score({"arith": 1.2, "xml": 0.9})
    0.9
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from workers import Direction


def relative_value(value: float | None, baseline: float | None, direction: Direction) -> float | None:
    """``value`` relative to ``baseline`` so that above 1 is better, whatever the direction.

    Maximized metrics give ``value / baseline``, minimized ones ``baseline / value``. A
    candidate without a value (every trial failed) scores 0, the worst; without a usable
    baseline (missing, or not positive: ratios need positive metrics) the answer is ``None``.
    """
    if baseline is None or baseline <= 0:
        return None
    if value is None:
        return 0.0
    if Direction(direction) is Direction.MAXIMIZE:
        return value / baseline
    return baseline / value if value > 0 else None


def better(a: float, b: float, direction: Direction) -> bool:
    """Whether metric value ``a`` beats ``b``."""
    return Direction(direction).is_better(a, b)


def best_of(values: Iterable[float | None], direction: Direction) -> float | None:
    """The best of the values that exist, or ``None``."""
    return Direction(direction).best(values)


def worst_task_score(relative: Mapping[str, float | None]) -> float | None:
    """An architecture's score: its worst task (``None`` when no task has a relative value)."""
    present = [v for v in relative.values() if v is not None]
    return min(present) if present else None
