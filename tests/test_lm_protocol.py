"""The language-model protocol: the ``ptb`` preset's trials tie the embedding to the output layer,
clip at 0.25 and train in batches of 20, with only the learning rate and dropout sampled; jobs
override it, and a job that ties weights where there is no embedding is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from _test_data import TEST_DATA, needs_test_data
from torch.optim.optimizer import register_optimizer_step_pre_hook

from cells import library
from search import JobSpec
from search._job_errors import JobError
from search._job_tasks import task_key
from workers import (
    LM_PROTOCOL,
    Budget,
    HyperParams,
    RecurrentModel,
    evaluate_trial,
    make_task,
    model_for,
    task_search_space,
)
from workers._model import cell_layer_factory

PTB = TEST_DATA / "ptb"
SMALL_PTB: dict[str, Any] = {
    "preset": "ptb",
    "dir": str(PTB),
    "train": "ptb.valid.txt",
    "split_fractions": (0.9, 0.05, 0.05),
    "max_tokens": 3000,
    "max_eval_tokens": 800,
}


def job(tasks: list[dict[str, Any]], **extra: Any) -> JobSpec:
    data = {"name": "lm", "strategy": {"kind": "fixed", "cells": ["gru"]}, "tasks": tasks, **extra}
    return JobSpec.from_yaml_text(yaml.safe_dump(data))


def test_the_ptb_preset_follows_the_protocol_and_other_text_does_not() -> None:
    space = task_search_space("text", preset="ptb")
    fixed = (space.tie_weights, space.max_grad_norm, space.init_scale, space.batch_size)
    assert fixed == (True, 0.25, 0.1, 20)
    assert (space.num_layers, space.hidden_size, space.optimizer) == (1, 128, "adam")
    assert sorted(space.to_optuna()) == ["dropout", "learning_rate"]  # what the protocol tunes
    plain = task_search_space("text", train="a.txt", valid="b.txt", test="c.txt")
    assert plain.tie_weights is False and "init_scale" in plain.to_optuna()
    assert task_search_space("text", train="a.txt", valid="b.txt", test="c.txt", protocol="lm") == space
    assert task_search_space("text", preset="ptb", protocol="plain") == plain
    assert task_search_space("arith") == plain  # tasks without a protocol: the general defaults


def test_a_job_overrides_the_protocol_and_the_key_tells_the_protocols_apart() -> None:
    spec = job(
        [{"name": "text", "settings": {"preset": "ptb"}, "hparams": {"max_grad_norm": 1.0}}],
        hparams={"hidden_size": 64, "learning_rate": 0.002},
    )
    space = spec.search_space(spec.tasks[0])
    assert (space.hidden_size, space.learning_rate, space.max_grad_norm) == (64, 0.002, 1.0)
    assert (space.tie_weights, space.batch_size) == (True, 20)  # the rest of the protocol stays
    lm = task_key("text", {"preset": "ptb"}, Budget())
    plain = task_key("text", {"preset": "ptb", "protocol": "plain"}, Budget())
    assert lm != plain
    # Text without the protocol, and untied spaces, keep the keys they had before the protocol
    # and tie_weights existed (their results are shared); the pinned key is the one earlier
    # databases hold.
    files = {"train": "a.txt", "valid": "b.txt", "test": "c.txt"}
    assert task_key("text", files, Budget()) == "e7a3f972fa9a9a59"
    assert task_key("arith", {}, Budget()) == task_key("arith", {}, Budget(), {"tie_weights": False})
    assert task_key("arith", {}, Budget()) != task_key("arith", {}, Budget(), {"tie_weights": True})


@pytest.mark.parametrize("where", ["job", "task"])
def test_tying_weights_on_frames_is_refused_naming_the_field(where: str) -> None:
    music = {"name": "music", "settings": {"preset": "jsb"}}
    tie = {"tie_weights": True}
    with pytest.raises(JobError) as error:
        if where == "job":
            job([music], hparams=tie)
        else:
            job([{**music, "hparams": tie}])
    field = "hparams.tie_weights" if where == "job" else "tasks.0.hparams.tie_weights"
    assert field in str(error.value) and "reads frames, not tokens" in str(error.value)


def test_a_tied_model_holds_one_matrix_for_embedding_and_output() -> None:
    factory = cell_layer_factory(library.get("gru"))
    tied = RecurrentModel("tokens", 50, 50, 16, factory, tie_weights=True)
    untied = RecurrentModel("tokens", 50, 50, 16, factory)
    assert tied.decoder.weight is tied.encoder.weight
    assert sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters()) == 50 * 16
    with pytest.raises(ValueError, match="tie_weights: expected token inputs"):
        RecurrentModel("frames", 50, 50, 16, factory, tie_weights=True)
    with pytest.raises(ValueError, match="tie_weights: expected token inputs"):
        RecurrentModel("tokens", 50, 40, 16, factory, tie_weights=True)


@pytest.fixture
def gradient_norms() -> Iterator[list[float]]:
    """The global gradient norm every optimizer step sees (after clipping), from torch's own
    optimizer hook: what the protocol's clipping leaves the optimizer."""
    norms: list[float] = []

    def before_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        total = torch.stack([torch.linalg.vector_norm(g) for g in grads])
        norms.append(float(torch.linalg.vector_norm(total)))

    handle = register_optimizer_step_pre_hook(before_step)
    yield norms
    handle.remove()


@needs_test_data("ptb/ptb.valid.txt")
def test_a_protocol_trial_ties_its_weights_and_clips_at_a_quarter(gradient_norms: list[float]) -> None:
    task = make_task("text", **SMALL_PTB)
    space = task_search_space("text", **SMALL_PTB).with_overrides({"hidden_size": 16})
    hparams = space.hparams_from({"learning_rate": 0.01, "dropout": 0.2, "seed": 3})
    torch.manual_seed(hparams.seed)
    model = model_for(task, library.get("gru"), hparams)
    assert model.decoder.weight is model.encoder.weight
    assert all(float(p.detach().abs().max()) <= 0.1 for p in model.parameters())
    budget = Budget(max_steps=6, eval_every=3, eval_batch_size=16)

    unclipped = evaluate_trial("gru", task, hparams.model_copy(update={"max_grad_norm": None}), budget)
    assert unclipped.status == "ok" and max(gradient_norms) > 0.25  # the gradients do grow past it
    gradient_norms.clear()
    result = evaluate_trial("gru", task, hparams, budget)
    assert result.status == "ok" and len(gradient_norms) == 6
    assert max(gradient_norms) == pytest.approx(0.25, rel=1e-5)  # clipped to 0.25 where they grew
    assert result.hparams["tie_weights"] is True and result.hparams["batch_size"] == 20
    untied = evaluate_trial("gru", task, hparams.model_copy(update={"tie_weights": False}), budget)
    assert untied.num_params - result.num_params == task.input_size * 16


def test_the_protocol_is_valid_on_its_own() -> None:
    # Every field of the protocol is a search-space field with a value the space accepts.
    space = task_search_space("text", preset="ptb")
    for name, value in LM_PROTOCOL.items():
        assert name in type(space).model_fields
        if not isinstance(value, dict):
            assert getattr(space, name) == value
    HyperParams.model_validate(space.hparams_from({"learning_rate": 0.003, "dropout": 0.1}).model_dump())


def test_docs_name_the_protocol_and_what_it_changes() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "lm-protocol.md").read_text()
    for fact in ("Zaremba", "AWD-LSTM", "0.25", "tie_weights", "protocol: plain", "Adam"):
        assert fact in page, fact
