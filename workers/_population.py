"""Population training: the trials of one cell on one task that share a shape train as one model.

Twenty hyperparameter trials of a cell usually share their shape (layers, hidden size, batch
size, optimizer) and differ in learning rate, init scale, clipping norm, forget bias, dropout
and seed. :func:`train_population` stacks them: every weight gains a leading member
dimension and each training step is one batched forward and backward for all members
(``torch.bmm``), one clipping and one optimizer update over the stacked tensors, and one
validation pass whose batches all members share. What stays per member:

* initial weights: each member is built by :func:`workers.model_for` under
  ``torch.manual_seed(seed)``, exactly as its trial alone, then stacked;
* data: members with the same seed share training batches, others get their own (stacked;
  shorter sequences padded and masked, their final state taken at their own length);
* dropout masks: drawn from a generator per member seeded like the lone trial's global one,
  in the same order (on CPU the masks are identical; CUDA's fused dropout draws differently);
* the loss (a vector, one entry per member), gradient norm and clipping, learning rate, Adam
  moments (:class:`~workers._population_optim.PopulationOptimizer`);
* the result: curve, best value, pruning (``report(member, step, value) -> stop``) and
  divergence. A pruned or diverged member leaves the population (its slices are dropped, so
  the rest runs faster); a non-finite loss never reaches another member's gradients or state.

So a member's result equals its trial trained alone by :func:`workers.evaluate_trial` up to
floating-point rounding (the batched products sum in another order). Each member is still
its own Optuna trial and database row: that is the driver's business.

Budgets: ``max_steps`` counts each member's steps as usual. A ``max_seconds`` budget counts
each member's *share* of the device: a step that takes ``dt`` charges ``dt / P`` to each of the
``P`` members training, so the population stops when every member has been charged
``max_seconds``. The device time spent is then what the trials would have spent one after
another, and each member gets more steps than a lone trial (the speed-up of batching).

Speed: each layer runs as generated batched code with a hand-derived backward, and for token
inputs without embedding dropout the embedding folds into the first layer's x-weights, so a
member's step does less matrix work than a lone trial (no x-product over all rows, no ``d_x``).
Matrix products are then most of a step; a lone LSTM already runs on oneDNN's kernels, whose
products beat the batched ones, which caps an LSTM population's gain on CPU, while small models
and cells without native kernels gain more. ``python benchmarks/population_speed.py`` measures it.

Example:
    >>> from workers import Budget, HyperParams, make_task
    >>> task = make_task("arith", max_digits=2, valid_size=16, test_size=16)
    >>> trials = [HyperParams(hidden_size=8, learning_rate=lr, seed=s) for lr, s in [(1e-2, 0), (1e-3, 1)]]
    >>> results = train_population("gru", task, trials, Budget(max_steps=4, eval_every=2), device="cpu")
    >>> [(r.status, r.steps, len(r.curve)) for r in results]
    [('ok', 4, 2), ('ok', 4, 2)]
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from cells import CellGraph, dropout_mask
from workers._evaluate import resolve_cell, resolve_task
from workers._hparams import HyperParams
from workers._model import count_parameters, hidden_size_for_budget, model_for
from workers._population_model import PopulationModel, PopulationState
from workers._population_optim import PopulationOptimizer
from workers._results import Budget, TrialResult
from workers._run_record import RunRecord, error_text, failed_result
from workers._task import Batch, Task, TaskSpec
from workers._train import resolve_device

PopulationSetting = Literal["auto", "off"] | int
"""A job's ``population`` setting: ``auto`` (a size chosen by device), ``off`` (every trial
alone) or the largest population size."""

AUTO_POPULATION_SIZE = {"cpu": 20, "cuda": 64}
"""Population size of ``population: auto`` per device type. On CPU a population of 20 already
amortises the per-step overhead; a GPU needs more members to fill its cores."""

EVAL_CACHE_BYTES = 256 * 2**20
"""Validation logits kept at once; larger validation sets are scored member by member."""

PopulationReport = Callable[[int, int, float], bool]
"""``report(member, step, value) -> stop``: after every evaluation of each member (its index in
``hparams_list``); True prunes that member."""


def population_size(setting: PopulationSetting, device: str | torch.device = "cpu") -> int:
    """The largest population a setting allows: 1 for ``off``, by device for ``auto``.

    Example:
        >>> population_size("auto", "cpu"), population_size("off"), population_size(8)
        (20, 1, 8)
    """
    if setting == "off":
        return 1
    if setting == "auto":
        kind = torch.device(resolve_device(str(device))).type
        return AUTO_POPULATION_SIZE.get(kind, AUTO_POPULATION_SIZE["cpu"])
    if isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1:
        return setting
    raise ValueError(f"population: expected 'auto', 'off' or a positive integer, got {setting!r}")


def population_key(hparams: HyperParams, hidden_size: int | None = None) -> tuple[Any, ...]:
    """What members of one population must share: layers, hidden size (or parameter budget),
    batch size, optimizer kind and whether the embedding and output weights are tied."""
    size: tuple[str, int | None] = (
        ("hidden", hidden_size)
        if hidden_size is not None
        else ("hidden", hparams.hidden_size)
        if hparams.hidden_size is not None
        else ("budget", hparams.param_budget)
    )
    return (hparams.num_layers, size, hparams.batch_size, hparams.optimizer, hparams.tie_weights)


def plan_populations(
    hparams_list: Sequence[HyperParams | dict[str, Any]],
    setting: PopulationSetting = "auto",
    *,
    device: str | torch.device = "cpu",
    task: Task | None = None,
    cell: CellGraph | None = None,
) -> list[list[int]]:
    """Group trials (indices into ``hparams_list``) into populations of at most the setting's size.

    Trials join a group when they share :func:`population_key`; groups keep the trials' order
    and are listed by their first trial. Trials sized by ``param_budget`` group by budget,
    unless ``task`` and ``cell`` are given to resolve budgets to hidden sizes.

    Example:
        >>> trials = [{"hidden_size": 64}, {"hidden_size": 32}, {"hidden_size": 64}, {"hidden_size": 64}]
        >>> plan_populations(trials, 2)
        [[0, 2], [1], [3]]
        >>> plan_populations(trials, "off")
        [[0], [1], [2], [3]]
    """
    limit = population_size(setting, device)
    groups: dict[tuple[Any, ...], list[list[int]]] = {}
    order: list[list[int]] = []
    for i, raw in enumerate(hparams_list):
        hp = HyperParams.model_validate(raw)
        hidden = None
        if hp.hidden_size is None and task is not None and cell is not None:
            assert hp.param_budget is not None
            hidden = hidden_size_for_budget(task, cell, hp.num_layers, hp.param_budget, None, hp.tie_weights)
        chunks = groups.setdefault(population_key(hp, hidden), [])
        if not chunks or len(chunks[-1]) >= limit:
            chunks.append([])
            order.append(chunks[-1])
        chunks[-1].append(i)
    return order


class _MemberDropout:
    """Dropout with each member's probability and generator, in the lone trial's draw order."""

    def __init__(self, probs: list[float], generators: list[torch.Generator | None]) -> None:
        self.probs, self.generators = probs, generators
        self.lengths: list[int] | None = None

    @property
    def active(self) -> bool:
        return any(p > 0 for p in self.probs)

    def keep(self, members: Sequence[int]) -> None:
        self.probs = [self.probs[m] for m in members]
        self.generators = [self.generators[m] for m in members]

    def __call__(self, x: Tensor) -> Tensor:
        _, T, B, H = x.shape
        masks = []
        for m, (p, generator) in enumerate(zip(self.probs, self.generators, strict=True)):
            T_m = T if self.lengths is None else self.lengths[m]
            if p == 0:
                masks.append(x.new_ones(T, B, H))
                continue
            # The lone trial's mask (cells.dropout) from this member's generator.
            noise = dropout_mask(x[m, :T_m], p, generator)
            if T_m < T:
                noise = torch.cat([noise, x.new_ones(T - T_m, B, H)])
            masks.append(noise)
        return x * torch.stack(masks)


def _masked_losses(logits: Tensor, targets: Tensor, mask: Tensor, kind: str) -> Tensor:
    """:func:`workers._train.masked_loss` per member: ``[P]``."""
    P, T, B = mask.shape
    if kind == "ce":
        flat = F.cross_entropy(logits.reshape(P * T * B, -1), targets.reshape(-1), reduction="none")
        per_position = flat.view(P, T, B)
    else:
        per_position = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(-1)
    return (per_position * mask).sum((1, 2)) / mask.sum((1, 2)).clamp_min(1.0)


def _stack_batches(
    batches: list[Batch], device: torch.device
) -> tuple[Tensor, Tensor, Tensor, list[int] | None]:
    """Inputs, targets and masks of the members' batches with a leading member dimension.

    One batch shared by all stays unstacked (expanded); shorter ones are padded (masked out).
    """
    first = batches[0]
    P = len(batches)
    if all(b is first for b in batches):
        inputs = first.inputs.to(device)
        targets = first.targets.to(device).expand(P, *first.targets.shape)
        return inputs, targets, first.mask.to(device).expand(P, *first.mask.shape), None
    lengths = [b.inputs.shape[0] for b in batches]
    T = max(lengths)

    def pad(t: Tensor) -> Tensor:
        if t.shape[0] == T:
            return t
        return torch.cat([t, t.new_zeros(T - t.shape[0], *t.shape[1:])])

    inputs = torch.stack([pad(b.inputs) for b in batches]).to(device)
    targets = torch.stack([pad(b.targets) for b in batches]).to(device)
    mask = torch.stack([pad(b.mask) for b in batches]).to(device)
    return inputs, targets, mask, None if len(set(lengths)) == 1 else lengths


def _carry(state: PopulationState | None, continues: list[bool]) -> PopulationState | None:
    """The carried state with members whose batch starts afresh reset to zeros (detached)."""
    if state is None or not any(continues):
        return None
    if all(continues):
        return [[s.detach() for s in layer] for layer in state]
    keep = torch.tensor(continues, device=state[0][0].device).view(-1, 1, 1)
    return [[torch.where(keep, s.detach(), 0.0) for s in layer] for layer in state]


def validate_population(model: PopulationModel, task: Task, batch_size: int) -> list[dict[str, Any]]:
    """Every member's validation metrics (the task's own :meth:`~Task.evaluate`), one batched
    forward per validation batch for all members (or for as many as :data:`EVAL_CACHE_BYTES` allows)."""
    device = next(iter(model.parameters.values())).device
    batches = list(task.eval_batches("valid", batch_size))
    outputs = model.parameters["decoder.bias"].shape[1]
    per_member = 4 * outputs * sum(b.targets.shape[0] * b.targets.shape[1] for b in batches)
    chunk = max(1, EVAL_CACHE_BYTES // max(per_member, 1))
    model.training = False
    results: list[dict[str, Any]] = []
    try:
        with torch.no_grad():
            for start in range(0, model.size, chunk):
                members = list(range(start, min(model.size, start + chunk)))
                part = model if len(members) == model.size else model.select(members)
                if per_member > EVAL_CACHE_BYTES:
                    results.append(task.evaluate(_streaming_predict(part, device), "valid", batch_size))
                    continue
                logits = _all_logits(part, batches, device)
                for k in range(len(members)):
                    results.append(task.evaluate(_cached_predict(logits, batches, k), "valid", batch_size))
    finally:
        model.training = True
    return results


def _all_logits(model: PopulationModel, batches: list[Batch], device: torch.device) -> list[Tensor]:
    state: PopulationState | None = None
    logits = []
    for batch in batches:
        if not batch.continues:
            state = None
        out, state = model(batch.inputs.to(device), state)
        logits.append(out.float())
    return logits


def _cached_predict(logits: list[Tensor], batches: list[Batch], member: int) -> Callable[[Batch], Tensor]:
    calls = iter(range(len(batches)))

    def predict(batch: Batch) -> Tensor:
        i = next(calls, len(batches))
        if i >= len(batches) or not (
            batch.inputs is batches[i].inputs or torch.equal(batch.inputs, batches[i].inputs)
        ):
            raise RuntimeError(
                "validation batches differ between eval_batches() and evaluate(); a task's held-out "
                "split must be the same batches every call"
            )
        return logits[i][member]

    return predict


def _streaming_predict(model: PopulationModel, device: torch.device) -> Callable[[Batch], Tensor]:
    state: PopulationState | None = None

    def predict(batch: Batch) -> Tensor:
        nonlocal state
        if not batch.continues:
            state = None
        out, state = model(batch.inputs.to(device), state)
        return out[0].float()

    return predict


def train_population(
    cell: CellGraph | str | Path,
    task: Task | TaskSpec | str,
    hparams_list: Sequence[HyperParams | dict[str, Any]],
    budget: Budget | None = None,
    report: PopulationReport | None = None,
    device: str = "auto",
) -> list[TrialResult]:
    """Train the trials ``hparams_list`` of ``cell`` on ``task`` as one population; one result each.

    The trials must share :func:`population_key` (see :func:`plan_populations`), else
    :class:`ValueError`. Otherwise this never raises: a trial whose hyperparameters do not
    validate fails alone, and an error during training (``report`` raising included) fails
    every trial still running; those already pruned or diverged keep their results. See the
    module docstring for what each member keeps to itself and for ``max_seconds``.
    """
    started = time.perf_counter()
    budget = budget or Budget()
    if budget.score_split != "valid":  # a test-split score is the final round's, trained alone
        raise ValueError(f"a population scores on 'valid'; expected it, got {budget.score_split!r}")
    if not hparams_list:
        raise ValueError("hparams_list: a population needs at least one trial")
    results: list[TrialResult | None] = [None] * len(hparams_list)
    members: list[int] = []
    hps: list[HyperParams] = []
    for i, raw in enumerate(hparams_list):
        try:
            hps.append(HyperParams.model_validate(raw))
            members.append(i)
        except Exception as exc:
            results[i] = _failed(exc, task, raw, started, "cpu")
    if len({population_key(hp) for hp in hps}) > 1:
        raise ValueError(
            "hparams_list: trials differ in num_layers, hidden_size/param_budget, batch_size or optimizer; "
            "group them with plan_populations first"
        )
    device_name = "cpu"
    try:
        torch_device = resolve_device(device)
        device_name = str(torch_device)
        if hps:
            run = _PopulationRun(
                resolve_cell(cell), resolve_task(task), hps, members, budget, report, torch_device
            )
            run.train(started, results)
    except Exception as exc:
        for i in range(len(results)):
            if results[i] is None:
                results[i] = _failed(exc, task, hparams_list[i], started, device_name)
        run = None  # drop the population's tensors before the next one (CUDA out-of-memory)
        if device_name.startswith("cuda"):
            gc.collect()
            torch.cuda.empty_cache()
    return [r for r in results if r is not None]


def _failed(exc: Exception, task: Any, hparams: Any, started: float, device: str) -> TrialResult:
    named = task if isinstance(task, Task) else str(getattr(task, "name", task))
    return failed_result(error_text(exc), named, hparams, time.perf_counter() - started, device)


class _PopulationRun:
    """The state of one population's training; :meth:`train` is the loop."""

    def __init__(
        self,
        cell: CellGraph,
        task: Task,
        hps: list[HyperParams],
        members: list[int],
        budget: Budget,
        report: PopulationReport | None,
        device: torch.device,
    ) -> None:
        self.task, self.budget, self.report, self.device = task, budget, report, device
        self.members = members  # index in hparams_list of each current member
        self.hp_of = dict(zip(members, hps, strict=True))
        models = []
        for hp in hps:
            torch.manual_seed(hp.seed)  # as evaluate_trial: each member's weights from its own seed
            models.append(model_for(task, cell, hp))
        self.num_params = count_parameters(models[0])
        self.hidden_size = models[0].hidden_size
        self.model = PopulationModel(models, task.input_kind).to(device)
        del models
        self.optimizer = PopulationOptimizer(
            hps[0].optimizer, [hp.learning_rate for hp in hps], [hp.max_grad_norm for hp in hps], device
        )
        generators = [
            torch.Generator(device=device).manual_seed(hp.seed) if hp.dropout > 0 else None for hp in hps
        ]
        self.dropout = _MemberDropout([hp.dropout for hp in hps], generators)
        self.streams: dict[int, Iterator[Batch]] = {}
        for hp in hps:  # members with one data seed share one stream of batches
            if hp.seed not in self.streams:
                self.streams[hp.seed] = task.train_batches(hp.batch_size, hp.seed)
        self.records = {i: RunRecord(task, hp, budget) for i, hp in zip(members, hps, strict=True)}
        self.size = len(members)
        self.startup = 0.0  # each member's share of the time before the first step
        self.share = 0.0  # device seconds charged to each member
        self.eval_share = 0.0  # the part of it spent validating

    def train(self, started: float, results: list[TrialResult | None]) -> None:
        budget, task = self.budget, self.task
        state: PopulationState | None = None
        step = 0  # completed steps
        self.startup = (time.perf_counter() - started) / self.size
        last = time.perf_counter()
        while self.members:
            draws = {seed: next(stream) for seed, stream in self.streams.items() if self._seed_used(seed)}
            batches = [draws[self.hp_of[i].seed] for i in self.members]
            inputs, targets, mask, lengths = _stack_batches(batches, self.device)
            state = _carry(state, [b.continues for b in batches])
            self.dropout.lengths = lengths
            logits, state = self.model(inputs, state, lengths, self.dropout if self.dropout.active else None)
            losses = _masked_losses(logits, targets, mask, task.loss)
            finite = [math.isfinite(v) for v in losses.tolist()]
            kept = [k for k, ok in enumerate(finite) if ok]
            for k in range(len(finite)):
                if not finite[k]:  # as a lone trial: stop before the update, at step n (1-based)
                    self.records[self.members[k]].diverge(step + 1)
                    self._finish(results, self.members[k], step)
            if not kept:  # every member diverged, and each has its result
                self.members = []
                break
            for p in self.model.parameters.values():
                p.grad = None
            (losses.sum() if len(kept) == len(finite) else losses[kept].sum()).backward()
            if len(kept) < len(finite):
                state = self._keep(kept, state)
            self.optimizer.step(self.model.parameters)
            step += 1

            now = time.perf_counter()
            self.share += (now - last) / len(finite)  # this step's device time, shared by its members
            last = now
            done = budget.is_spent(step, self.share)
            if budget.validates_after(step, done):
                state = self._evaluate(results, step, state)
                eval_share = (time.perf_counter() - last) / max(len(self.members), 1)
                self.share += eval_share
                self.eval_share += eval_share
                last = time.perf_counter()
            if done:
                break
        for i in self.members:
            self._finish(results, i, step)

    def _seed_used(self, seed: int) -> bool:
        return any(self.hp_of[i].seed == seed for i in self.members)

    def _evaluate(
        self, results: list[TrialResult | None], step: int, state: PopulationState | None
    ) -> PopulationState | None:
        """Validate every member; record and drop the diverged and the pruned."""
        metrics_list = validate_population(self.model, self.task, self.budget.eval_batch_size)
        kept: list[int] = []
        for position, metrics in enumerate(metrics_list):
            i = self.members[position]
            value = self.records[i].evaluated(step, metrics)
            if value is None:  # diverged
                self._finish(results, i, step)
                continue
            if self.report is not None and self.report(i, step, value):
                self.records[i].prune()
                self._finish(results, i, step)
                continue
            kept.append(position)
        if len(kept) < len(metrics_list):
            state = self._keep(kept, state)
        return state

    def _keep(self, positions: list[int], state: PopulationState | None) -> PopulationState | None:
        """Keep the members at ``positions``; returns their slice of ``state``."""
        self.members = [self.members[k] for k in positions]
        if not positions:
            return None
        self.model.keep(positions)
        self.optimizer.keep(positions)
        self.dropout.keep(positions)
        if state is None:
            return None
        index = torch.tensor(positions, device=self.device)
        return [[s.index_select(0, index) for s in layer] for layer in state]

    def _finish(self, results: list[TrialResult | None], i: int, step: int) -> None:
        """Member ``i``'s result after ``step`` steps, as :func:`workers._train.train` would report it."""
        results[i] = self.records[i].result(
            steps=step,
            seconds=self.startup + self.share,
            num_params=self.num_params,
            hidden_size=self.hidden_size,
            startup_seconds=self.startup,
            train_seconds=self.share - self.eval_share,
            device=str(self.device),
            population_size=self.size,
        )
