"""The paired verdict over seeds (:mod:`search._significance`) on a synthetic evaluator whose
truth is known: its false-positive rate between two equal cells stays at the test's level,
and it finds a clear difference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from search._significance import Comparison, paired_verdict
from workers import Direction

SEEDS, EXPERIMENTS = 5, 1000
SEED_EFFECT, NOISE = 0.02, 0.01
"""Each seed moves both cells alike (a shared initialisation and data order), plus each
cell's own noise: what pairing by seed cancels."""


def paired_draws(rng: np.random.Generator, difference: float) -> tuple[np.ndarray, np.ndarray]:
    seed = rng.normal(0.0, SEED_EFFECT, size=(EXPERIMENTS, SEEDS))
    baseline = 0.80 + seed + rng.normal(0.0, NOISE, size=(EXPERIMENTS, SEEDS))
    cell = 0.80 + difference + seed + rng.normal(0.0, NOISE, size=(EXPERIMENTS, SEEDS))
    return cell, baseline


def test_two_equal_cells_are_told_apart_at_most_at_the_test_level() -> None:
    cell, baseline = paired_draws(np.random.default_rng(7), difference=0.0)
    verdicts = [paired_verdict(c, b, Direction.MAXIMIZE).outcome for c, b in zip(cell, baseline, strict=True)]
    false_positive = sum(v != Comparison.INDISTINGUISHABLE for v in verdicts) / EXPERIMENTS
    # At alpha = 0.05 over 1000 experiments the rate's binomial spread is sqrt(0.05 * 0.95 / 1000)
    # = 0.69 %; 5 % + 2 % is about 3 standard deviations above the level. This seed measures 0.049.
    assert false_positive <= 0.07


def test_a_clear_difference_is_found_in_its_direction() -> None:
    cell, baseline = paired_draws(np.random.default_rng(8), difference=0.04)
    better = [
        paired_verdict(c, b, Direction.MAXIMIZE).outcome == Comparison.BETTER
        for c, b in zip(cell, baseline, strict=True)
    ]
    # A difference of 2.8 standard deviations of the per-seed difference: this seed finds 0.994.
    assert sum(better) / EXPERIMENTS >= 0.95
    # For a minimized metric (a loss) the same numbers make the cell worse.
    found = better.index(True)
    worse = paired_verdict(cell[found], baseline[found], Direction.MINIMIZE)
    assert worse.outcome == Comparison.WORSE and worse.p_value < 0.05 and worse.mean_difference > 0


def test_too_few_pairs_or_no_spread_are_indistinguishable() -> None:
    one = paired_verdict([0.9], [0.1], Direction.MAXIMIZE)
    assert (one.outcome, one.p_value, one.pairs) == (Comparison.INDISTINGUISHABLE, 1.0, 1)
    none = paired_verdict([], [], Direction.MAXIMIZE)
    assert none.outcome == Comparison.INDISTINGUISHABLE and math.isnan(none.mean_difference)
    same = paired_verdict([0.5, 0.6, 0.7], [0.5, 0.6, 0.7], Direction.MAXIMIZE)
    assert (same.outcome, same.p_value) == (Comparison.INDISTINGUISHABLE, 1.0)
    shifted = paired_verdict([1.5, 2.5, 3.5], [1.0, 2.0, 3.0], Direction.MAXIMIZE)  # always +0.5
    assert (shifted.outcome, shifted.p_value) == (Comparison.BETTER, 0.0)
    nan_pair = paired_verdict([0.5, math.nan, 0.7], [0.4, 0.6, 0.6], Direction.MAXIMIZE)
    assert nan_pair.pairs == 2


def test_unequal_lengths_and_bad_alpha_are_refused() -> None:
    with pytest.raises(ValueError, match="paired"):
        paired_verdict([0.5, 0.6], [0.5], Direction.MAXIMIZE)
    with pytest.raises(ValueError, match="alpha"):
        paired_verdict([0.5, 0.6], [0.5, 0.6], Direction.MAXIMIZE, alpha=0.0)
