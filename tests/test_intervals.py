"""Intervals around the search's point estimates (:mod:`search._intervals`): the seed-mean
interval is calibrated on a synthetic evaluator whose truth is known, and the bootstrap and
propagation rules keep their promises on any input (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search._intervals import (
    Interval,
    best_interval,
    mean_interval,
    relative_interval,
    score_interval,
)
from workers import Direction

TRUE_MEAN, NOISE = 0.82, 0.03
"""The synthetic evaluator: a cell whose value over seeds is Normal(0.82, 0.03)."""
EVALUATIONS, SEEDS = 1000, 5


def test_mean_interval_covers_the_true_mean_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(20261202)
    draws = rng.normal(TRUE_MEAN, NOISE, size=(EVALUATIONS, SEEDS))
    intervals = [mean_interval(row) for row in draws]
    covered = sum(iv is not None and iv.contains(TRUE_MEAN) for iv in intervals) / EVALUATIONS
    # 1000 evaluations: the binomial spread of the coverage is sqrt(0.95 * 0.05 / 1000) = 0.7 %,
    # so 95 % +- 3 % is over 4 standard deviations; this seed measures 0.957.
    assert 0.92 <= covered <= 0.98


def test_mean_interval_needs_two_values_and_is_centred_on_the_mean() -> None:
    assert mean_interval([0.5]) is None
    assert mean_interval([0.5, None, math.nan]) is None
    assert mean_interval([0.4, 0.4]) == Interval(0.4, 0.4)
    iv = mean_interval([1.0, 2.0, 3.0], confidence=0.95)
    assert iv is not None
    # t(0.975, 2) = 4.3027; the standard error of 1, 2, 3 is 1 / sqrt(3).
    assert iv.low == pytest.approx(2.0 - 4.302653 / math.sqrt(3), rel=1e-6)
    assert iv.high == pytest.approx(2.0 + 4.302653 / math.sqrt(3), rel=1e-6)
    assert mean_interval([1.0, 2.0, 3.0], confidence=0.5).width < iv.width  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="confidence"):
        mean_interval([1.0, 2.0], confidence=1.0)


def test_best_interval_is_deterministic_and_ends_at_the_best_trial() -> None:
    values = [0.71, 0.74, 0.69, 0.80, 0.73]
    iv = best_interval(values, Direction.MAXIMIZE)
    assert iv is not None
    assert iv == best_interval(list(reversed(values)), Direction.MAXIMIZE)  # the same trials, any order
    assert iv.high == 0.80  # a resample's best is never above the best trial
    assert 0.71 <= iv.low < 0.80
    low = best_interval(values, Direction.MINIMIZE)
    assert low is not None and low.low == 0.69
    assert best_interval([0.5], Direction.MAXIMIZE) is None
    assert best_interval([0.5, None], Direction.MAXIMIZE) is None
    assert best_interval([0.3, 0.3, 0.3], Direction.MAXIMIZE) == Interval(0.3, 0.3)


def test_interval_rejects_reversed_or_infinite_bounds() -> None:
    with pytest.raises(ValueError):
        Interval(2.0, 1.0)
    with pytest.raises(ValueError):
        Interval(0.0, math.inf)
    assert Interval.of(None, 1.0) is None
    assert Interval.of(2.0, 1.0) is None
    assert Interval.of(1.0, 2.0) == Interval(1.0, 2.0)


# -- properties ------------------------------------------------------------------------------

# No per-example deadline: the first example of a test may load SciPy (a fraction of a second).
LOOSE = settings(deadline=None)

metric = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False)
trial_values = st.lists(metric, min_size=2, max_size=12)
directions = st.sampled_from(list(Direction))


@st.composite
def intervals(draw: st.DrawFn, low: float = 1e-3) -> Interval:
    a, b = draw(st.floats(min_value=low, max_value=1e3)), draw(st.floats(min_value=low, max_value=1e3))
    return Interval(min(a, b), max(a, b))


@LOOSE
@given(trial_values, directions)
def test_best_interval_lies_within_the_trials_and_holds_the_best(
    values: list[float], direction: Direction
) -> None:
    iv = best_interval(values, direction, resamples=200)
    assert iv is not None and iv.low <= iv.high
    assert min(values) <= iv.low and iv.high <= max(values)
    best = max(values) if direction is Direction.MAXIMIZE else min(values)
    assert iv.contains(best)


@LOOSE
@given(st.lists(metric, min_size=2, max_size=12))
def test_mean_interval_holds_the_mean(values: list[float]) -> None:
    iv = mean_interval(values)
    assert iv is not None and iv.low <= iv.high
    assert iv.low - 1e-9 <= float(np.mean(values)) <= iv.high + 1e-9


@LOOSE
@given(intervals(), intervals(), directions)
def test_relative_interval_holds_the_point_ratio(
    value: Interval, baseline: Interval, direction: Direction
) -> None:
    iv = relative_interval(value, baseline, direction)
    assert iv is not None and iv.low <= iv.high
    # The relative score of any value and baseline inside their intervals lies inside.
    for v in (value.low, value.high):
        for b in (baseline.low, baseline.high):
            ratio = v / b if direction is Direction.MAXIMIZE else b / v
            assert iv.low * (1 - 1e-12) <= ratio <= iv.high * (1 + 1e-12)


@LOOSE
@given(intervals(), intervals(), st.floats(min_value=0.0, max_value=10.0))
def test_relative_interval_is_monotone_and_symmetric(
    value: Interval, baseline: Interval, shift: float
) -> None:
    up = relative_interval(value, baseline, Direction.MAXIMIZE)
    better = relative_interval(Interval(value.low + shift, value.high + shift), baseline, Direction.MAXIMIZE)
    assert up is not None and better is not None
    assert better.low >= up.low and better.high >= up.high  # a better value never scores lower
    # Minimizing is maximizing the reciprocals: the same interval.
    down = relative_interval(
        Interval(1 / value.high, 1 / value.low),
        Interval(1 / baseline.high, 1 / baseline.low),
        Direction.MINIMIZE,
    )
    assert down is not None
    assert down.low == pytest.approx(up.low) and down.high == pytest.approx(up.high)


@LOOSE
@given(intervals(low=-1e3), intervals(low=-1e3), directions)
def test_relative_interval_needs_positive_bounds(
    value: Interval, baseline: Interval, direction: Direction
) -> None:
    iv = relative_interval(value, baseline, direction)
    if min(value.low, baseline.low) <= 0:
        assert iv is None
    else:  # positive, but a bound near zero may overflow the ratio: then None, never infinite
        assert iv is None or (math.isfinite(iv.high) and iv.low >= 0)  # a ratio may underflow to 0
    assert relative_interval(None, baseline, direction) is None
    assert relative_interval(value, None, direction) is None


@LOOSE
@given(st.lists(intervals(), min_size=1, max_size=5))
def test_score_interval_bounds_the_worst_task(tasks: list[Interval]) -> None:
    iv = score_interval(tasks)
    assert iv is not None and iv.low <= iv.high
    assert iv.contains(min(t.high for t in tasks)) and iv.contains(min(t.low for t in tasks))
    assert score_interval([*tasks, None]) is None
    assert score_interval([]) is None
