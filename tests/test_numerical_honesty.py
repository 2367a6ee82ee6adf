"""A value that is no result (an overflow, a NaN, a value outside the metric's range) makes a
trial ``diverged``, from the task's evaluation through the training loops to the store, and is
never ranked."""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from _store_data import job_spec
from hypothesis import given, settings
from hypothesis import strategies as st

from cells import library
from search import ResultStore
from search._honest_results import honest_result
from workers import (
    Batch,
    Budget,
    HyperParams,
    MusicTask,
    TextTask,
    TrialResult,
    evaluate_trial,
    make_task,
    train_population,
)
from workers._music import MAX_FRAME_NLL
from workers._run_record import RunRecord
from workers._text import MAX_MEAN_NLL

WORDS = [f"w{i}" for i in range(30)]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> TextTask:
    """The text task on three small files of random words (30 words, ln 30 ≈ 3.4 nats uniform)."""
    folder = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    for split, lines in (("train", 200), ("valid", 40), ("test", 40)):
        rows = (" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(lines))
        (folder / f"{split}.txt").write_text("\n".join(rows) + "\n")
    task = make_task("text", dir=str(folder), train="train.txt", valid="valid.txt", test="test.txt", bptt=10)
    assert isinstance(task, TextTask)
    return task


def confidently_wrong(scale: float, classes: int) -> object:
    """Logits that put ``scale`` on the class after the target: a mean NLL of about ``scale``."""

    def predict(batch: Batch) -> torch.Tensor:
        wrong = (batch.targets + 1) % classes
        return torch.nn.functional.one_hot(wrong, classes).double() * scale

    return predict


# -- the tasks' evaluations ---------------------------------------------------------------------


def test_an_overflowing_perplexity_reads_as_infinite_and_diverges_the_run(text: TextTask) -> None:
    huge = text.evaluate(confidently_wrong(1e4, text.output_size), "valid", 8)  # type: ignore[arg-type]
    assert huge["nll"] == pytest.approx(1e4, rel=1e-3)
    assert huge["perplexity"] == math.inf  # was exp(700) ≈ 1e304, recorded ok
    record = RunRecord(text, HyperParams(hidden_size=8))
    assert record.evaluated(10, {"perplexity": 30.0}) == 30.0
    assert record.evaluated(20, huge) is None
    result = record.result(
        steps=20,
        seconds=1.0,
        num_params=1,
        hidden_size=8,
        startup_seconds=0.0,
        train_seconds=1.0,
        device="cpu",
    )
    assert (result.status, result.diverged_at_step, result.value, result.curve) == (
        "diverged",
        20,
        30.0,
        [(10, 30.0)],
    )


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(min_value=0.0, max_value=400.0))
def test_perplexity_is_finite_exactly_up_to_the_bound(text: TextTask, scale: float) -> None:
    metrics = text.evaluate(confidently_wrong(scale, text.output_size), "valid", 8)  # type: ignore[arg-type]
    finite = metrics["nll"] <= MAX_MEAN_NLL
    assert math.isfinite(metrics["perplexity"]) is finite
    assert TextTask.admits(metrics["perplexity"]) is finite
    if finite:
        assert metrics["perplexity"] == pytest.approx(math.exp(metrics["nll"]))


def test_a_value_outside_the_metric_range_diverges_even_when_finite(text: TextTask) -> None:
    low, high = TextTask.metric_range
    assert (low, high) == (1.0, math.exp(MAX_MEAN_NLL))
    record = RunRecord(text, HyperParams(hidden_size=8))
    assert record.evaluated(10, {"perplexity": 1e304}) is None  # an evaluation that capped it itself
    assert record.status == "diverged" and record.curve == []
    tested = RunRecord(text, HyperParams(hidden_size=8))
    tested.evaluated(10, {"perplexity": 40.0})
    tested.tested({"perplexity": 0.5})  # below 1: no perplexity at all
    assert tested.status == "diverged" and tested.test is None


def test_an_overflowing_frame_nll_reads_as_infinite(tmp_path: Path) -> None:
    rng = random.Random(0)
    rolls = {
        split: [[tuple(rng.sample(range(21, 109), 3)) for _ in range(12)] for _ in range(3)]
        for split in ("train", "valid", "test")
    }
    path = tmp_path / "rolls.pickle"
    path.write_bytes(pickle.dumps(rolls, protocol=2))
    task = make_task("music", path=str(path))
    assert isinstance(task, MusicTask)
    wrong = task.evaluate(lambda b: (1 - 2 * b.targets) * 1e6, "valid", 2)
    assert wrong["nll"] == math.inf and not MusicTask.admits(wrong["nll"])
    bad = task.evaluate(lambda b: (1 - 2 * b.targets) * 50.0, "valid", 2)  # 50 nats per key: a result
    assert bad["nll"] == pytest.approx(50.0 * 88, rel=1e-3) and bad["nll"] <= MAX_FRAME_NLL
    assert MusicTask.admits(bad["nll"])


# -- real trials --------------------------------------------------------------------------------

BLOW_UP = {"hidden_size": 16, "learning_rate": 1000.0, "optimizer": "sgd", "max_grad_norm": None}
"""Plain SGD at a learning rate of 1000 on large initial weights: the training loss stays finite
for the first steps while the logits grow past any meaningful perplexity."""
SANE = {"hidden_size": 16, "learning_rate": 0.1, "optimizer": "sgd", "max_grad_norm": 1.0}
BUDGET = Budget(max_steps=20, eval_every=5, eval_batch_size=8)


def test_a_trial_whose_learning_rate_blows_it_up_is_diverged(text: TextTask) -> None:
    result = evaluate_trial(
        "tanh", text, {**BLOW_UP, "batch_size": 8, "init_scale": 5.0}, BUDGET, device="cpu"
    )
    # The training loss was finite at every step up to the first validation, which overflowed.
    assert (result.status, result.diverged_at_step, result.value, result.curve) == ("diverged", 5, None, [])


def test_a_blown_up_population_member_diverges_alone(text: TextTask) -> None:
    members = [{**SANE, "batch_size": 8, "init_scale": 5.0}, {**BLOW_UP, "batch_size": 8, "init_scale": 5.0}]
    sane, blown = train_population("tanh", text, members, BUDGET, device="cpu")
    assert sane.status == "ok" and sane.value is not None and TextTask.admits(sane.value)
    assert (blown.status, blown.diverged_at_step, blown.value) == ("diverged", 5, None)


# -- the driver's and the store's check ----------------------------------------------------------


def perplexity(value: float, status: str = "ok") -> TrialResult:
    return TrialResult(
        status=status, task="text", metric="perplexity", direction="minimize", value=value, steps=40
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [1e304, math.exp(700), math.inf, math.nan, 0.5])
def test_the_store_records_an_ok_value_that_is_no_result_as_diverged(
    store: ResultStore, value: float
) -> None:
    spec = job_spec()
    job_id = store.create_job(spec)
    arch_id, _ = store.add_architecture(library.get("gru"), job_id=job_id)
    evaluation = store.get_or_create_evaluation(job_id, arch_id, spec.task("text"))
    sane = store.start_trial(evaluation.id, hparams={}, optuna_trial_number=0)
    absurd = store.start_trial(evaluation.id, hparams={}, optuna_trial_number=1)
    store.finish_trials([(sane, perplexity(120.0)), (absurd, perplexity(value))])
    row = store.get_trial(absurd)
    assert (row.status, row.value) == ("diverged", None) and "no result" in (row.error or "")
    after = store.get_evaluation(evaluation.id)
    assert (after.best_value, after.best_trial_id) == (120.0, sane)  # the absurd value never wins
    assert (after.trials_completed, after.trials_diverged) == (1, 1)


def test_a_lone_absurd_value_leaves_the_evaluation_unranked(store: ResultStore) -> None:
    spec = job_spec()
    job_id = store.create_job(spec)
    arch_id, _ = store.add_architecture(library.get("gru"), job_id=job_id)
    evaluation = store.get_or_create_evaluation(job_id, arch_id, spec.task("text"))
    store.finish_trial(store.start_trial(evaluation.id, hparams={}), perplexity(1e304))
    assert store.get_evaluation(evaluation.id).best_value is None
    # A score that came out non-finite is no score either: the leaderboard leaves it out.
    store.update_job_architecture(job_id, arch_id, score=math.inf, evaluated=True)
    store.set_evaluation(evaluation.id, relative_score=math.nan)
    assert store.job_architecture(job_id, arch_id).score is None  # type: ignore[union-attr]
    assert store.get_evaluation(evaluation.id).relative_score is None
    assert store.top_architectures(job_id) == []


def test_the_driver_check_keeps_results_that_are_results() -> None:
    for kept in (perplexity(35.0), perplexity(math.inf, status="pruned"), perplexity(2.0, status="diverged")):
        assert honest_result(kept) is kept
    unknown = TrialResult(status="ok", task="custom", metric="score", direction="maximize", value=1e304)  # type: ignore[arg-type]
    assert honest_result(unknown) is unknown  # a task unknown here: only finiteness is checked
    assert honest_result(unknown.model_copy(update={"value": math.inf})).status == "diverged"
