"""The tasks that read corpora: text (Penn Treebank, tinyshakespeare) and music (piano rolls)."""

from __future__ import annotations

import itertools
import math
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _task_checks import (
    PTB,
    PTB_SPLITS,
    SHAKESPEARE,
    needs_ptb,
    needs_shakespeare,
    perfect,
    uniform,
)

from workers import (
    MusicTask,
    TextTask,
    make_task,
    piano_roll,
)

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
