"""Which way a metric improves, spelled once for the trainer, the population, the store and scoring.

Example:
    >>> from workers import Direction
    >>> Direction.MAXIMIZE.is_better(0.9, 0.8), Direction("minimize").is_better(0.9, 0.8)
    (True, False)
    >>> Direction.MINIMIZE.best([3.0, None, 2.0])
    2.0
    >>> Direction.MAXIMIZE == "maximize"
    True
"""

from __future__ import annotations

from collections.abc import Iterable

from cells import TextEnum


class Direction(TextEnum):
    """The direction of a metric; its values are Optuna's study directions."""

    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"

    def is_better(self, value: float, than: float) -> bool:
        """Whether ``value`` strictly beats ``than`` (a tie is not better)."""
        return value > than if self is Direction.MAXIMIZE else value < than

    def best(self, values: Iterable[float | None]) -> float | None:
        """The best of the values that exist, or ``None`` when none does."""
        present = [v for v in values if v is not None]
        if not present:
            return None
        return max(present) if self is Direction.MAXIMIZE else min(present)

    @property
    def sign(self) -> float:
        """``+1`` for maximized metrics, ``-1`` for minimized ones: ``sign * value`` grows as it improves."""
        return 1.0 if self is Direction.MAXIMIZE else -1.0
