"""What the task tests share: the data sets they may read and predictors with known metrics."""

from __future__ import annotations

from typing import Any

import torch
from _test_data import TEST_DATA, needs_test_data

from workers import (
    ArithTask,
    Batch,
    MemorizeTask,
    SequenceTask,
)
from workers._arith import strip_distractors

DATA = TEST_DATA
PTB = DATA / "ptb"
SHAKESPEARE = DATA / "tinyshakespeare" / "input.txt"
needs_ptb = needs_test_data("ptb/ptb.valid.txt")
needs_shakespeare = needs_test_data("tinyshakespeare/input.txt")

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
