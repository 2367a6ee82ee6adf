"""Learning-curve scores: known limits of synthetic curves, bounds for any curve, the trial's value
under each score (lone and population alike), task keys and the halving ladder."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search._job_tasks import task_key
from search._strategies._halving import HalvingSection
from workers import (
    CURVE_SCORES,
    Budget,
    CurveScore,
    Direction,
    HyperParams,
    Task,
    curve_score,
    evaluate_trial,
    make_task,
)
from workers import train_population as population

MIN, MAX = Direction.MINIMIZE, Direction.MAXIMIZE


def power_law(limit: float, scale: float, exponent: float, steps: range) -> list[tuple[int, float]]:
    return [(s, limit + scale * s**-exponent) for s in steps]


@pytest.mark.parametrize("exponent", [0.3, 0.5, 1.0])
@pytest.mark.parametrize("direction", [MIN, MAX])
def test_predicted_reads_a_power_law_at_its_horizon(exponent: float, direction: Direction) -> None:
    sign = 1.0 if direction == MIN else -1.0  # a maximised curve rises towards its limit
    curve = power_law(2.0, sign * 5.0, exponent, range(50, 501, 50))
    at_horizon = 2.0 + sign * 5.0 * 5000**-exponent
    predicted = curve_score(curve, "predicted", direction, horizon=10.0)
    best = curve_score(curve, "best", direction)
    assert predicted is not None and best is not None
    assert predicted == pytest.approx(at_horizon, abs=0.02 * abs(best - at_horizon) + 1e-9)
    assert abs(predicted - at_horizon) < 0.1 * abs(best - at_horizon)
    assert best == curve[-1][1]  # a monotone curve's best point is its last


def test_predicted_goes_no_further_than_the_asymptote_and_the_bounds() -> None:
    curve = power_law(2.0, 5.0, 0.5, range(10, 101, 10))
    far = curve_score(curve, "predicted", MIN, horizon=1000.0)
    assert far is not None and 2.0 <= far < curve[-1][1]
    clamped = curve_score(curve, "predicted", MIN, horizon=1000.0, bounds=(2.5, math.inf))
    assert clamped == 2.5


def test_last_mean_of_flat_and_noisy_curves() -> None:
    assert curve_score([(s, 7.0) for s in range(1, 9)], "last_mean", MIN, window=3) == 7.0
    noisy = [(1, 5.0), (2, 4.0), (3, 6.0), (4, 3.0), (5, 5.5)]
    assert curve_score(noisy, "last_mean", MIN, window=3) == pytest.approx((6.0 + 3.0 + 5.5) / 3)
    assert curve_score(noisy, "last_mean", MIN, window=100) == pytest.approx(sum(v for _, v in noisy) / 5)
    assert curve_score(noisy, "best", MIN) == 3.0 and curve_score(noisy, "best", MAX) == 6.0


def test_predicted_falls_back_where_a_fit_says_nothing() -> None:
    short = [(10, 5.0), (20, 4.0), (30, 3.5)]  # three points: too few for three parameters
    assert curve_score(short, "predicted", MIN) == curve_score(short, "last_mean", MIN)
    worsening = power_law(2.0, -5.0, 0.5, range(10, 101, 10))  # a minimised curve going up
    assert curve_score(worsening, "predicted", MIN) == curve_score(worsening, "best", MIN)
    one_step = [(10, 5.0)] * 5
    assert curve_score(one_step, "predicted", MIN) == 5.0
    assert curve_score([], "predicted", MIN) is None and curve_score([], "best", MAX) is None
    with pytest.raises(ValueError, match="score: expected one of best, last_mean, predicted"):
        curve_score(short, "mean", MIN)  # type: ignore[arg-type]


curves = st.lists(
    st.tuples(st.integers(1, 10**7), st.floats(-1e12, 1e12, allow_nan=False)), min_size=1, max_size=40
).map(lambda points: sorted(points))


@settings(max_examples=300, deadline=None)
@given(curves, st.sampled_from([MIN, MAX]), st.integers(1, 100))
def test_best_and_last_mean_lie_within_the_curve(
    curve: list[tuple[int, float]], direction: Direction, window: int
) -> None:
    low, high = min(v for _, v in curve), max(v for _, v in curve)
    for kind in ("best", "last_mean"):
        value = curve_score(curve, kind, direction, window)
        assert value is not None and low - 1e-9 * abs(low) <= value <= high + 1e-9 * abs(high)


@settings(max_examples=300, deadline=None)
@given(
    curves,
    st.sampled_from([MIN, MAX]),
    st.floats(1.0, 1000.0),
    st.tuples(st.floats(-1e6, 0.0), st.floats(0.0, 1e6)),
)
def test_predicted_is_finite_and_within_the_bounds(
    curve: list[tuple[int, float]], direction: Direction, horizon: float, bounds: tuple[float, float]
) -> None:
    value = curve_score(curve, "predicted", direction, 3, horizon, bounds)
    assert value is not None and math.isfinite(value) and bounds[0] <= value <= bounds[1]


# -- the trial's value ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arith() -> Task:
    return make_task("arith", max_digits=2, valid_size=24, test_size=24)


@pytest.mark.parametrize("kind", CURVE_SCORES)
def test_a_trial_is_valued_by_its_budgets_score(kind: CurveScore, arith: Task) -> None:
    budget = Budget(max_steps=24, eval_every=3, eval_batch_size=24, score=kind, score_window=3)
    hparams = HyperParams(hidden_size=16, learning_rate=1e-2, seed=1)
    result = evaluate_trial("gru", arith, hparams, budget, device="cpu")
    assert result.status == "ok" and len(result.curve) == 8
    values = [v for _, v in result.curve]
    expected = curve_score(result.curve, kind, arith.direction, 3, 10.0, arith.metric_range)
    assert result.value == pytest.approx(expected)
    if kind == "last_mean":
        assert result.value == pytest.approx(sum(values[-3:]) / 3)
    if kind != "best":
        assert result.metrics["best_value"] == max(values) and result.metrics["score"] == kind
    else:
        assert result.value == max(values) and "best_value" not in result.metrics
    # A population member is valued as its trial alone.
    member = population("gru", arith, [hparams], budget, device="cpu")[0]
    assert member.value == pytest.approx(result.value, rel=1e-4)


KEY_BEFORE_CURVE_SCORES = "428a87ab8d13512d"
"""``task_key("arith", {}, Budget())`` as databases written before the score fields hold it."""


def test_scores_are_part_of_the_task_key_only_when_they_change_the_value() -> None:
    plain = task_key("arith", {}, Budget())
    assert plain == KEY_BEFORE_CURVE_SCORES  # earlier jobs' results are still found
    assert len({task_key(name, {}, Budget()) for name in ("arith", "xml", "memorize")}) == 3
    assert task_key("arith", {}, Budget(score="best", score_window=7, score_horizon=50.0)) == plain
    last = task_key("arith", {}, Budget(score="last_mean"))
    assert last != plain and task_key("arith", {}, Budget(score="last_mean", score_horizon=50.0)) == last
    assert task_key("arith", {}, Budget(score="last_mean", score_window=5)) != last
    predicted = task_key("arith", {}, Budget(score="predicted"))
    assert predicted not in (plain, last)
    assert predicted != task_key("arith", {}, Budget(score="predicted", score_horizon=5.0))


def test_every_halving_rung_predicts_the_top_rungs_target() -> None:
    section = HalvingSection(eta=3, rungs=3)
    top = Budget(max_steps=900, eval_every=100, score="predicted", score_horizon=4.0)
    rungs = [section.budget(top, r) for r in range(3)]
    assert [r.max_steps * r.score_horizon for r in rungs] == [3600.0, 3600.0, 3600.0]
    assert all(r.score == "predicted" and r.score_window == top.score_window for r in rungs)
    capped = section.budget(top.model_copy(update={"score_horizon": 900.0}), 0)
    assert capped.score_horizon == 1000.0  # the field's limit
    mean = section.budget(Budget(max_steps=900, score="last_mean", score_horizon=4.0), 0)
    assert (mean.score, mean.score_horizon) == ("last_mean", 4.0)
