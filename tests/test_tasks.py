"""The paper's tasks: generated data is right, splits are fixed and disjoint, metrics are exact."""

from __future__ import annotations

import math
import random
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import torch
from _task_checks import (
    SMALL,
    columns,
    key_of,
    perfect,
    uniform,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from workers import (
    TASKS,
    ArithTask,
    Batch,
    MemorizeTask,
    SequenceTask,
    TaskConfigError,
    TaskSpec,
    XmlTask,
    make_task,
    task_config,
)
from workers._arith import strip_distractors

# --- arith ------------------------------------------------------------------------------

ANSWER = re.compile(r"^(\d+)([+-])(\d+)=(-?\d+)\.$")


def check_arith(task: ArithTask, row: dict[str, Any]) -> tuple[int, str, int]:
    text = strip_distractors(row["full"], task.config.distractor_symbols)
    match = ANSWER.match(text)
    assert match, text
    left, operator, right, answer = match.groups()
    assert int(answer) == (int(left) + int(right) if operator == "+" else int(left) - int(right)), text
    assert len(left) <= task.config.max_digits and len(right) <= task.config.max_digits
    # the mask covers exactly the answer and its end marker
    assert row["scored"] == f"{answer}."
    assert sum(row["mask"]) == len(answer) + 1
    return int(left), operator, int(right)


@pytest.mark.parametrize("settings", [{}, {"max_digits": 5, "distractors": 2}])
def test_arith_batches_hold_correct_sums_and_differences(settings: dict[str, Any]) -> None:
    task = make_task("arith", **settings, **SMALL)
    assert isinstance(task, ArithTask)
    problems = []
    stream = task.train_batches(batch_size=64, seed=0)
    for _ in range(8):
        problems += [check_arith(task, row) for row in columns(task, next(stream))]
    for batch in task.eval_batches("valid", 64):
        problems += [check_arith(task, row) for row in columns(task, batch)]
    # the generator covers both operators, carries, borrows and negative results
    assert {op for _, op, _ in problems} == {"+", "-"}
    assert any(op == "+" and (a % 10 + b % 10) >= 10 for a, op, b in problems)
    assert any(op == "-" and a >= b and (a % 10) < (b % 10) for a, op, b in problems)
    assert any(op == "-" and a < b for a, op, b in problems)
    if settings.get("distractors"):
        assert any(set(row["inputs"]) & set("abcdefghij") for row in columns(task, next(stream)))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**40), distractors=st.integers(min_value=0, max_value=3))
def test_arith_examples_are_right_for_any_seed(seed: int, distractors: int) -> None:
    task = make_task("arith", max_digits=6, distractors=distractors, valid_size=5, test_size=5)
    assert isinstance(task, ArithTask)
    example = task.sample(random.Random(seed))
    batch = Batch(
        torch.tensor([example.inputs]).t(),
        torch.tensor([example.targets]).t(),
        torch.tensor([example.mask]).t(),
    )
    check_arith(task, columns(task, batch)[0])


def test_arith_decode_helper_reads_known_problems() -> None:
    task = make_task("arith", **SMALL)
    assert isinstance(task, ArithTask)
    assert task.decode(task.encode("12-3123=-3111.")) == "12-3123=-3111."
    assert task.decode([0, *task.encode("1+1=2."), 0]) == "1+1=2."


# --- memorize ---------------------------------------------------------------------------


def test_memorize_targets_reproduce_the_sequence_read() -> None:
    task = make_task("memorize", min_length=3, max_length=7, symbols=5, **SMALL)
    assert isinstance(task, MemorizeTask)
    lengths = set()
    for row in columns(task, next(task.train_batches(batch_size=128, seed=1))):
        read, _, recall = row["inputs"].partition("|")
        lengths.add(len(read))
        assert 3 <= len(read) <= 7 and set(read) <= set("abcde")
        assert row["scored"] == read  # the targets of the scored positions are the sequence read
        assert recall == "." * (len(read) - 1)  # after the delimiter only recall prompts, no hints
        assert row["mask"][: 2 * len(read)] == [0.0] * len(read) + [1.0] * len(read)
        assert sum(row["mask"]) == len(read)
    assert lengths == set(range(3, 8))


# --- xml --------------------------------------------------------------------------------


def depth(element: ET.Element) -> int:
    return 1 + max((depth(child) for child in element), default=0)


@pytest.mark.parametrize("settings", [{}, {"max_depth": 4, "max_tag_length": 5, "text_probability": 0.5}])
def test_xml_documents_are_well_formed_and_closing_tags_marked(settings: dict[str, Any]) -> None:
    task = make_task("xml", **settings, **SMALL)
    assert isinstance(task, XmlTask)
    config = task.config
    seen_depths, texts = set(), 0
    for example in task.heldout("valid")[:50] + [task.sample(random.Random(s)) for s in range(50)]:
        document = task.decode(example.inputs)
        assert task.decode(example.targets) == document[1:] + "\n"
        root = ET.fromstring(document)  # raises on any mismatched closing tag
        seen_depths.add(depth(root))
        for element in root.iter():
            assert config.min_tag_length <= len(element.tag) <= config.max_tag_length
            assert set(element.tag) <= set(config.tag_symbols)
            texts += bool(element.text) + bool(element.tail)
        closing = example.marks["closing_tag"]
        marked = "".join(task.vocab[t] for t, m in zip(example.targets, closing, strict=True) if m)
        expected = "".join(name + ">" for name in re.findall(r"</([a-z]+)>", document))
        assert marked == expected
        assert sum(closing) == len(expected)
    assert max(seen_depths) == config.max_depth and min(seen_depths) < config.max_depth
    assert (texts > 0) == (config.text_probability > 0)


def test_xml_closing_tag_accuracy_scores_only_closing_tags() -> None:
    task = make_task("xml", **SMALL)
    assert isinstance(task, XmlTask)
    closing = sum(sum(e.marks["closing_tag"]) for e in task.heldout("valid"))
    total = sum(len(e.targets) for e in task.heldout("valid"))
    slash = task.index["/"]

    def wrong_in_closing_tags(batch: Batch) -> torch.Tensor:
        logits = perfect(task.output_size)(batch)
        # a position is inside a closing tag iff a "</" opened since the last ">"; rebuild it here
        inputs = batch.inputs
        for b in range(inputs.shape[1]):
            inside = False
            for t in range(inputs.shape[0]):
                if t > 0 and inputs[t, b] == slash and inputs[t - 1, b] == task.index["<"]:
                    inside = True
                if inside:
                    logits[t, b] = 0.0
                    logits[t, b, 0] = 50.0  # predict padding: wrong
                    if batch.targets[t, b] == task.index[">"]:
                        inside = False
        return logits

    metrics = task.evaluate(wrong_in_closing_tags, "valid", 32)
    assert metrics["closing_tag_accuracy"] == 0.0
    assert metrics["accuracy"] == pytest.approx(1 - closing / total)
    perfect_metrics = task.evaluate(perfect(task.output_size), "valid", 32)
    assert perfect_metrics["closing_tag_accuracy"] == 1.0 and perfect_metrics["accuracy"] == 1.0


# --- all generated tasks: determinism, fixed and disjoint splits, metrics --------------

GENERATED = ["memorize", "arith", "xml"]


@pytest.mark.parametrize("name", GENERATED)
def test_training_streams_are_deterministic_per_seed(name: str) -> None:
    task = make_task(name, **SMALL)

    def first(task: Any, seed: int, count: int = 3) -> list[Batch]:
        stream = task.train_batches(batch_size=16, seed=seed)
        return [next(stream) for _ in range(count)]

    def same(a: list[Batch], b: list[Batch]) -> bool:
        return all(
            x.inputs.shape == y.inputs.shape
            and torch.equal(x.inputs, y.inputs)
            and torch.equal(x.targets, y.targets)
            and torch.equal(x.mask, y.mask)
            for x, y in zip(a, b, strict=True)
        )

    assert same(first(task, 0), first(task, 0))
    assert not same(first(task, 0), first(task, 1))
    other = make_task(name, seed=1, **SMALL)
    assert not same(first(task, 0), first(other, 0))
    rebuilt = TASKS[name](task.config)  # a fresh object, as another worker process builds it
    assert same(first(task, 7), first(rebuilt, 7))


@pytest.mark.parametrize("name", GENERATED)
def test_heldout_splits_are_fixed_and_disjoint_from_training(name: str) -> None:
    task = make_task(name, **SMALL)
    assert isinstance(task, SequenceTask)
    rebuilt = TASKS[name](task.config)
    assert isinstance(rebuilt, SequenceTask)
    for split in ("valid", "test"):
        batches, again, fresh = (t.eval_batches(split, 32) for t in (task, task, rebuilt))
        assert len(batches) == math.ceil(100 / 32)
        for a, b, c in zip(batches, again, fresh, strict=True):
            assert torch.equal(a.inputs, b.inputs) and torch.equal(a.inputs, c.inputs)
            assert torch.equal(a.targets, c.targets) and torch.equal(a.mask, c.mask)
    valid = {key_of(task, row) for b in task.eval_batches("valid", 50) for row in columns(task, b)}
    test = {key_of(task, row) for b in task.eval_batches("test", 50) for row in columns(task, b)}
    assert len(valid) == 100 and len(test) == 100 and not valid & test
    assert valid == {e.key for e in task.heldout("valid")}
    # a task whose problem space is small makes overlaps likely unless they are excluded
    small = {"memorize": {"min_length": 2, "max_length": 2, "symbols": 5}, "arith": {"max_digits": 1}}
    dense = make_task(name, **small.get(name, {}), valid_size=4, test_size=4)
    assert isinstance(dense, SequenceTask)
    heldout = {e.key for split in ("valid", "test") for e in dense.heldout(split)}  # type: ignore[arg-type]
    stream = dense.train_batches(batch_size=64, seed=0)
    trained = {key_of(dense, row) for _ in range(5) for row in columns(dense, next(stream))}
    assert len(trained) > 8 and not trained & heldout


@pytest.mark.parametrize("name", GENERATED)
def test_metrics_of_perfect_and_uniform_predictors(name: str) -> None:
    task = make_task(name, **SMALL)
    best = task.evaluate(perfect(task.output_size), "test", 32)
    worst = task.evaluate(uniform(task.output_size), "test", 32)
    assert task.primary_metric in best and task.direction == "maximize"
    assert best[task.primary_metric] == 1.0
    assert best["nll"] == pytest.approx(0.0, abs=1e-6)
    assert worst["nll"] == pytest.approx(math.log(task.output_size), rel=1e-6)
    assert worst[task.primary_metric] == 0.0  # argmax of equal logits is padding, never a target
    if name == "arith":
        assert best["exact_match"] == 1.0

        def one_wrong_in_first_column(batch: Batch) -> torch.Tensor:
            logits = perfect(task.output_size)(batch)
            last = int(batch.mask[:, 0].nonzero().max())
            logits[last, 0] = 0.0
            logits[last, 0, 0] = 50.0  # padding: never right
            return logits

        partly = task.evaluate(one_wrong_in_first_column, "test", 32)
        assert partly["exact_match"] == pytest.approx(1 - 4 / 100)  # one miss in each of 4 batches
        assert partly["char_accuracy"] == pytest.approx(1 - 4 / best["tokens"])


def test_evaluate_refuses_logits_of_the_wrong_shape() -> None:
    task = make_task("memorize", **SMALL)
    with pytest.raises(ValueError, match="logits of shape"):
        task.evaluate(lambda b: torch.zeros(b.targets.shape[1], b.targets.shape[0], 11), "valid", 32)


# --- make_task ---------------------------------------------------------------------------


def test_make_task_caches_per_settings() -> None:
    task = make_task("arith", max_digits=2, **SMALL)
    assert make_task("arith", max_digits=2, **SMALL) is task
    assert make_task(TaskSpec(name="arith", settings={"max_digits": 2, **SMALL})) is task
    assert make_task("arith", max_digits=2, seed=0, operators="+-", **SMALL) is task  # explicit defaults
    assert make_task(TaskSpec(name="arith", settings={"max_digits": 3}), max_digits=2, **SMALL) is task
    assert make_task("arith", max_digits=2, seed=1, **SMALL) is not task
    assert make_task("memorize", **SMALL) is not task


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("arith", {"max_digits": 0}, "task 'arith': max_digits: Input should be greater than or equal to 1"),
        ("arith", {"operators": "*"}, "task 'arith': operators: must be a non-empty string"),
        ("arith", {"digits": 3}, "task 'arith': digits: Extra inputs are not permitted"),
        (
            "memorize",
            {"min_length": 6, "max_length": 4},
            "task 'memorize': max_length: must be at least min_length",
        ),
        ("xml", {"tag_symbols": "a<"}, "task 'xml': tag_symbols: must be distinct ASCII letters"),
        ("text", {"level": "byte"}, "task 'text': level: Input should be 'word' or 'char'"),
        ("text", {"train": "a.txt"}, "task 'text': valid: required unless a preset is set"),
        (
            "text",
            {"train": {"path": "a", "start": 0.5, "stop": 0.2}},
            "task 'text': train: stop: must be greater than start",
        ),
        ("music", {}, "task 'music': path: required unless a preset is set"),
        ("chess", {}, "unknown task 'chess'; known tasks: arith, memorize, music, text, xml"),
    ],
)
def test_bad_settings_name_the_task_field_and_reason(
    name: str, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(TaskConfigError) as error:
        make_task(name, **settings)
    assert str(error.value).startswith(message), str(error.value)
    with pytest.raises(TaskConfigError):
        task_config(TaskSpec(name=name, settings=settings))


def test_too_small_problem_space_is_refused_with_the_field() -> None:
    with pytest.raises(ValueError, match="task 'arith': valid_size: cannot draw 500 distinct examples"):
        make_task("arith", max_digits=1, operators="+", valid_size=500)
