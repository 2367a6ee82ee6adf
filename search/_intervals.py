"""Intervals around a search's point estimates: a seed mean, a best-of-n trial value, a
score relative to the best baseline, an architecture's worst-task score.

What each interval means (and does not) is in ``docs/uncertainty.md``. In short:
:func:`mean_interval` is a calibrated Student-t interval of the mean of seed replicates;
:func:`best_interval` says how much a search evaluation's best value depends on which
trials were drawn (a bootstrap, not a calibrated interval with a handful of trials);
:func:`relative_interval` and :func:`score_interval` carry either kind through the ratio
to the baseline and the minimum over tasks by interval arithmetic, so they are at least as
wide as their inputs warrant.

NumPy and SciPy load on first use: the light ``cellsearch`` commands import this module
for :class:`Interval` alone.

Example:
    >>> mean_interval([1.0, 1.2, 0.8]).contains(1.0)
    True
    >>> relative_interval(Interval(0.8, 0.9), Interval(0.5, 0.6), Direction.MAXIMIZE)
    Interval(low=1.3333333333333335, high=1.8)
    >>> score_interval([Interval(1.0, 1.4), Interval(0.9, 1.5)])
    Interval(low=0.9, high=1.4)
    >>> best_interval([0.5], Direction.MAXIMIZE) is None  # one trial: nothing to resample
    True
    >>> format_estimate(1.0562, Interval(0.9804, 1.1137))
    '1.056 [0.98, 1.11]'
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from workers import Direction

DEFAULT_CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
"""Resamples of :func:`best_interval`: its percentiles move by well under a trial's spread
from one seed to another at this count, and it takes about a millisecond for 100 trials."""


@dataclass(frozen=True)
class Interval:
    """A closed interval ``[low, high]`` around a point estimate (``low <= high``)."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise ValueError(f"an interval needs finite low <= high, got [{self.low}, {self.high}]")

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def width(self) -> float:
        return self.high - self.low

    @classmethod
    def of(cls, low: float | None, high: float | None) -> Interval | None:
        """An interval from two stored bounds, ``None`` when either is missing or not finite."""
        if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)) or low > high:
            return None
        return cls(low, high)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a value strictly between 0 and 1, got {confidence}")


def _finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def mean_interval(values: Iterable[float | None], confidence: float = DEFAULT_CONFIDENCE) -> Interval | None:
    """The Student-t interval of the mean of seed replicates (the same configuration trained
    with different seeds): it covers the true mean in ``confidence`` of repeated experiments
    when the seeds' values are roughly normal. Fewer than 2 finite values give ``None``; equal
    values give the point interval."""
    _check_confidence(confidence)
    sample = _finite(values)
    n = len(sample)
    if n < 2:
        return None
    import numpy as np
    from scipy import stats

    mean = float(np.mean(sample))
    sem = float(np.std(sample, ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * sem
    return Interval(mean - half, mean + half)


def values_seed(values: Sequence[float]) -> int:
    """A seed derived from the values themselves (their order ignored), so the same trials
    always give the same bootstrap interval, on every machine and in every process."""
    digest = hashlib.sha256(b"".join(struct.pack("<d", v) for v in sorted(values))).digest()
    return int.from_bytes(digest[:8], "little")


def best_interval(
    values: Iterable[float | None],
    direction: Direction,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int | None = None,
) -> Interval | None:
    """A percentile bootstrap of the best of a search evaluation's trial values.

    The trials are resampled with replacement ``resamples`` times; the interval holds the
    central ``confidence`` of the resamples' best values. It says **how much the best value
    depends on which trials happened to be drawn**: a wide one means a single lucky trial set
    the best, a narrow one that several trials came close to it. It is not a calibrated
    confidence interval of anything: a bootstrap never reaches beyond the best trial seen (the
    upper bound is the best value itself, or very close), and with 2 or 3 trials it is little
    more than the range of the values. The calibrated interval of an architecture's value is
    :func:`mean_interval` over several seeds of its best configuration (the re-evaluation).

    ``seed`` defaults to one derived from the values (:func:`values_seed`): the same trials
    give the same interval. Fewer than 2 finite values give ``None``.
    """
    _check_confidence(confidence)
    if resamples < 1:
        raise ValueError(f"resamples: expected at least 1, got {resamples}")
    sample = _finite(values)
    if len(sample) < 2:
        return None
    import numpy as np

    rng = np.random.default_rng(values_seed(sample) if seed is None else seed)
    data = np.asarray(sample)
    draws = data[rng.integers(0, len(sample), size=(resamples, len(sample)))]
    bests = draws.max(axis=1) if Direction(direction) is Direction.MAXIMIZE else draws.min(axis=1)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(bests, [tail, 1.0 - tail])
    return Interval(float(low), float(high))


def relative_interval(
    value: Interval | None, baseline: Interval | None, direction: Direction
) -> Interval | None:
    """The interval of a value relative to the baseline (above 1 beats it, as
    :func:`~search._strategies.relative_value`) by interval arithmetic: every ratio of a
    point of ``value`` and a point of ``baseline`` lies inside, so the result is at least as
    wide as its inputs warrant (conservative; the two are not assumed independent).
    Maximized: ``[low / base_high, high / base_low]``; minimized: ``[base_low / high,
    base_high / low]``. ``None`` when either is missing or a bound is not positive (ratios
    need positive metrics), or a ratio overflows."""
    if value is None or baseline is None or min(value.low, baseline.low) <= 0:
        return None
    if Direction(direction) is Direction.MAXIMIZE:
        low, high = value.low / baseline.high, value.high / baseline.low
    else:
        low, high = baseline.low / value.high, baseline.high / value.low
    return Interval.of(low, high)  # None where a bound near zero overflows the ratio


def score_interval(relative: Iterable[Interval | None]) -> Interval | None:
    """The interval of an architecture's score, the minimum of its search tasks' relative
    scores: ``[min of the lows, min of the highs]`` (the minimum is monotone in each task).
    ``None`` when there is no task or any task has no interval (its point alone cannot bound
    the minimum)."""
    intervals = list(relative)
    if not intervals or any(iv is None for iv in intervals):
        return None
    present = [iv for iv in intervals if iv is not None]
    return Interval(min(iv.low for iv in present), min(iv.high for iv in present))


def format_estimate(value: float | None, interval: Interval | None, digits: int = 3) -> str:
    """A point estimate and its interval as the tables print them, ``1.056 [0.98, 1.11]`` (the
    bounds one digit shorter: they are rougher than the estimate); the value alone without an
    interval; ``-`` without a value."""
    if value is None or not math.isfinite(value):
        return "-"
    text = f"{value:.{digits}f}"
    if interval is None:
        return text
    bound = max(digits - 1, 1)
    return f"{text} [{interval.low:.{bound}f}, {interval.high:.{bound}f}]"
