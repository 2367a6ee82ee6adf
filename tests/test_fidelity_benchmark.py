"""benchmarks/fidelity.py: its pure parts on synthetic tables with known answers, and its quick mode
on real training (the figures of the full run are in the benchmark's printout, not asserted here)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from cells import canonical_hash, library

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "fidelity.py"


def load_benchmark():  # benchmarks/ is no package: load the script as a module
    spec = importlib.util.spec_from_file_location("fidelity_benchmark", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


fidelity = load_benchmark()


def ladder_cost(n: int, budgets: list[int], top: int, eta: int = 3) -> tuple[list[int], int, int]:
    """Survivors per rung and the steps spent continued and restarted, by the ladder's arithmetic."""
    alive, survivors = n, []
    for _ in budgets:
        survivors.append(alive)
        alive = max(min(top, n), math.ceil(alive / eta))
    increments = [b - a for a, b in zip([0, *budgets[:-1]], budgets, strict=True)]
    continued = sum(s * d for s, d in zip(survivors, increments, strict=True))
    restarted = sum(s * b for s, b in zip(survivors, budgets, strict=True))
    return survivors, continued, restarted


def test_ladder_and_value_at_read_a_run_as_shorter_runs():
    assert fidelity.ladder(100) == [100, 300, 900, 2700]
    assert fidelity.ladder(4, rungs=3, eta=2) == [4, 8, 16]
    curve = [(100, 0.3), (200, 0.6), (300, 0.5), (400, 0.7)]
    assert [fidelity.value_at(curve, b) for b in (50, 100, 300, 400)] == [0.0, 0.3, 0.6, 0.7]
    assert fidelity.value_at(curve, 300, diverged_at=301) == 0.6
    assert fidelity.value_at(curve, 300, diverged_at=300) == 0.0


def test_a_budget_that_keeps_the_ranking_gives_tau_one_and_halving_finds_the_top_at_the_ladder_cost():
    rng = np.random.default_rng(0)
    quality = rng.permutation(45).astype(float)
    budgets = fidelity.ladder(10)
    scores = np.stack([quality * (r + 1) + 100 * r for r in range(4)], axis=1)  # same order every rung
    assert fidelity.taus_against_last(scores) == pytest.approx([1.0, 1.0, 1.0, 1.0])
    halving = fidelity.successive_halving(scores, budgets, eta=3, top=5)
    survivors, continued, restarted = ladder_cost(45, budgets, 5)
    assert halving.survivors == survivors == [45, 15, 5, 5]
    assert halving.steps_continued == continued == 45 * 10 + 15 * 20 + 5 * 60 + 5 * 180
    assert halving.steps_restarted == restarted == 45 * 10 + 15 * 30 + 5 * 90 + 5 * 270
    assert halving.steps_full == 45 * 270
    assert halving.found == 5
    assert fidelity.top_overlap(scores, 5) == [5, 5, 5, 5]
    assert sorted(halving.chosen) == sorted(np.argsort(-quality)[:5].tolist())


def test_a_first_rung_that_reverses_the_ranking_gives_tau_minus_one_and_halving_loses_the_top():
    quality = np.arange(30, dtype=float)
    scores = np.stack([-quality, quality, quality], axis=1)  # the first rung has it backwards
    taus = fidelity.taus_against_last(scores)
    assert taus == pytest.approx([-1.0, 1.0, 1.0])
    assert fidelity.first_reaching(taus, [1, 3, 9]) == 3
    assert fidelity.first_reaching([0.1, 0.79, 1.0], [1, 3, 9]) is None  # the reference itself does not count
    halving = fidelity.successive_halving(scores, [1, 3, 9], eta=3, top=5)
    assert halving.survivors == [30, 10, 5]
    assert halving.found == 0  # the ten kept after rung 1 are the true worst ten
    assert fidelity.top_overlap(scores, 5) == [0, 5, 5]


def test_seed_taus_are_one_for_seeds_that_agree_and_minus_one_for_reversed_seeds():
    quality = np.arange(10, dtype=float)
    agree = np.stack([quality, 2 * quality, quality + 1], axis=1)[:, None, :]  # [cells, 1 rung, 3 seeds]
    reversed_pair = np.stack([quality, -quality], axis=1)[:, None, :]
    assert fidelity.seed_taus(agree) == pytest.approx([1.0])
    assert fidelity.seed_taus(reversed_pair) == pytest.approx([-1.0])
    assert math.isnan(fidelity.seed_taus(agree[:, :, :1])[0])


def test_seed_spread_on_a_known_table():
    # two cells, one rung, three seeds: std (ddof 1) 1 and 2; range/mean 2/2 and 4/4
    table = np.array([[[1.0, 2.0, 3.0]], [[2.0, 4.0, 6.0]]])
    std, relative = fidelity.seed_spread(table)
    assert std == pytest.approx([1.5])
    assert relative == pytest.approx([1.0])


def test_the_combined_score_is_the_worst_task_relative_to_the_baseline():
    # cells: baseline, then one better on a and worse on b; one rung, one seed
    a = np.array([[[0.5]], [[1.0]]])
    b = np.array([[[0.8]], [[0.4]]])
    means, per_seed = fidelity.combined_scores({"a": a, "b": b}, baseline=0)
    assert means[:, 0] == pytest.approx([1.0, 0.5])
    assert per_seed[:, 0, 0] == pytest.approx([1.0, 0.5])


def test_the_cell_set_is_fixed_unique_and_starts_with_the_library():
    cells = fidelity.fidelity_cells(20)
    again = fidelity.fidelity_cells(20)
    hashes = [canonical_hash(cell) for _, cell in cells]
    assert len(cells) == 20 and len(set(hashes)) == 20
    assert hashes == [canonical_hash(cell) for _, cell in again]
    assert [cell.name for source, cell in cells if source == "library"] == list(library.names())
    assert all(source.startswith("mutant-of-") for source, _ in cells[len(library.names()) :])


def test_quick_mode_trains_and_reports_figures_in_range(tmp_path, capsys):
    out = tmp_path / "fidelity.csv"
    report = fidelity.main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    assert report.budgets == [4, 12, 36, 108]
    assert len(report.names) == 5 and "gru" in report.names
    assert len(report.rows) == 5 * 2 * 2  # cells x tasks x seeds
    assert set(report.figures) == {"arith", "xml", "combined"}
    survivors, continued, restarted = ladder_cost(5, report.budgets, 2)
    for name, fig in report.figures.items():
        assert fig.taus[-1] == pytest.approx(1.0), name
        assert all(-1.0 <= t <= 1.0 for t in fig.taus if not math.isnan(t)), name
        assert fig.halving.survivors == survivors == [5, 2, 2, 2]
        assert fig.halving.steps_continued == continued == 5 * 4 + 2 * 8 + 2 * 24 + 2 * 72
        assert fig.halving.steps_restarted == restarted
        assert fig.halving.steps_full == 5 * 108
        assert 0 <= fig.halving.found <= 2
        assert fig.reaches in (None, 4, 12, 36), name
        assert fig.overlap[-1] == 2 and all(0 <= k <= 2 for k in fig.overlap), name
        assert all(-1.0 <= t <= 1.0 for t in fig.seed_taus if not math.isnan(t)), name
        assert all(s >= 0 for s in fig.std), name
        assert f"== {name}" in printed
    assert "Kendall tau vs 108" in printed
    reread = fidelity.main(["--table", str(out)])
    assert reread.names == report.names
    assert reread.figures["combined"].taus == pytest.approx(report.figures["combined"].taus, nan_ok=True)


def test_a_long_run_read_at_step_b_is_the_run_of_b_steps():
    # The benchmark trains once to the largest budget and reads the shorter ones off the
    # curve; valid only while nothing in training depends on max_steps.
    from workers import Budget, HyperParams, evaluate_trial, make_task

    task = make_task("xml", max_depth=2, max_children=2, max_tag_length=2, valid_size=20, test_size=20)
    hp = HyperParams(hidden_size=16, learning_rate=1e-2, seed=3)
    short = evaluate_trial("gru", task, hp, Budget(max_steps=12, eval_every=4), device="cpu")
    long = evaluate_trial("gru", task, hp, Budget(max_steps=36, eval_every=4), device="cpu")
    assert short.status == long.status == "ok"
    assert long.curve[: len(short.curve)] == short.curve
    assert fidelity.value_at(long.curve, 12) == short.value
