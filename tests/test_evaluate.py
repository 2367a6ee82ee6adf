"""evaluate_trial: failures and divergence become results, model sizing, forget-gate bias,
and a language model on real Penn Treebank text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from _test_data import TEST_DATA, needs_test_data
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cells import CellGraph, ReferenceLayer, library
from workers import (
    Batch,
    Budget,
    HyperParams,
    Task,
    TaskConfig,
    count_parameters,
    evaluate_trial,
    hidden_size_for_budget,
    model_for,
    set_forget_bias,
    torch_lstm_factory,
)
from workers._evaluate import best_result, tune_cell
from workers._hparams import SearchSpace
from workers._task import TaskSpec
from workers._task_registry import make_task

DATA = TEST_DATA
MEMORIZE = TaskSpec(
    name="memorize",
    settings={"min_length": 3, "max_length": 5, "symbols": 4, "valid_size": 100, "test_size": 100},
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small models train no slower on one thread, and far faster on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class BrokenTask(Task):
    """A task whose training batches raise after ``good`` batches: a data pipeline failing mid-run."""

    name = "broken"
    config_class = TaskConfig
    primary_metric = "accuracy"
    direction = "maximize"
    input_kind = "tokens"
    loss = "ce"

    def __init__(self, good: int = 2) -> None:
        super().__init__(TaskConfig())
        self.good = good

    @property
    def input_size(self) -> int:
        return 3

    @property
    def output_size(self) -> int:
        return 3

    def train_batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        for _ in range(self.good):
            tokens = torch.randint(3, (4, batch_size))
            yield Batch(tokens, tokens, torch.ones(4, batch_size))
        raise OSError("shard 7 of the training data is unreadable")

    def eval_batches(self, split, batch_size):  # type: ignore[no-untyped-def]
        return []

    def evaluate(self, predict, split, batch_size):  # type: ignore[no-untyped-def]
        return {"accuracy": 0.0}


def exploding_cell() -> CellGraph:
    """h' = 10^6 (W x + U h + b): activations overflow within a few time steps."""
    nodes = [{"name": "a", "op": "linear", "inputs": ["x", "h_prev_0"]}]
    for i in range(6):
        nodes.append(
            {"name": f"s{i}", "op": "scale", "inputs": [nodes[-1]["name"]], "attrs": {"alpha": 10.0}}
        )
    return CellGraph.parse({"name": "explode", "num_states": 1, "nodes": nodes, "outputs": ["s5"]})


def relu_cell() -> CellGraph:
    nodes = [
        {"name": "a", "op": "linear", "inputs": ["x", "h_prev_0"]},
        {"name": "h", "op": "relu", "inputs": ["a"]},
    ]
    return CellGraph.parse({"name": "relu", "num_states": 1, "nodes": nodes, "outputs": ["h"]})


def assert_next_trial_works() -> None:
    result = evaluate_trial(
        "tanh", MEMORIZE, {"hidden_size": 16}, Budget(max_steps=5, eval_every=5), device="cpu"
    )
    assert result.status == "ok" and result.value is not None and result.steps == 5


def test_exception_inside_becomes_failed_result() -> None:
    result = evaluate_trial(
        "lstm", BrokenTask(good=2), {"hidden_size": 8}, Budget(max_steps=10), device="cpu"
    )
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.startswith("OSError: shard 7 of the training data is unreadable")
    assert result.task == "broken" and result.metric == "accuracy" and result.value is None
    assert result.hparams["hidden_size"] == 8
    assert_next_trial_works()


@pytest.mark.parametrize(
    ("cell", "task", "hparams", "message"),
    [
        ("no-such-cell", MEMORIZE, {}, "CellGraphError: 'no-such-cell' is neither a library cell"),
        ("lstm", "no-such-task", {}, "TaskConfigError: unknown task 'no-such-task'"),
        ("lstm", MEMORIZE, {"num_layers": 9}, "ValidationError"),
        ("lstm", MEMORIZE, {"param_budget": 10}, "ValueError: param_budget 10 is below the smallest model"),
    ],
)
def test_bad_inputs_fail_with_the_reason(
    cell: str, task: TaskSpec | str, hparams: dict, message: str
) -> None:
    result = evaluate_trial(cell, task, hparams, Budget(max_steps=1), device="cpu")
    assert result.status == "failed" and result.error is not None
    assert result.error.startswith(message), result.error
    assert json.loads(result.model_dump_json())["status"] == "failed"


@pytest.mark.parametrize(
    ("cell", "hparams"),
    [
        (exploding_cell(), {"hidden_size": 32}),
        (relu_cell(), {"hidden_size": 32, "optimizer": "sgd", "learning_rate": 1e4, "max_grad_norm": None}),
    ],
    ids=["exploding-mutant", "sgd-lr-1e4"],
)
def test_divergence_is_reported_with_its_step(cell: CellGraph, hparams: dict) -> None:
    result = evaluate_trial(cell, MEMORIZE, hparams, Budget(max_steps=50, eval_every=10), device="cpu")
    assert result.status == "diverged", result
    assert result.diverged_at_step is not None and 1 <= result.diverged_at_step <= 10
    assert result.steps == result.diverged_at_step - 1
    assert result.error is None
    assert_next_trial_works()


def test_cell_and_task_in_every_form(tmp_path: Path) -> None:
    path = tmp_path / "mycell.json"
    path.write_text(library.get("gru").with_name("mygru").to_json())
    budget = Budget(max_steps=2, eval_every=2)
    task = make_task(MEMORIZE.name, **MEMORIZE.settings)
    by_name = evaluate_trial("gru", MEMORIZE, {"hidden_size": 8}, budget, device="cpu")
    by_file = evaluate_trial(str(path), task, HyperParams(hidden_size=8), budget, device="cpu")
    by_graph = evaluate_trial(library.get("gru"), task, {"hidden_size": 8}, budget, device="cpu")
    assert by_name.status == by_file.status == by_graph.status == "ok"
    assert by_name.curve == by_file.curve == by_graph.curve  # same cell, same seed
    assert by_name.device == "cpu" and by_name.num_params == count_parameters(
        model_for(task, library.get("gru"), HyperParams(hidden_size=8))
    )


@settings(max_examples=15, deadline=None)
@given(
    cell=st.sampled_from(["lstm", "gru", "tanh", "lstm-peephole", "mut1"]),
    num_layers=st.integers(1, 3),
    budget=st.integers(2_000, 150_000),
)
def test_param_budget_picks_the_largest_hidden_size_that_fits(
    cell: str, num_layers: int, budget: int
) -> None:
    task = make_task(MEMORIZE.name, **MEMORIZE.settings)
    graph = library.get(cell)
    try:
        hidden = hidden_size_for_budget(task, graph, num_layers, budget)
    except ValueError as exc:  # only when even hidden size 1 is over budget
        assert "below the smallest model" in str(exc)
        one = HyperParams(hidden_size=1, num_layers=num_layers)
        assert count_parameters(model_for(task, graph, one)) > budget
        return
    model = model_for(task, graph, HyperParams(param_budget=budget, num_layers=num_layers))
    assert model.hidden_size == hidden
    assert count_parameters(model) <= budget
    bigger = HyperParams(hidden_size=hidden + 1, num_layers=num_layers)
    assert count_parameters(model_for(task, graph, bigger)) > budget


def test_param_budget_with_torch_lstm_matches_lstm_cell() -> None:
    task = make_task(MEMORIZE.name, **MEMORIZE.settings)
    ours = hidden_size_for_budget(task, library.get("lstm"), 2, 60_000)
    # nn.LSTM keeps two bias vectors per gate where the cell has one: a few more parameters.
    theirs = hidden_size_for_budget(task, None, 2, 60_000, torch_lstm_factory)
    assert theirs in (ours, ours - 1)


@pytest.mark.parametrize("layer", ["compiled", "reference"])
def test_forget_bias_lands_in_forget_gate_biases_only(layer: str) -> None:
    task = make_task(MEMORIZE.name, **MEMORIZE.settings)
    graph = library.get("lstm")
    factory = None if layer == "compiled" else lambda i, h, n, d: ReferenceLayer(graph, i, h, n, d)
    hp = HyperParams(hidden_size=12, num_layers=2, forget_bias=1.75, init_scale=0.05)
    model = model_for(task, graph, hp, factory)
    for layer in range(2):
        params = model.rnn.node_parameters(layer)  # type: ignore[operator]
        assert torch.equal(params["f_lin.bias"], torch.full((12,), 1.75))
        for gate in ("i_lin", "g_lin", "o_lin"):
            assert params[f"{gate}.bias"].abs().max() <= 0.05  # init_scale, not the forget bias
    without = model_for(task, graph, HyperParams(hidden_size=12, num_layers=2), factory)
    assert without.rnn.node_parameters(0)["f_lin.bias"].abs().max() < 1.0  # type: ignore[operator]


def test_forget_bias_on_torch_lstm_sets_the_forget_slice() -> None:
    lstm = nn.LSTM(4, 6, num_layers=2)
    set_forget_bias(lstm, None, 2.0)
    for layer in range(2):
        total = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
        assert torch.equal(total[6:12], torch.full((6,), 2.0))  # gate order i, f, g, o
        assert not torch.equal(total[:6], torch.full((6,), 2.0))


def test_forget_bias_on_a_cell_without_forget_gate_changes_nothing() -> None:
    task = make_task(MEMORIZE.name, **MEMORIZE.settings)
    torch.manual_seed(0)
    plain = model_for(task, library.get("gru"), HyperParams(hidden_size=8))
    torch.manual_seed(0)
    biased = model_for(task, library.get("gru"), HyperParams(hidden_size=8, forget_bias=3.0))
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), biased.parameters(), strict=True))


def test_torch_lstm_factory_trains_in_the_same_loop() -> None:
    hp = {"hidden_size": 16, "num_layers": 2, "dropout": 0.1}
    result = evaluate_trial(
        "lstm",
        MEMORIZE,
        hp,
        Budget(max_steps=5, eval_every=5),
        device="cpu",
        layer_factory=torch_lstm_factory,
    )
    assert result.status == "ok", result.error
    assert result.num_params == count_parameters(
        model_for(make_task(MEMORIZE.name, **MEMORIZE.settings), None, HyperParams(**hp), torch_lstm_factory)
    )


def test_tune_cell_runs_a_seeded_study() -> None:
    space = SearchSpace(num_layers=1, hidden_size=[8, 16], dropout=0.0)
    budget = Budget(max_steps=4, eval_every=2)
    first = tune_cell("tanh", MEMORIZE, 3, budget, space, seed=5, device="cpu")
    again = tune_cell("tanh", MEMORIZE, 3, budget, space, seed=5, device="cpu")
    assert [r.hparams for r in first] == [r.hparams for r in again]
    assert [r.hparams["seed"] for r in first] == [5, 6, 7]
    assert [r.value for r in first] == [r.value for r in again]
    best = best_result(first)
    assert best is not None and best.value == max(r.value for r in first if r.value is not None)


@needs_test_data("ptb/ptb.valid.txt")
def test_lstm_language_model_on_ptb_beats_uniform() -> None:
    task = make_task(
        "text",
        dir=str(DATA / "ptb"),
        train="ptb.valid.txt",
        valid={"path": "ptb.test.txt", "stop": 0.5},
        test={"path": "ptb.test.txt", "start": 0.5},
        bptt=20,
        max_eval_tokens=4000,
    )
    vocabulary = task.output_size
    assert vocabulary > 5000  # words, not characters
    hp = {"hidden_size": 48, "learning_rate": 0.005, "batch_size": 20}
    result = evaluate_trial("lstm", task, hp, Budget(max_steps=60, eval_every=30), device="cpu")
    assert result.status == "ok", result.error
    assert result.metric == "perplexity" and result.direction == "minimize"
    assert result.value is not None and result.value < vocabulary / 8, (result.value, vocabulary)
    assert result.curve[-1][1] < result.curve[0][1]  # still improving


class HugeBatchTask(BrokenTask):
    """Batches whose activations need about 170 GiB on the GPU: a real CUDA out-of-memory error."""

    name = "huge"

    def train_batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        while True:
            tokens = torch.randint(3, (10, 2**20))
            yield Batch(tokens, tokens, torch.ones(10, 2**20))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_out_of_memory_fails_the_trial_and_the_next_one_works() -> None:
    result = evaluate_trial(
        "lstm", HugeBatchTask(), {"hidden_size": 4096}, Budget(max_steps=2), device="cuda"
    )
    assert result.status == "failed" and result.error is not None
    assert result.error.startswith("OutOfMemoryError"), result.error
    assert result.device.startswith("cuda")
    hp = {"hidden_size": 64, "learning_rate": 0.02}
    after = evaluate_trial("lstm", MEMORIZE, hp, Budget(max_steps=100, eval_every=100), device="cuda")
    assert after.status == "ok" and after.device.startswith("cuda")
    assert after.value is not None and after.value > 0.5
    assert torch.cuda.memory_allocated() < 2**30  # the failed trial's memory was released
