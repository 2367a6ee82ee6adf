"""benchmarks/lm_fidelity.py: its pure parts on curves with known answers, and its quick mode on real
Penn Treebank training (the full run's figures are in its printout, not asserted here)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
from _test_data import TEST_DATA, needs_test_data

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "lm_fidelity.py"


def load_benchmark():  # benchmarks/ is no package: load the script as a module
    spec = importlib.util.spec_from_file_location("lm_fidelity_benchmark", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


lm = load_benchmark()


def power_curve(limit: float, scale: float, steps: range) -> list[tuple[int, float]]:
    return [(s, limit + scale * s**-0.5) for s in steps]


def test_the_short_score_reads_only_the_start_of_the_curve() -> None:
    curve = power_curve(100.0, 2000.0, range(10, 101, 10))
    assert lm.short_score(curve, None, "best", 50, 2, 3) == pytest.approx(100 + 2000 * 50**-0.5)
    expected_mean = sum(v for s, v in curve if 30 <= s <= 50) / 3
    assert lm.short_score(curve, None, "last_mean", 50, 2, 3) == pytest.approx(expected_mean)
    assert lm.short_score(curve, 40, "best", 50, 2, 3) == math.inf  # diverged before the short budget
    assert lm.short_score(curve, 80, "best", 50, 2, 3) < math.inf  # ... or after it: the prefix counts


def test_the_prediction_of_a_power_law_lands_near_its_long_budget_value() -> None:
    curve = power_curve(100.0, 2000.0, range(10, 101, 10))
    predicted = lm.short_score(curve, None, "predicted", 100, 10, 3)
    at_long = 100 + 2000 * 1000**-0.5
    assert abs(predicted - at_long) < 0.1 * abs(lm.short_score(curve, None, "best", 100, 10, 3) - at_long)


def test_truth_is_the_best_of_the_long_run_and_a_diverged_run_ranks_last() -> None:
    curve = [(10, 300.0), (20, 200.0), (30, 250.0)]
    assert lm.truth(curve, None) == 200.0
    assert lm.truth(curve, 25) == math.inf and lm.truth([], None) == math.inf


def test_rank_agreement_of_identical_reversed_and_tied_orders() -> None:
    assert lm.rank_agreement([1, 2, 3, 4], [5, 6, 7, 8]) == pytest.approx((1.0, 1.0))
    assert lm.rank_agreement([1, 2, 3, 4], [8, 7, 6, 5]) == pytest.approx((-1.0, -1.0))
    rho, tau = lm.rank_agreement([1, 2, math.inf, math.inf], [1, 2, 3, 4])  # two diverged, tied last
    assert 0.9 < rho < 1.0 and 0.9 < tau < 1.0


def test_the_interval_holds_the_figure_and_narrows_with_more_cells() -> None:
    short = [float(i) + (0.5 if i % 3 == 0 else 0.0) for i in range(12)]
    long = [float(i) for i in range(12)]
    rho, _ = lm.rank_agreement(short, long)
    low, high = lm.spearman_interval(short, long)
    assert low <= rho <= high <= 1.0
    wide_low, wide_high = lm.spearman_interval(short[:6], long[:6])
    assert wide_high - wide_low >= high - low


def test_every_cell_gets_trial_zero_of_both_protocols_and_the_spread_cells_more() -> None:
    from cells import library

    cells = [("library", library.get(name)) for name in ("lstm", "cifg", "gru")]
    runs = lm.planned_runs(cells, spread_trials=3)
    assert {(r.cell.name, r.protocol) for r in runs if r.trial == 0} == {
        (c.name, p) for _, c in cells for p in lm.PROTOCOLS
    }
    extra = {(r.cell.name, r.protocol, r.trial) for r in runs if r.trial > 0}
    assert extra == {(n, p, t) for n in ("lstm", "gru") for p in lm.PROTOCOLS for t in (1, 2)}


def test_the_draws_are_paired_across_cells_and_differ_across_trials() -> None:
    settings = {"train": "a.txt", "valid": "b.txt", "test": "c.txt"}
    for protocol in lm.PROTOCOLS:
        space = lm.protocol_space(protocol, settings, hidden=32)
        first, again, second = lm.draw(space, 0), lm.draw(space, 0), lm.draw(space, 1)
        assert first == again and first != second
        assert first["hidden_size"] == 32 and first["tie_weights"] is (protocol == "lm")


@needs_test_data("ptb/ptb.valid.txt")
def test_quick_mode_trains_and_reports_both_protocols(capsys: pytest.CaptureFixture[str]) -> None:
    figures = lm.main(["--quick", "--data", str(TEST_DATA)])
    out = capsys.readouterr().out
    assert [f.protocol for f in figures] == list(lm.PROTOCOLS)
    for fig in figures:
        assert fig.cells == 3 and set(fig.agreement) == set(lm.SCORES)
        assert all(-1.0 <= rho <= 1.0 and -1.0 <= tau <= 1.0 for rho, tau in fig.agreement.values())
        assert set(fig.intervals) == set(fig.trained) == set(lm.SCORES)
        assert set(fig.spreads) == {"gru"} and all(ratio >= 1.0 for ratio in fig.spreads["gru"])
    assert "== protocol lm" in out and "Spearman" in out and "spread of gru" in out
