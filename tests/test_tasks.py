"""The paper's tasks: generated data is right, splits are fixed and disjoint, metrics are exact."""

from __future__ import annotations

import itertools
import math
import pickle
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workers import (
    TASKS,
    ArithTask,
    Batch,
    MemorizeTask,
    MusicTask,
    SequenceTask,
    TaskConfigError,
    TaskSpec,
    TextTask,
    XmlTask,
    make_task,
    piano_roll,
    task_config,
)
from workers._arith import strip_distractors

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PTB = DATA / "ptb"
SHAKESPEARE = DATA / "tinyshakespeare" / "input.txt"
needs_ptb = pytest.mark.skipif(
    not (PTB / "ptb.valid.txt").is_file(), reason=f"shared data set missing: {PTB}/ptb.valid.txt"
)
needs_shakespeare = pytest.mark.skipif(
    not SHAKESPEARE.is_file(), reason=f"shared data set missing: {SHAKESPEARE}"
)

SMALL = {"valid_size": 100, "test_size": 100}
PTB_SPLITS = {
    "dir": str(PTB),
    "train": "ptb.valid.txt",
    "valid": {"path": "ptb.test.txt", "stop": 0.5},
    "test": {"path": "ptb.test.txt", "start": 0.5},
}


def columns(task: SequenceTask, batch: Batch) -> list[dict[str, Any]]:
    """Each batch column as text: the whole sequence, and the targets the mask scores."""
    rows = []
    for b in range(batch.inputs.shape[1]):
        targets, mask = batch.targets[:, b].tolist(), batch.mask[:, b].tolist()
        scored = "".join(task.vocab[t] for t, m in zip(targets, mask, strict=True) if m)
        rows.append(
            {
                "inputs": task.decode(batch.inputs[:, b]),
                "full": task.decode(batch.inputs[:1, b]) + task.decode(batch.targets[:, b]),
                "scored": scored,
                "mask": mask,
            }
        )
    return rows


def key_of(task: SequenceTask, row: dict[str, Any]) -> str:
    """The problem a decoded column poses, as ``Example.key`` spells it."""
    if isinstance(task, ArithTask):
        return strip_distractors(row["full"], task.config.distractor_symbols).split("=")[0]
    if isinstance(task, MemorizeTask):
        return row["scored"]
    return row["full"].rstrip("\n")


def perfect(output_size: int):
    """A predictor whose logits put all weight on the targets."""

    def predict(batch: Batch) -> torch.Tensor:
        return torch.nn.functional.one_hot(batch.targets, output_size).float() * 50.0

    return predict


def uniform(output_size: int):
    def predict(batch: Batch) -> torch.Tensor:
        return torch.zeros(*batch.targets.shape[:2], output_size)

    return predict


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


# --- text ---------------------------------------------------------------------------------


def ptb_words(path: Path, start: float = 0.0, stop: float = 1.0) -> list[str]:
    lines = path.read_text().splitlines()
    words: list[str] = []
    for line in lines[int(start * len(lines)) : int(stop * len(lines))]:
        words += [*line.split(), "<eos>"]
    return words


@needs_ptb
def test_text_batches_round_trip_the_words_of_the_file() -> None:
    task = make_task("text", bptt=20, **PTB_SPLITS)
    assert isinstance(task, TextTask)
    train_words = ptb_words(PTB / "ptb.valid.txt")
    assert set(task.vocab) == set(train_words) and task.input_size == len(set(train_words))
    valid_words = ptb_words(PTB / "ptb.test.txt", 0.0, 0.5)
    expected = [w if w in task.index else "<unk>" for w in valid_words]
    batches = task.eval_batches("valid", 10)
    assert [b.continues for b in batches] == [False] + [True] * (len(batches) - 1)
    rows = len(expected) // 10
    for b in (0, 4, 9):
        stream = [w for batch in batches for w in task.decode(batch.inputs[:, b])]
        stream.append(task.decode(batches[-1].targets[-1:, b])[0])
        assert stream == expected[b * rows : (b + 1) * rows]
    for batch in batches:
        assert torch.equal(batch.inputs[1:], batch.targets[:-1]) and batch.mask.eq(1).all()
    assert sum(int(b.mask.sum()) for b in batches) == (rows - 1) * 10


@needs_ptb
def test_text_training_stream_is_contiguous_and_epochs_restart() -> None:
    task = make_task("text", bptt=35, max_tokens=2000, **PTB_SPLITS)
    assert isinstance(task, TextTask)
    words = ptb_words(PTB / "ptb.valid.txt")[:2000]
    stream = task.train_batches(batch_size=4, seed=3)
    epoch = [next(stream)]
    while (batch := next(stream)).continues:
        epoch.append(batch)
    assert not epoch[0].continues and not batch.continues  # a new epoch resets the state
    for previous, current in itertools.pairwise(epoch):
        assert torch.equal(previous.targets[-1], current.inputs[0])
    rows = 2000 // 4
    column = [w for b in epoch for w in task.decode(b.inputs[:, 1])]
    offset = rows - 1 - len(column)
    assert 0 <= offset < 35
    assert column == words[rows + offset : 2 * rows - 1]
    same = task.train_batches(batch_size=4, seed=3)
    assert all(torch.equal(next(same).inputs, b.inputs) for b in epoch)
    other = [next(task.train_batches(batch_size=4, seed=s)).inputs for s in range(4)]
    assert any(not torch.equal(other[0], o) for o in other[1:])


@needs_ptb
def test_text_metrics_of_perfect_and_uniform_predictors() -> None:
    task = make_task("text", max_eval_tokens=3000, **PTB_SPLITS)
    assert task.primary_metric == "perplexity" and task.direction == "minimize"
    worst = task.evaluate(uniform(task.output_size), "test", 8)
    assert worst["perplexity"] == pytest.approx(task.output_size, rel=1e-4)
    assert worst["tokens"] == (3000 // 8 - 1) * 8
    best = task.evaluate(perfect(task.output_size), "test", 8)
    assert best["perplexity"] == pytest.approx(1.0, abs=1e-6) and best["accuracy"] == 1.0
    assert "bpc" not in best


@needs_shakespeare
def test_char_level_split_fractions_and_bits_per_character() -> None:
    task = make_task(
        "text",
        dir=str(SHAKESPEARE.parent),
        train="input.txt",
        split_fractions=(0.8, 0.1, 0.1),
        level="char",
        max_eval_tokens=20_000,
    )
    assert isinstance(task, TextTask)
    lines = SHAKESPEARE.read_text().splitlines()
    cut = int(0.8 * len(lines)), int(0.9 * len(lines))
    valid_text = "".join(line + "\n" for line in lines[cut[0] : cut[1]])
    assert task.decode(task.ids["valid"]) == [c if c in task.index else "<unk>" for c in valid_text[:20_000]]
    train_text = "".join(line + "\n" for line in lines[: cut[0]])
    assert task.ids["train"].numel() == len(train_text)
    assert set(task.vocab) == set(train_text) | {"<unk>"}
    worst = task.evaluate(uniform(task.output_size), "valid", 16)
    assert worst["bpc"] == pytest.approx(math.log2(task.output_size), rel=1e-5)


def test_text_missing_preset_files_say_how_to_fetch_them(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cellsearch data download ptb"):
        make_task("text", preset="ptb", dir=str(tmp_path))


# --- music --------------------------------------------------------------------------------


def write_corpus(path: Path, sequences: dict[str, list[list[tuple[int, ...]]]]) -> Path:
    path.write_bytes(pickle.dumps(sequences, protocol=2))
    return path


def random_corpus(seed: int) -> dict[str, list[list[tuple[int, ...]]]]:
    rng = random.Random(seed)

    def sequence() -> list[tuple[int, ...]]:
        # numpy scalars as the original pickles hold them, the lowest and highest keys included
        frames = [
            tuple(np.int64(n) for n in rng.sample(range(21, 109), rng.randint(0, 4))) for _ in range(30)
        ]
        return [(21, 108), *frames[: rng.randint(5, 30)]]

    return {
        split: [sequence() for _ in range(count)]
        for split, count in (("train", 12), ("valid", 5), ("test", 5))
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    sequences = random_corpus(0)
    return write_corpus(tmp_path_factory.mktemp("music") / "JSB Chorales.pickle", sequences), sequences


def test_piano_rolls_have_88_keys_and_the_notes_played(corpus: tuple[Path, dict[str, Any]]) -> None:
    path, sequences = corpus
    task = make_task("music", preset="jsb", dir=str(path.parent))
    assert isinstance(task, MusicTask) and task.input_kind == "frames" and task.loss == "bce"
    assert task.input_size == task.output_size == 88
    by_length = sorted(sequences["valid"], key=lambda s: -len(s))
    batches = task.eval_batches("valid", 2)
    assert [b.inputs.shape[1] for b in batches] == [2, 2, 1]
    column = 0
    for batch in batches:
        assert batch.inputs.shape[2] == 88 and batch.inputs.dtype == torch.float32
        for b in range(batch.inputs.shape[1]):
            frames = by_length[column]
            column += 1
            length = len(frames)
            assert batch.mask[:, b].tolist() == [1.0] * length + [0.0] * (batch.mask.shape[0] - length)
            for t, frame in enumerate(frames):
                assert batch.targets[t, b].nonzero().flatten().tolist() == sorted(n - 21 for n in frame)
            assert batch.inputs[0, b].sum() == 0  # the first frame is predicted from silence
            assert torch.equal(batch.inputs[1:length, b], batch.targets[: length - 1, b])


def test_music_training_pieces_and_determinism(corpus: tuple[Path, dict[str, Any]]) -> None:
    path, sequences = corpus
    task = make_task("music", path=str(path), max_frames=8)
    assert isinstance(task, MusicTask)
    stream = task.train_batches(batch_size=5, seed=0)
    batches = [next(stream) for _ in range(10)]
    assert all(b.inputs.shape[1] == 5 and b.inputs.shape[0] <= 8 for b in batches)
    rolls = [piano_roll(s) for s in sequences["train"]]
    for batch in batches:
        for b in range(5):
            length = int(batch.mask[:, b].sum())
            targets = batch.targets[:length, b]
            # every piece is a slice of a training roll, read with the frame before it as input
            found = [
                (i, s)
                for i, roll in enumerate(rolls)
                for s in range(len(roll) - length + 1)
                if torch.equal(roll[s : s + length], targets)
            ]
            assert found
            i, s = found[0]
            previous = rolls[i][s - 1] if s else torch.zeros(88)
            assert torch.equal(batch.inputs[0, b], previous)
    again = task.train_batches(batch_size=5, seed=0)
    assert all(torch.equal(next(again).targets, b.targets) for b in batches)
    assert not torch.equal(next(task.train_batches(batch_size=5, seed=1)).targets, batches[0].targets)


def test_music_metrics_of_perfect_and_uniform_predictors(corpus: tuple[Path, dict[str, Any]]) -> None:
    path, sequences = corpus
    task = make_task("music", path=str(path))
    assert task.primary_metric == "nll" and task.direction == "minimize"
    best = task.evaluate(lambda b: (2 * b.targets - 1) * 50.0, "test", 4)
    assert best["nll"] == pytest.approx(0.0, abs=1e-12) and best["frame_accuracy"] == 1.0
    assert best["frames"] == sum(len(s) for s in sequences["test"])
    worst = task.evaluate(lambda b: torch.zeros_like(b.targets), "test", 4)
    assert worst["nll"] == pytest.approx(88 * math.log(2), rel=1e-6)
    # predicting every key on: hits are the notes played, false alarms all other keys
    notes = sum(len(f) for s in sequences["test"] for f in s)
    every = task.evaluate(lambda b: torch.full_like(b.targets, 50.0), "test", 4)
    assert every["frame_accuracy"] == pytest.approx(notes / (88 * best["frames"]))


def test_music_refuses_foreign_pickles_and_out_of_range_notes(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            # eval, not print: importing Ray replaces builtins.print in the process
            return (eval, ("1",))

    hostile = tmp_path / "hostile.pickle"
    hostile.write_bytes(pickle.dumps({"train": [Payload()], "valid": [], "test": []}))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load builtins\.eval"):
        make_task("music", path=str(hostile))
    high = write_corpus(
        tmp_path / "high.pickle", {"train": [[(60,), (109,)]], "valid": [[(60,)]], "test": [[(60,)]]}
    )
    with pytest.raises(ValueError, match=r"train: frame 1: note 109 outside the piano range 21..108"):
        make_task("music", path=str(high))
