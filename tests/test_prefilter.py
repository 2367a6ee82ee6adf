"""Zero-cost proxies: deterministic, finite on real cells, low for broken cells; ranking and
dropping candidates. (How well they predict training is measured by
benchmarks/prefilter_correlation.py, not asserted here.)"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pydantic
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cells import CellGraph, library, mutate, random_cell
from workers import (
    PROXIES,
    PrefilterConfig,
    Task,
    drop_worst,
    make_task,
    prefilter_score,
    rank_candidates,
)
from workers._prefilter import jacob_cov_score

SMALL = {"hidden_size": 16, "batches": 1, "batch_size": 16}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the suite shares two cores; many threads only spin-wait
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def task() -> Task:
    return make_task("arith", max_digits=2, valid_size=10, test_size=10)


NO_INPUT = CellGraph.parse(
    {
        "name": "no-input",
        "num_states": 1,
        "nodes": [
            {"name": "a", "op": "linear", "inputs": ["h_prev_0"]},
            {"name": "h", "op": "tanh", "inputs": ["a"]},
        ],
        "outputs": ["h"],
    }
)
CONSTANT = CellGraph.parse(
    {
        "name": "constant",
        "num_states": 1,
        "nodes": [
            {"name": "a", "op": "linear", "inputs": ["x", "h_prev_0"]},
            {"name": "zero", "op": "sub", "inputs": ["a", "a"]},
        ],
        "outputs": ["zero"],
    }
)


def _mutants() -> list[CellGraph]:
    rng = np.random.default_rng(7)
    cells = [random_cell(rng) for _ in range(6)]
    cell = library.get("gru")
    for _ in range(6):
        cell, _ = mutate(cell, rng)
        cells.append(cell)
    return cells


@pytest.mark.parametrize("proxy", PROXIES)
def test_scores_are_deterministic_and_leave_the_global_generator_alone(proxy: str, task: Task) -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = prefilter_score(library.get("lstm"), task, proxy=proxy, seed=3, **SMALL)  # type: ignore[arg-type]
    assert torch.equal(torch.rand(3), expected_next)
    assert prefilter_score(library.get("lstm"), task, proxy=proxy, seed=3, **SMALL) == first  # type: ignore[arg-type]
    assert prefilter_score(library.get("lstm"), task, proxy=proxy, seed=4, **SMALL) != first  # type: ignore[arg-type]


@pytest.mark.parametrize("proxy", PROXIES)
def test_scores_are_finite_for_library_cells_and_mutants(proxy: str, task: Task) -> None:
    cells = [library.get(name) for name in library.names()] + _mutants()
    scores = [prefilter_score(cell, task, proxy=proxy, **SMALL) for cell in cells]  # type: ignore[arg-type]
    assert all(math.isfinite(s) for s in scores), dict(zip([c.name for c in cells], scores, strict=True))
    assert len(set(scores)) > len(scores) // 2  # they tell cells apart


@pytest.mark.parametrize("proxy", PROXIES)
def test_a_constant_cell_ranks_below_the_lstm(proxy: str, task: Task) -> None:
    lstm = prefilter_score(library.get("lstm"), task, proxy=proxy, **SMALL)  # type: ignore[arg-type]
    assert prefilter_score(CONSTANT, task, proxy=proxy, **SMALL) < lstm  # type: ignore[arg-type]


def test_a_cell_ignoring_its_input_ranks_below_the_lstm_by_jacobian(task: Task) -> None:
    # The gradient proxies cannot see this: the cell's own weights still get gradients.
    ranked = rank_candidates([NO_INPUT, library.get("lstm"), CONSTANT], task, "jacob_cov", hidden_size=16)
    assert ranked[0][0] == 1
    assert ranked[1][1] == ranked[2][1]  # both all-zero Jacobians: the same, lowest score


def test_jacobian_score_orders_correlation_and_survives_bad_rows() -> None:
    generator = torch.Generator().manual_seed(0)
    varied = torch.randn(8, 50, generator=generator, dtype=torch.float64)
    similar = varied[:1] + 0.01 * torch.randn(8, 50, generator=generator, dtype=torch.float64)
    assert jacob_cov_score(varied) > jacob_cov_score(similar) > jacob_cov_score(torch.zeros(8, 50))
    broken = varied.clone()
    broken[3, 5] = math.nan
    assert math.isfinite(jacob_cov_score(broken)) and jacob_cov_score(broken) < jacob_cov_score(varied)


def test_rank_candidates_sorts_by_score(task: Task) -> None:
    cells = [library.get(n) for n in ("tanh", "gru", "lstm")] + [CONSTANT]
    ranked = rank_candidates(cells, task, "snip", hidden_size=16, batches=1)
    assert sorted(i for i, _ in ranked) == [0, 1, 2, 3]
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    assert ranked[-1][0] == 3
    for index, score in ranked:
        assert score == prefilter_score(cells[index], task, 16, 1, proxy="snip")


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 7), st.floats(0.0, 0.99))
def test_drop_worst_keeps_the_right_count_in_order(count: int, fraction: float) -> None:
    task = make_task("arith", max_digits=2, valid_size=10, test_size=10)
    pool = [library.get(n) for n in ("lstm", "gru", "tanh", "mut1", "cifg", "lstm-noog")] + [CONSTANT]
    cells = pool[:count]
    kept = drop_worst(cells, fraction, task, "grad_norm", hidden_size=8, batches=1, batch_size=8)
    assert len(kept) == count - math.floor(fraction * count)
    positions = [cells.index(c) for c in kept]
    assert positions == sorted(positions)
    if len(kept) < count:
        ranked = rank_candidates(cells, task, "grad_norm", hidden_size=8, batches=1, batch_size=8)
        assert {cells[i].name for i, _ in ranked[: len(kept)]} == {c.name for c in kept}


def test_bad_settings_name_the_field(task: Task) -> None:
    with pytest.raises(ValueError, match="fraction"):
        drop_worst([library.get("lstm")], 1.0, task)
    with pytest.raises(ValueError, match="proxy"):
        prefilter_score("lstm", task, proxy="zen")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        prefilter_score("lstm", task, batch_size=1)
    with pytest.raises(pydantic.ValidationError, match="fraction"):
        PrefilterConfig.model_validate({"fraction": 1.5})
    with pytest.raises(pydantic.ValidationError, match="proxy"):
        PrefilterConfig.model_validate({"proxy": "synflow"})
    assert PrefilterConfig().proxy == "jacob_cov"
