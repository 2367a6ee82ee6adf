"""Population training: every member gets what its trial alone would get (weights, data,
dropout, clipping, optimizer, curve, pruning, divergence), and the planning of populations.

The equality tests run in float64 so that the batched products' different summation order
stays far below the tolerance even after Adam has amplified it for twenty steps.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from _test_data import TEST_DATA, needs_test_data
from hypothesis import given, settings
from hypothesis import strategies as st

import workers._population as population_module
from cells import CellGraph, library, mutate, random_cell
from workers import (
    Batch,
    Budget,
    HyperParams,
    Task,
    TaskConfig,
    TrialResult,
    evaluate_trial,
    make_task,
    plan_populations,
    population_size,
    train_population,
)
from workers._population_optim import PopulationOptimizer

BUDGET = Budget(max_steps=20, eval_every=5, eval_batch_size=16)


pytestmark = pytest.mark.usefixtures("float64_one_thread")


@pytest.fixture(scope="module")
def arith() -> Task:
    return make_task("arith", max_digits=2, valid_size=40, test_size=40)


def _mutant_chain(start: str, seed: int, length: int) -> CellGraph:
    rng = np.random.default_rng(seed)
    cell = library.get(start)
    for _ in range(length):
        cell, _ = mutate(cell, rng)
    return cell


CELLS = {
    "lstm": lambda: library.get("lstm"),
    "gru": lambda: library.get("gru"),
    "random": lambda: random_cell(np.random.default_rng(1)),
    "lstm-mutant": lambda: _mutant_chain("lstm", 2, 1),
    "gru-mutant-chain": lambda: _mutant_chain("gru", 3, 3),
}

MEMBERS = [
    HyperParams(hidden_size=16, learning_rate=1e-2, seed=0, max_grad_norm=1.0),
    HyperParams(hidden_size=16, learning_rate=3e-3, seed=1, forget_bias=1.0, init_scale=0.1, dropout=0.2),
    HyperParams(hidden_size=16, learning_rate=2e-2, seed=2, max_grad_norm=None, dropout=0.1),
    HyperParams(hidden_size=16, learning_rate=5e-3, seed=1, max_grad_norm=0.3),  # shares seed 1's data
]


def assert_same_result(member: TrialResult, alone: TrialResult) -> None:
    assert member.status == alone.status, (member.error, alone.error)
    assert member.steps == alone.steps
    assert member.diverged_at_step == alone.diverged_at_step
    assert member.num_params == alone.num_params
    assert [s for s, _ in member.curve] == [s for s, _ in alone.curve]
    assert [v for _, v in member.curve] == pytest.approx([v for _, v in alone.curve], rel=1e-4, abs=1e-9)
    # One run record fills both: the same fields and metrics (a member adds its population's size).
    assert (member.task, member.metric, member.direction, member.hparams, member.error) == (
        alone.task,
        alone.metric,
        alone.direction,
        alone.hparams,
        alone.error,
    )
    assert set(member.metrics) - {"population_size"} == set(alone.metrics)
    assert member.metrics["hidden_size"] == alone.metrics["hidden_size"]
    if alone.value is None:
        assert member.value is None
        return
    assert member.value == pytest.approx(alone.value, rel=1e-4)
    for key in ("best_step", "final_value"):
        assert member.metrics[key] == pytest.approx(alone.metrics[key], rel=1e-4)
    nll = "nll" if "nll" in alone.metrics else None
    if nll is not None:
        assert member.metrics[nll] == pytest.approx(alone.metrics[nll], rel=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["lstm", "gru", "random"])
def test_members_match_their_trials_alone_on_cuda(name: str, arith: Task) -> None:
    cell = CELLS[name]()
    results = train_population(cell, arith, MEMBERS, BUDGET, device="cuda")
    for member, hp in zip(results, MEMBERS, strict=True):
        assert member.device.startswith("cuda")
        assert_same_result(member, evaluate_trial(cell, arith, hp, BUDGET, device="cuda"))


@pytest.mark.parametrize("name", list(CELLS))
def test_members_match_their_trials_alone(name: str, arith: Task) -> None:
    cell = CELLS[name]()
    results = train_population(cell, arith, MEMBERS, BUDGET, device="cpu")
    assert [r.status for r in results] == ["ok"] * len(MEMBERS)
    assert all(r.metrics["population_size"] == len(MEMBERS) for r in results)
    for member, hp in zip(results, MEMBERS, strict=True):
        assert member.hparams == hp.model_dump()
        assert_same_result(member, evaluate_trial(cell, arith, hp, BUDGET, device="cpu"))
    # The members really differ: the same shape does not mean the same training.
    assert len({tuple(v for _, v in r.curve) for r in results}) > 1


def test_two_layers_dropout_and_sgd_match(arith: Task) -> None:
    members = [
        HyperParams(hidden_size=12, num_layers=2, optimizer="sgd", learning_rate=0.5, dropout=0.3, seed=4),
        HyperParams(
            hidden_size=12, num_layers=2, optimizer="sgd", learning_rate=0.2, seed=5, max_grad_norm=0.5
        ),
        HyperParams(hidden_size=12, num_layers=2, optimizer="sgd", learning_rate=1.0, dropout=0.1, seed=4),
    ]
    cell = library.get("lstm-peephole")  # diag parameters too
    budget = Budget(max_steps=12, eval_every=4, eval_batch_size=16)
    for member, hp in zip(train_population(cell, arith, members, budget, device="cpu"), members, strict=True):
        assert_same_result(member, evaluate_trial(cell, arith, hp, budget, device="cpu"))


class EchoWindows(Task):
    """Output the previous token (or frame) of a random stream read in windows that continue
    each other (state carried), three windows a stream. Window lengths depend on the data
    seed, so the members of a population see batches of different lengths."""

    name = "echo-windows"
    config_class = TaskConfig
    primary_metric = "accuracy"
    direction = "maximize"
    input_kind = "tokens"
    loss = "ce"
    vocab = 5

    def __init__(self) -> None:
        super().__init__(TaskConfig())

    @property
    def input_size(self) -> int:
        return self.vocab

    @property
    def output_size(self) -> int:
        return self.vocab

    def windows(self, generator: torch.Generator, batch_size: int, lengths: list[int]) -> list[Batch]:
        total = sum(lengths)
        if self.input_kind == "tokens":
            inputs = torch.randint(self.vocab, (total, batch_size), generator=generator)
        else:
            inputs = (torch.rand(total, batch_size, self.vocab, generator=generator) < 0.3).double()
        targets = torch.cat([torch.zeros_like(inputs[:1]), inputs[:-1]])
        mask = torch.ones(total, batch_size, dtype=torch.float32)
        mask[0] = 0.0
        batches, start = [], 0
        for length in lengths:
            end = start + length
            batches.append(Batch(inputs[start:end], targets[start:end], mask[start:end], start > 0))
            start = end
        return batches

    def train_batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(seed)
        k = 0
        while True:
            yield from self.windows(generator, batch_size, [3 + (seed + k + i) % 3 for i in range(3)])
            k += 1

    def eval_batches(self, split: str, batch_size: int) -> list[Batch]:  # type: ignore[override]
        return self.windows(torch.Generator().manual_seed(99), batch_size, [4, 4, 4])

    def evaluate(self, predict, split, batch_size):  # type: ignore[no-untyped-def]
        right = total = nll = 0.0
        for batch in self.eval_batches(split, batch_size):
            logits = predict(batch)
            if self.loss == "ce":
                right += float(((logits.argmax(-1) == batch.targets).float() * batch.mask).sum())
            else:
                right += float((((logits > 0).double() == batch.targets).all(-1).float() * batch.mask).sum())
            if self.loss == "ce":
                per = torch.nn.functional.cross_entropy(
                    logits.flatten(0, 1), batch.targets.flatten(), reduction="none"
                )
                nll += float((per * batch.mask.flatten()).sum())
            total += float(batch.mask.sum())
        return {"accuracy": right / total, "nll": nll / total}


class FrameEchoWindows(EchoWindows):
    input_kind = "frames"
    loss = "bce"


@pytest.mark.parametrize("task", [EchoWindows(), FrameEchoWindows()], ids=["tokens", "frames"])
def test_carried_state_and_unequal_lengths_match(task: Task) -> None:
    members = [
        HyperParams(hidden_size=8, learning_rate=2e-2, seed=0, batch_size=4),
        HyperParams(hidden_size=8, learning_rate=1e-2, seed=1, batch_size=4, dropout=0.2),
        HyperParams(hidden_size=8, learning_rate=3e-2, seed=2, batch_size=4),
    ]
    budget = Budget(max_steps=9, eval_every=3, eval_batch_size=4)
    for member, hp in zip(train_population("gru", task, members, budget, device="cpu"), members, strict=True):
        assert_same_result(member, evaluate_trial("gru", task, hp, budget, device="cpu"))


DATA = TEST_DATA


@needs_test_data("ptb/ptb.valid.txt")
def test_language_model_members_match_on_real_text() -> None:
    # Character-level text: windows continue each other (state carried) and every epoch starts
    # at a random offset, so members with different seeds read windows of different lengths.
    task = make_task(
        "text",
        dir=str(DATA / "ptb"),
        train="ptb.valid.txt",
        split_fractions=(0.9, 0.05, 0.05),
        level="char",
        bptt=20,
        max_tokens=6000,
        max_eval_tokens=2000,
    )
    members = [
        HyperParams(hidden_size=16, batch_size=8, seed=0, learning_rate=1e-2),
        HyperParams(hidden_size=16, batch_size=8, seed=1, learning_rate=3e-3, dropout=0.2),
        HyperParams(hidden_size=16, batch_size=8, seed=2, learning_rate=2e-2, forget_bias=1.0),
    ]
    budget = Budget(max_steps=45, eval_every=15, eval_batch_size=8)
    results = train_population("lstm", task, members, budget, device="cpu")
    for member, hp in zip(results, members, strict=True):
        assert_same_result(member, evaluate_trial("lstm", task, hp, budget, device="cpu"))


@pytest.mark.parametrize("name", ["gru", "lstm-mutant"])
def test_tied_weights_members_match_their_trials_alone(name: str, arith: Task) -> None:
    # The language-model protocol ties the embedding to the output layer: one matrix gets the
    # gradients of both uses, in the population as alone (with and without embedding dropout,
    # which decides whether the embedding folds into the first layer's products).
    cell = CELLS[name]()
    members = [hp.model_copy(update={"tie_weights": True}) for hp in MEMBERS]
    results = train_population(cell, arith, members, BUDGET, device="cpu")
    for member, hp in zip(results, members, strict=True):
        alone = evaluate_trial(cell, arith, hp, BUDGET, device="cpu")
        assert_same_result(member, alone)
    untied = evaluate_trial(cell, arith, MEMBERS[0], BUDGET, device="cpu")
    assert results[0].num_params < untied.num_params  # the output matrix is not counted twice


LINEAR_RNN = CellGraph.parse(
    {
        "name": "linear-rnn",
        "num_states": 1,
        "nodes": [
            {"name": "a", "op": "linear", "inputs": ["x", "h_prev_0"]},
            {"name": "h", "op": "identity", "inputs": ["a"]},
        ],
        "outputs": ["h"],
    }
)


def test_a_diverging_member_leaves_the_others_untouched(arith: Task) -> None:
    # An unbounded cell with SGD at lr 1.0 and no clipping overflows after a few steps.
    members = [
        HyperParams(hidden_size=16, optimizer="sgd", learning_rate=0.1, seed=0, init_scale=0.5),
        HyperParams(
            hidden_size=16, optimizer="sgd", learning_rate=1.0, seed=3, init_scale=0.5, max_grad_norm=None
        ),
        HyperParams(hidden_size=16, optimizer="sgd", learning_rate=0.05, seed=1, init_scale=0.5),
    ]
    results = train_population(LINEAR_RNN, arith, members, BUDGET, device="cpu")
    assert [r.status for r in results] == ["ok", "diverged", "ok"]
    assert results[1].diverged_at_step is not None and results[1].steps == results[1].diverged_at_step - 1
    for member, hp in zip(results, members, strict=True):
        assert_same_result(member, evaluate_trial(LINEAR_RNN, arith, hp, BUDGET, device="cpu"))


def test_when_every_member_diverges_each_is_reported_diverged(arith: Task) -> None:
    members = [
        HyperParams(
            hidden_size=16, optimizer="sgd", learning_rate=rate, seed=seed, init_scale=0.5, max_grad_norm=None
        )
        for rate, seed in ((1.0, 3), (2.0, 4))
    ]
    results = train_population(LINEAR_RNN, arith, members, BUDGET, device="cpu")
    assert [r.status for r in results] == ["diverged", "diverged"]
    for member, hp in zip(results, members, strict=True):
        assert_same_result(member, evaluate_trial(LINEAR_RNN, arith, hp, BUDGET, device="cpu"))


def test_pruned_member_stops_and_the_others_go_on(arith: Task) -> None:
    calls: list[tuple[int, int]] = []

    def report(member: int, step: int, value: float) -> bool:
        calls.append((member, step))
        return member == 1 and step == 10

    results = train_population("gru", arith, MEMBERS[:3], BUDGET, report=report, device="cpu")
    assert [r.status for r in results] == ["ok", "pruned", "ok"]
    assert results[1].steps == 10 and [s for s, _ in results[1].curve] == [5, 10]
    assert (1, 15) not in calls and (0, 20) in calls and (2, 20) in calls
    alone = evaluate_trial("gru", arith, MEMBERS[2], BUDGET, device="cpu")
    assert_same_result(results[2], alone)


@pytest.mark.parametrize("cache_bytes", [1, 40 * 16 * 4 * 10 * 2], ids=["streaming", "chunks"])
def test_validation_in_parts_gives_the_same_metrics(
    arith: Task, cache_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = Budget(max_steps=4, eval_every=2, eval_batch_size=16)
    whole = train_population("lstm", arith, MEMBERS[:3], budget, device="cpu")
    monkeypatch.setattr(population_module, "EVAL_CACHE_BYTES", cache_bytes)
    parts = train_population("lstm", arith, MEMBERS[:3], budget, device="cpu")
    assert [r.curve for r in parts] == [r.curve for r in whole]
    assert [r.metrics["nll"] for r in parts] == pytest.approx([r.metrics["nll"] for r in whole], rel=1e-9)


def test_bad_members_fail_alone_and_mixed_shapes_are_refused(arith: Task) -> None:
    budget = Budget(max_steps=2, eval_every=2, eval_batch_size=16)
    results = train_population(
        "tanh", arith, [{"hidden_size": 8}, {"hidden_size": 8, "learning_rate": -1}], budget
    )
    assert [r.status for r in results] == ["ok", "failed"]
    assert "learning_rate" in (results[1].error or "")
    with pytest.raises(ValueError, match="plan_populations"):
        train_population("tanh", arith, [{"hidden_size": 8}, {"hidden_size": 16}], budget)
    with pytest.raises(ValueError, match="at least one"):
        train_population("tanh", arith, [], budget)
    failed = train_population("no-such-cell", arith, [{"hidden_size": 8}], budget)
    assert failed[0].status == "failed" and "no-such-cell" in (failed[0].error or "")


def test_a_time_budget_stops_every_member(arith: Task) -> None:
    budget = Budget(max_steps=None, max_seconds=1e-9, eval_every=50, eval_batch_size=16)
    results = train_population("gru", arith, MEMBERS[:2], budget, device="cpu")
    assert [(r.status, r.steps, len(r.curve)) for r in results] == [("ok", 1, 1), ("ok", 1, 1)]
    assert all(r.seconds > 0 for r in results)


def test_optimizer_matches_torch_per_member() -> None:
    generator = torch.Generator().manual_seed(0)
    init = torch.randn(3, 4, 5, generator=generator)
    grads = [torch.randn(3, 4, 5, generator=generator) * 10 for _ in range(4)]
    rates, norms = [1e-2, 1e-3, 3e-2], [1.0, None, 50.0]
    for kind, unfused in (("adam", False), ("adam", True), ("sgd", False)):
        stacked = init.clone().requires_grad_()
        optimizer = PopulationOptimizer(kind, rates, norms)  # type: ignore[arg-type]
        optimizer.unfused = unfused  # the plain tensor-op path, where torch lacks the fused kernel
        for g in grads:
            stacked.grad = g.clone()
            optimizer.step({"w": stacked})
        for m in range(3):
            alone = init[m].clone().requires_grad_()
            cls = torch.optim.Adam if kind == "adam" else torch.optim.SGD
            reference = cls([alone], lr=rates[m])
            for g in grads:
                alone.grad = g[m].clone()
                if norms[m] is not None:
                    torch.nn.utils.clip_grad_norm_([alone], norms[m])
                reference.step()
            assert torch.allclose(stacked[m], alone, rtol=1e-12, atol=1e-12), (kind, unfused, m)


def test_plan_populations_groups_by_shape_and_size() -> None:
    trials = [
        {"hidden_size": 64},
        {"hidden_size": 32},
        {"hidden_size": 64, "learning_rate": 0.1},
        {"hidden_size": 64, "optimizer": "sgd"},
        {"hidden_size": 64, "batch_size": 16},
        {"hidden_size": 64, "num_layers": 2},
        {"hidden_size": 64, "dropout": 0.5, "seed": 3},
        {"param_budget": 5000},
        {"param_budget": 5000, "seed": 1},
    ]
    assert plan_populations(trials, "auto") == [[0, 2, 6], [1], [3], [4], [5], [7, 8]]
    assert plan_populations(trials, 2) == [[0, 2], [1], [3], [4], [5], [6], [7, 8]]
    assert plan_populations(trials, "off") == [[i] for i in range(len(trials))]
    assert population_size("auto", "cpu") == 20 and population_size(1) == 1
    with pytest.raises(ValueError, match="population"):
        population_size("many")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="population"):
        plan_populations(trials, 0)


def test_plan_populations_resolves_parameter_budgets(arith: Task) -> None:
    cell = library.get("gru")
    trials = [{"param_budget": 5000}, {"param_budget": 5100}, {"param_budget": 50_000}]
    assert plan_populations(trials, 20) == [[0], [1], [2]]
    assert plan_populations(trials, 20, task=arith, cell=cell) == [[0, 1], [2]]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "hidden_size": st.sampled_from([8, 16]),
                "num_layers": st.sampled_from([1, 2]),
                "optimizer": st.sampled_from(["adam", "sgd"]),
                "learning_rate": st.floats(1e-4, 1e-1),
            }
        ),
        max_size=30,
    ),
    st.one_of(st.sampled_from(["auto", "off"]), st.integers(1, 7)),
)
def test_plan_populations_partitions_the_trials(trials: list[dict], setting: str | int) -> None:
    groups = plan_populations(trials, setting)  # type: ignore[arg-type]
    assert sorted(i for g in groups for i in g) == list(range(len(trials)))
    assert all(0 < len(g) <= population_size(setting) for g in groups)  # type: ignore[arg-type]
    for group in groups:
        assert group == sorted(group)
        keys = {(trials[i]["hidden_size"], trials[i]["num_layers"], trials[i]["optimizer"]) for i in group}
        assert len(keys) == 1
    firsts = [g[0] for g in groups]
    assert firsts == sorted(firsts)
    by_shape: dict[tuple, list[list[int]]] = {}
    for group in groups:
        i = group[0]
        by_shape.setdefault(
            (trials[i]["hidden_size"], trials[i]["num_layers"], trials[i]["optimizer"]), []
        ).append(group)
    for chunks in by_shape.values():  # only a shape's last group may be short
        assert all(len(g) == population_size(setting) for g in chunks[:-1])  # type: ignore[arg-type]
