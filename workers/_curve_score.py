"""A trial's score from its learning curve: the best point, the mean of the last points, or the
curve extrapolated to a longer budget.

A short trial is a stand-in for a long one: what a search wants from it is the value the cell
would reach with more training. The best point of a short, noisy curve is an optimistic draw;
the mean of its last evaluations is steadier; an extrapolation of its trend (learning-curve
prediction, in the manner of Domhan, Springenberg & Hutter 2015, with one parametric family)
also credits a cell that is still improving fast over one that has flattened out.

``predicted`` fits ``v(t) = a + b * t**(-c)`` (a power law towards an asymptote ``a``, the
usual shape of validation curves) to the last ``max(4, n // 2)`` of the ``n`` evaluations
(the first ones describe the initial plunge, not where the curve goes): for each ``c`` on a
grid, ``a`` and ``b`` by least squares, the ``c`` of least squared error kept. It is then read
at ``horizon`` times the last step. Fall-backs, each for a reason:

* fewer than 4 evaluations (or all at one step): ``last_mean`` (three parameters need more
  points than that to say anything);
* a fit in which the curve gets worse with training (overfitting, instability): the best
  point (training longer would not beat what the run already reached, and early stopping
  keeps that);
* the prediction is clamped into the metric's range and never beyond the fitted asymptote.

Example:
    >>> from workers import Direction
    >>> curve = [(s, 2.0 + 5.0 * s**-0.5) for s in range(50, 501, 50)]
    >>> round(curve_score(curve, "predicted", Direction.MINIMIZE, horizon=10.0), 3)  # 2 + 5/sqrt(5000)
    2.071
    >>> round(curve_score(curve, "best", Direction.MINIMIZE), 3), round(2 + 5 / 5000**0.5, 3)
    (2.224, 2.071)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from workers._direction import Direction

CurveScore = Literal["best", "last_mean", "predicted"]
"""How a trial's curve becomes its value (see the module docstring)."""

CURVE_SCORES: tuple[CurveScore, ...] = ("best", "last_mean", "predicted")
MIN_FIT_POINTS = 4
EXPONENTS = np.round(np.arange(0.1, 2.01, 0.1), 2)
"""The grid of ``c`` in ``a + b * t**(-c)``: from nearly logarithmic decay (0.1) to fast (2)."""


def curve_score(
    curve: Sequence[tuple[int, float]],
    kind: CurveScore,
    direction: Direction,
    window: int = 3,
    horizon: float = 10.0,
    bounds: tuple[float, float] = (-math.inf, math.inf),
) -> float | None:
    """The score of ``curve`` (``(step, value)`` pairs in step order); ``None`` when it is empty.

    ``window``: the evaluations ``last_mean`` averages. ``horizon``: ``predicted`` reads the
    fitted curve at ``horizon`` times the last step. ``bounds``: the metric's range, which a
    prediction never leaves.
    """
    if not curve:
        return None
    values = [float(v) for _, v in curve]
    if kind == "best":
        return max(values) if Direction(direction) == Direction.MAXIMIZE else min(values)
    if kind == "last_mean":
        tail = values[-max(1, window) :]
        return sum(v / len(tail) for v in tail)  # divided first: no overflow near the float limit
    if kind == "predicted":
        return _predicted(curve, Direction(direction), window, horizon, bounds)
    raise ValueError(f"score: expected one of {', '.join(CURVE_SCORES)}, got {kind!r}")


def _predicted(
    curve: Sequence[tuple[int, float]],
    direction: Direction,
    window: int,
    horizon: float,
    bounds: tuple[float, float],
) -> float:
    fallback = curve_score(curve, "last_mean", direction, window)
    assert fallback is not None
    points = list(curve)[-max(MIN_FIT_POINTS, len(curve) // 2) :]
    steps = np.array([max(float(s), 1.0) for s, _ in points])
    values = np.array([float(v) for _, v in points])
    if len(points) < MIN_FIT_POINTS or np.ptp(steps) == 0:
        return _clamped(fallback, bounds)
    fit = _fit_power_law(steps, values)
    if fit is None:
        return _clamped(fallback, bounds)
    a, b, c = fit
    # Minimized: the curve improves as t**(-c) shrinks when b > 0; maximized when b < 0.
    improving = b > 0 if direction == Direction.MINIMIZE else b < 0
    if not improving:
        best = curve_score(curve, "best", direction)
        assert best is not None
        return _clamped(best, bounds)
    target = float(steps[-1]) * max(horizon, 1.0)
    prediction = a + b * target ** (-c)
    if not math.isfinite(prediction):
        return _clamped(fallback, bounds)
    return _clamped(prediction, bounds)


def _fit_power_law(steps: np.ndarray, values: np.ndarray) -> tuple[float, float, float] | None:
    """``(a, b, c)`` of least squared error over the exponent grid, or ``None`` if no fit is finite."""
    best: tuple[float, float, float, float] | None = None
    for c in EXPONENTS:
        x = steps ** (-float(c))
        design = np.stack([np.ones_like(x), x], axis=1)
        with np.errstate(all="ignore"):
            coefficients, *_ = np.linalg.lstsq(design, values, rcond=None)
            error = float(np.sum((design @ coefficients - values) ** 2))
        a, b = float(coefficients[0]), float(coefficients[1])
        if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(error)):
            continue
        if best is None or error < best[3]:
            best = (a, b, float(c), error)
    return None if best is None else best[:3]


def _clamped(value: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return float(min(max(value, low), high))
