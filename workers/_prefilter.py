"""Zero-cost proxies: score untrained candidate cells in milliseconds, to skip the worst.

A proxy looks at a freshly initialised model of the cell (the trial's own model: embedding,
cell layers, output layer) on a few training batches, and returns a number where higher
should mean "trains better". Three proxies (after Abdelfattah et al. 2021 and Mellor et al.
2021, adapted to recurrent cells):

``grad_norm``
    The norm of the loss gradient with respect to the embedding and the cell's parameters
    (the output layer is the same for every cell and left out).
``snip``
    SNIP saliency: ``sum |theta * dL/dtheta|`` over the same parameters. (Both score an
    overflowing gradient 0, the lowest.)
``jacob_cov``
    The Jacobian-covariance score of Mellor et al. (2021, first version): the gradients of the
    final hidden state with respect to each example's input sequence, their correlation matrix
    over the batch and its eigenvalues ``s``; the score is ``-sum(log(s + k) + 1 / (s + k))``
    with ``k = 1e-5``. Inputs that the cell maps to very different directions score high; a cell
    whose state ignores its input (all gradients zero, counted as perfectly correlated)
    scores very low.

Whether any proxy predicts the trained score of *these* cells is an empirical question:
``benchmarks/prefilter_correlation.py`` measures it (Spearman rank correlation against a
short real training run) and writes the data to ``benchmarks/results/``. The pre-filter is
off unless a job asks for it.

Example:
    >>> from cells import library
    >>> from workers import make_task
    >>> task = make_task("arith", valid_size=8, test_size=8)
    >>> score = prefilter_score(library.get("lstm"), task, hidden_size=16, batches=1)
    >>> score == prefilter_score(library.get("lstm"), task, hidden_size=16, batches=1)
    True
    >>> cells = [library.get(n) for n in ("lstm", "gru", "tanh", "mut1")]
    >>> len(drop_worst(cells, 0.5, task, hidden_size=16))
    2
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from cells import CellGraph
from workers._evaluate import resolve_cell, resolve_task
from workers._hparams import HyperParams
from workers._model import RecurrentModel, model_for
from workers._task import Batch, Task, TaskSpec
from workers._train import masked_loss, resolve_device

Proxy = Literal["grad_norm", "snip", "jacob_cov"]
PROXIES: tuple[Proxy, ...] = ("grad_norm", "snip", "jacob_cov")

JACOB_COV_K = 1e-5
"""The ``k`` of Mellor et al.'s score (keeps the log and the reciprocal finite)."""


class PrefilterConfig(BaseModel):
    """A job's ``prefilter`` settings: which proxy, how much to drop, and the scoring model.

    Example:
        >>> PrefilterConfig.model_validate({"proxy": "snip", "fraction": 0.25}).fraction
        0.25
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    proxy: Proxy = "jacob_cov"
    """The zero-cost score: ``jacob_cov`` (Mellor et al.), ``snip`` or ``grad_norm``; higher is better."""
    fraction: float = Field(default=0.5, ge=0.0, lt=1.0, strict=True, allow_inf_nan=False)
    """Share of each batch of candidates dropped, the lowest-scoring first: at least 0, below 1."""
    hidden_size: int = Field(default=32, ge=1, le=4096, strict=True)
    """Width of the scoring model, 1 to 4096."""
    batches: int = Field(default=2, ge=1, le=1000, strict=True)
    """Training batches each score reads, 1 to 1000."""
    batch_size: int = Field(default=32, ge=2, le=4096, strict=True)
    """Sequences per scoring batch, 2 to 4096."""
    seed: int = Field(default=0, ge=0, le=2**63 - 1, strict=True)
    """Seeds the scoring model and its batches, 0 to 2**63 - 1."""


def prefilter_score(
    cell: CellGraph | str | Path,
    task: Task | TaskSpec | str,
    hidden_size: int = 32,
    batches: int = 2,
    seed: int = 0,
    proxy: Proxy = "jacob_cov",
    batch_size: int = 32,
    device: str = "cpu",
) -> float:
    """The ``proxy`` score of ``cell`` at initialisation on ``batches`` training batches of ``task``;
    higher is better. Deterministic for ``seed`` (weights and batches), and leaves torch's
    global random state as it was."""
    if proxy not in PROXIES:
        raise ValueError(f"proxy: expected one of {', '.join(PROXIES)}, got {proxy!r}")
    if batches < 1:
        raise ValueError(f"batches: expected at least 1, got {batches}")
    if batch_size < 2:
        raise ValueError(
            f"batch_size: expected at least 2 (a correlation needs two examples), got {batch_size}"
        )
    graph, resolved = resolve_cell(cell), resolve_task(task)
    torch_device = resolve_device(device)
    hp = HyperParams(hidden_size=hidden_size, batch_size=batch_size, seed=seed)
    with torch.random.fork_rng(devices=[torch_device] if torch_device.type == "cuda" else []):
        torch.manual_seed(seed)
        model = model_for(resolved, graph, hp).to(torch_device).train()
        stream = resolved.train_batches(batch_size, seed)
        data = [next(stream) for _ in range(batches)]
        data = [
            Batch(b.inputs.to(torch_device), b.targets.to(torch_device), b.mask.to(torch_device), b.continues)
            for b in data
        ]
        if proxy == "jacob_cov":
            return sum(_jacob_cov(model, b) for b in data) / len(data)
        return _gradient_proxy(model, resolved, data, proxy)


def _cell_parameters(model: RecurrentModel) -> list[Tensor]:
    return [*model.encoder.parameters(), *model.rnn.parameters()]


def _gradient_proxy(model: RecurrentModel, task: Task, data: list[Batch], proxy: Proxy) -> float:
    params = _cell_parameters(model)
    for p in model.parameters():
        p.grad = None
    for batch in data:
        logits, _ = model(batch.inputs)
        (masked_loss(logits, batch.targets, batch.mask, task.loss) / len(data)).backward()
    grads = [(p, p.grad) for p in params if p.grad is not None]
    if proxy == "grad_norm":
        score = math.sqrt(sum(float(g.double().pow(2).sum()) for _, g in grads))
    else:
        score = sum(float((p.detach().double() * g.double()).abs().sum()) for p, g in grads)
    return score if math.isfinite(score) else 0.0  # an overflowing gradient: no signal, the lowest score


def _jacob_cov(model: RecurrentModel, batch: Batch) -> float:
    """Mellor et al.'s score of the per-example input gradients of the final hidden state."""
    x = model.encoder(batch.inputs).detach().requires_grad_()
    _, state = model.rnn(x)
    state[0][-1].sum().backward()  # examples are independent: one backward gives every example's
    assert x.grad is not None
    jacobians = x.grad.transpose(0, 1).reshape(x.shape[1], -1).double()  # [B, T * H]
    return jacob_cov_score(jacobians)


def jacob_cov_score(jacobians: Tensor) -> float:
    """``-sum(log(s + k) + 1 / (s + k))`` over the eigenvalues ``s`` of the rows' correlation matrix.

    A row without variation (a zero gradient: the output ignores that input) or with
    non-finite values carries no information; it counts as a zero eigenvalue (as a row that
    repeats another would), so a cell that ignores its input gets the lowest score.

    Example:
        >>> import torch
        >>> varied = jacob_cov_score(torch.eye(4))
        >>> same = jacob_cov_score(torch.ones(4, 4))
        >>> varied > same
        True
    """
    k = JACOB_COV_K
    usable = jacobians[jacobians.isfinite().all(1)]
    centered = usable - usable.mean(1, keepdim=True)
    norms = centered.norm(dim=1)
    scale = float(usable.abs().max()) if usable.numel() else 0.0
    unit = centered[norms > 1e-12 * scale] / norms[norms > 1e-12 * scale, None]
    flat = jacobians.shape[0] - unit.shape[0]
    score = flat * -(math.log(k) + 1.0 / k)
    if unit.shape[0]:
        eigenvalues = torch.linalg.eigvalsh(unit @ unit.T).clamp_min(0.0)
        score -= float((torch.log(eigenvalues + k) + 1.0 / (eigenvalues + k)).sum())
    return score


def rank_candidates(
    cells: Sequence[CellGraph],
    task: Task | TaskSpec | str,
    proxy: Proxy = "jacob_cov",
    hidden_size: int = 32,
    batches: int = 2,
    seed: int = 0,
    batch_size: int = 32,
    device: str = "cpu",
) -> list[tuple[int, float]]:
    """``(index, score)`` of every cell, best first (ties keep the given order). A cell that
    cannot be scored (it fails to build or run) scores ``-inf``.

    Example:
        >>> from cells import library
        >>> from workers import make_task
        >>> task = make_task("arith", valid_size=8, test_size=8)
        >>> ranked = rank_candidates([library.get("tanh"), library.get("gru")], task, hidden_size=16)
        >>> sorted(i for i, _ in ranked)
        [0, 1]
    """
    resolved = resolve_task(task)
    scores = []
    for index, cell in enumerate(cells):
        try:
            score = prefilter_score(cell, resolved, hidden_size, batches, seed, proxy, batch_size, device)
        except (RuntimeError, ValueError):
            score = -math.inf
        scores.append((index, score if math.isfinite(score) else -math.inf))
    return sorted(scores, key=lambda item: -item[1])


def drop_worst(
    cells: Sequence[CellGraph],
    fraction: float,
    task: Task | TaskSpec | str,
    proxy: Proxy = "jacob_cov",
    hidden_size: int = 32,
    batches: int = 2,
    seed: int = 0,
    batch_size: int = 32,
    device: str = "cpu",
) -> list[CellGraph]:
    """``cells`` without the ``floor(fraction * len(cells))`` lowest-scoring ones, in the given order.

    For the strategies: score a batch of mutants and train only the rest.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction: expected a share in [0, 1), got {fraction!r}")
    drop = int(fraction * len(cells))
    if drop == 0:
        return list(cells)
    ranked = rank_candidates(cells, task, proxy, hidden_size, batches, seed, batch_size, device)
    dropped = {index for index, _ in ranked[len(cells) - drop :]}
    return [cell for index, cell in enumerate(cells) if index not in dropped]
