"""Whether a cell beats a baseline over seeds: a paired two-sided t-test.

Both are trained with the same seeds on the same data, so the values pair by seed and the
test looks at the per-seed differences (which cancel what a seed does to both, e.g. a hard
initialisation or data order): far more sensitive than comparing two unpaired means.

Example:
    >>> verdict = paired_verdict([0.91, 0.93, 0.92], [0.85, 0.86, 0.86], Direction.MAXIMIZE)
    >>> verdict.outcome, verdict.p_value < 0.05
    ('better', True)
    >>> paired_verdict([0.9], [0.8], Direction.MAXIMIZE).outcome  # one seed: no test
    'indistinguishable'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cells import TextEnum
from workers import Direction

DEFAULT_ALPHA = 0.05


class Comparison(TextEnum):
    """How a cell compares with the baseline over paired seeds."""

    BETTER = "better"
    WORSE = "worse"
    INDISTINGUISHABLE = "indistinguishable"


@dataclass(frozen=True)
class Verdict:
    """A paired comparison: its outcome, the two-sided p-value and the pairs it used."""

    outcome: Comparison
    p_value: float
    """1.0 when no test could be made (fewer than 2 pairs, or every difference zero)."""
    pairs: int
    mean_difference: float
    """Mean of cell - baseline over the pairs, in the metric's units (``nan`` without pairs)."""


def paired_verdict(
    cell_values: Sequence[float],
    baseline_values: Sequence[float],
    direction: Direction,
    alpha: float = DEFAULT_ALPHA,
) -> Verdict:
    """Paired two-sided t-test of ``cell_values[i]`` against ``baseline_values[i]`` (seed
    ``i`` for both): ``better`` or ``worse`` (in the metric's ``direction``) when ``p < alpha``,
    else ``indistinguishable``. Fewer than 2 pairs, or differences that are all equal to zero,
    are ``indistinguishable`` with p = 1. Differences that are all equal but not zero are
    decided by their sign (p = 0: no spread can explain them)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: expected a value strictly between 0 and 1, got {alpha}")
    if len(cell_values) != len(baseline_values):
        raise ValueError(
            f"paired values: {len(cell_values)} cell values for {len(baseline_values)} baseline values"
        )
    pairs = [
        (float(c), float(b))
        for c, b in zip(cell_values, baseline_values, strict=True)
        if math.isfinite(c) and math.isfinite(b)
    ]
    if len(pairs) < 2:
        mean = pairs[0][0] - pairs[0][1] if pairs else math.nan
        return Verdict(Comparison.INDISTINGUISHABLE, 1.0, len(pairs), mean)
    import numpy as np
    from scipy import stats

    differences = np.array([c - b for c, b in pairs])
    mean = float(differences.mean())
    if float(differences.std(ddof=1)) == 0.0:
        p_value = 1.0 if mean == 0.0 else 0.0
    else:
        p_value = float(stats.ttest_1samp(differences, 0.0).pvalue)
    if p_value >= alpha:
        return Verdict(Comparison.INDISTINGUISHABLE, p_value, len(pairs), mean)
    cell_ahead = mean > 0 if Direction(direction) is Direction.MAXIMIZE else mean < 0
    return Verdict(Comparison.BETTER if cell_ahead else Comparison.WORSE, p_value, len(pairs), mean)
