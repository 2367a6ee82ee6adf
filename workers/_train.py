"""The training loop of one trial: short and linear, in the manner of nanoGPT.

Example:
    >>> from workers._train import masked_loss
    >>> import torch
    >>> logits = torch.zeros(2, 1, 4)
    >>> mask = torch.tensor([[1.0], [0.0]])
    >>> round(masked_loss(logits, torch.zeros(2, 1, dtype=torch.long), mask, "ce").item(), 4)  # ln 4
    1.3863
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from workers._hparams import HyperParams
from workers._model import RecurrentModel, State, count_parameters
from workers._results import Budget, TrialResult, TrialStatus
from workers._run_record import RunRecord
from workers._task import Batch, Split, Task

Report = Callable[[int, float], bool]
"""``report(step, validation value) -> stop``: called after every evaluation; True prunes the trial."""


def masked_loss(logits: Tensor, targets: Tensor, mask: Tensor, kind: Literal["ce", "bce"]) -> Tensor:
    """Mean loss over the masked positions.

    ``ce``: cross-entropy of ``logits [T, B, C]`` against class ids ``[T, B]``. ``bce``: the
    binary cross-entropy summed over the output units (frame NLL), ``targets [T, B, D]``.
    """
    if kind == "ce":
        per_position = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view_as(
            mask
        )
    else:
        per_position = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(-1)
    return (per_position * mask).sum() / mask.sum().clamp_min(1.0)


def resolve_device(device: str) -> torch.device:
    """``auto`` means CUDA when available, else CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def _to(batch: Batch, device: torch.device) -> Batch:
    if device.type == "cpu":
        return batch
    return Batch(
        batch.inputs.to(device, non_blocking=True),
        batch.targets.to(device, non_blocking=True),
        batch.mask.to(device, non_blocking=True),
        batch.continues,
    )


def validate(
    model: RecurrentModel, task: Task, batch_size: int, device: torch.device, split: Split = "valid"
) -> dict[str, Any]:
    """All of the task's metrics on a held-out split (the validation split unless told), carrying
    state across continuing batches."""
    state: State | None = None

    def predict(batch: Batch) -> Tensor:
        nonlocal state
        if not batch.continues:
            state = None
        logits, state = model(batch.inputs.to(device), state)
        return logits.float()  # stays on the model's device: the tasks move targets to it

    model.eval()
    with torch.no_grad():
        metrics = task.evaluate(predict, split, batch_size)
    model.train()
    return metrics


def train(
    model: RecurrentModel,
    task: Task,
    hparams: HyperParams,
    budget: Budget,
    report: Report | None = None,
    device: torch.device | str = "cpu",
    started: float | None = None,
) -> TrialResult:
    """Train ``model`` on ``task`` within ``budget``; validate every ``eval_every`` steps and at the end.

    The result's ``value`` is the best validation value of the primary metric, ``metrics`` the
    validation metrics of that evaluation plus ``best_step``, ``final_value``, ``hidden_size``,
    ``startup_seconds`` (from ``started`` to the first step) and ``train_seconds`` (the
    training steps alone, validation excluded); see :class:`~workers._run_record.RunRecord`.
    ``steps`` counts completed optimizer steps. A non-finite training loss at step n
    (1-based) stops the run as ``diverged`` with ``diverged_at_step`` n, as does a non-finite
    validation value after step n; ``report`` returning True stops it as ``pruned``. Seeds
    data order and dropout from ``hparams.seed`` (the caller seeds the weights before
    building the model).
    """
    started = time.perf_counter() if started is None else started
    device = torch.device(device)
    torch.manual_seed(hparams.seed)
    model.to(device).train()
    params = list(model.parameters())
    optimizer = _optimizer(params, hparams)
    batches = task.train_batches(hparams.batch_size, hparams.seed)
    record = RunRecord(task, hparams, budget)

    state: State | None = None
    step = 0
    startup = time.perf_counter() - started
    train_start = time.perf_counter()
    eval_seconds = 0.0
    while True:
        batch = _to(next(batches), device)
        if not batch.continues:
            state = None
        logits, state = model(batch.inputs, state)
        state = tuple(s.detach() for s in state)  # truncated BPTT: carry values, not graphs
        loss = masked_loss(logits, batch.targets, batch.mask, task.loss)
        if not math.isfinite(loss.item()):
            record.diverge(step + 1)
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if hparams.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, hparams.max_grad_norm)
        optimizer.step()
        step += 1

        done = budget.is_spent(step, time.perf_counter() - train_start)
        if budget.validates_after(step, done):
            eval_start = time.perf_counter()
            metrics = validate(model, task, budget.eval_batch_size, device)
            eval_seconds += time.perf_counter() - eval_start
            value = record.evaluated(step, metrics)
            if value is None:  # diverged
                break
            if report is not None and report(step, value):
                record.prune()
                break
        if done:
            break
    if budget.score_split == "test" and record.status == TrialStatus.OK:
        record.tested(validate(model, task, budget.eval_batch_size, device, split="test"))

    return record.result(
        steps=step,
        seconds=time.perf_counter() - started,
        num_params=count_parameters(model),
        hidden_size=model.hidden_size,
        startup_seconds=startup,
        train_seconds=time.perf_counter() - train_start - eval_seconds,
        device=str(device),
    )


def _optimizer(params: list[torch.nn.Parameter], hparams: HyperParams) -> torch.optim.Optimizer:
    if hparams.optimizer == "adam":
        return torch.optim.Adam(params, lr=hparams.learning_rate)
    return torch.optim.SGD(params, lr=hparams.learning_rate)
