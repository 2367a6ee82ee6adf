"""``evaluate_trial``: train one cell on one task with one set of hyperparameters, never raising.

Example:
    >>> from workers import Budget, evaluate_trial
    >>> result = evaluate_trial("lstm", "no-such-task", {"hidden_size": 8}, Budget(max_steps=1))
    >>> result.status, result.error.split(":")[0]
    ('failed', 'TaskConfigError')
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import optuna
import torch

from cells import CellGraph
from cells import library as cell_library
from workers._hparams import HyperParams, SearchSpace
from workers._model import LayerFactory, model_for
from workers._results import Budget, TrialResult, TrialStatus
from workers._run_record import error_text, failed_result
from workers._task import Task, TaskSpec
from workers._task_registry import make_task
from workers._train import Report, resolve_device, train


def resolve_cell(cell: CellGraph | str | Path) -> CellGraph:
    """A cell graph, a library cell name or a cell JSON file."""
    return cell if isinstance(cell, CellGraph) else cell_library.resolve(cell)


def resolve_task(task: Task | TaskSpec | str) -> Task:
    """A task instance, or a task built (and cached per process) from a name or spec."""
    return task if isinstance(task, Task) else make_task(task)


def evaluate_trial(
    cell: CellGraph | str | Path,
    task: Task | TaskSpec | str,
    hparams: HyperParams | dict[str, Any],
    budget: Budget | None = None,
    report: Report | None = None,
    device: str = "auto",
    layer_factory: LayerFactory | None = None,
) -> TrialResult:
    """Train ``cell`` on ``task`` with ``hparams`` within ``budget`` and return a :class:`TrialResult`.

    ``cell``: a :class:`~cells.CellGraph`, a library name or a JSON file. ``task``: a
    :class:`Task`, a task spec or a registered name. ``report(step, value) -> stop`` gets
    every validation value; True prunes. ``layer_factory`` replaces the cell's layers (speed
    comparisons against torch.nn.LSTM).

    ``value`` is the best validation value of the task's primary metric seen during training
    and ``metrics`` the validation metrics of that evaluation (see :func:`workers._train.train`).
    Every exception, CUDA out-of-memory included, becomes a ``failed`` result whose ``error``
    starts with the exception type; a run whose loss turns non-finite is ``diverged``. Either
    way the process stays fit for the next trial.
    """
    started = time.perf_counter()
    named: Task | str = str(getattr(task, "name", task))
    seen: HyperParams | dict[str, Any] = hparams
    device_name = "cpu"
    try:
        resolved_task = resolve_task(task)
        named = resolved_task
        hp = HyperParams.model_validate(hparams)
        seen = hp
        torch_device = resolve_device(device)
        device_name = str(torch_device)
        torch.manual_seed(hp.seed)
        model = model_for(resolved_task, resolve_cell(cell), hp, layer_factory)
        return train(model, resolved_task, hp, budget or Budget(), report, torch_device, started)
    except Exception as exc:
        error = error_text(exc)
    # Past the except block the traceback (and the tensors its frames hold) is gone; drop the
    # model too and hand cached CUDA memory back before the next trial (out-of-memory).
    model = None  # type: ignore[assignment]
    if device_name.startswith("cuda"):
        gc.collect()
        torch.cuda.empty_cache()
    return failed_result(error, named, seen, time.perf_counter() - started, device_name)


def tune_cell(
    cell: CellGraph | str | Path,
    task: Task | TaskSpec | str,
    n_trials: int,
    budget: Budget | None = None,
    space: SearchSpace | None = None,
    sampler: Literal["random", "tpe"] = "random",
    seed: int = 0,
    device: str = "auto",
    on_trial: Callable[[TrialResult], None] | None = None,
    on_start: Callable[[int, HyperParams], None] | None = None,
) -> list[TrialResult]:
    """A small local Optuna study (in memory) of one cell on one task; one result per trial.

    Trial ``n`` trains with seed ``seed + n`` unless the space samples ``seed``; validation
    values reach Optuna's median pruner. Unknown cells or tasks raise before any training.
    ``on_start(number, hparams)`` is called as each trial starts, ``on_trial(result)`` as it ends.

    Example:
        >>> task = TaskSpec(name="memorize", settings={"valid_size": 20, "test_size": 20})
        >>> space = SearchSpace(hidden_size=8, num_layers=1)
        >>> results = tune_cell("tanh", task, 2, Budget(max_steps=2), space, device="cpu")
        >>> [r.status for r in results], best_result(results) is not None
        (['ok', 'ok'], True)
    """
    graph, resolved = resolve_cell(cell), resolve_task(task)
    space = space or SearchSpace()
    distributions = space.to_optuna()
    samplers = {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler}
    study = optuna.create_study(
        direction=resolved.direction.value,
        sampler=samplers[sampler](seed=seed),
        pruner=optuna.pruners.MedianPruner(),
    )
    results = []
    for _ in range(n_trials):
        trial = study.ask(distributions)
        hparams = space.hparams_from({"seed": seed + trial.number, **trial.params})
        if on_start is not None:
            on_start(trial.number, hparams)

        def report(step: int, value: float, trial: optuna.Trial = trial) -> bool:
            trial.report(value, step)
            return trial.should_prune()

        result = evaluate_trial(graph, resolved, hparams, budget, report, device)
        if result.status == TrialStatus.OK:
            study.tell(trial, result.value)
        elif result.status == TrialStatus.PRUNED:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        results.append(result)
        if on_trial is not None:
            on_trial(result)
    return results


def best_result(results: list[TrialResult]) -> TrialResult | None:
    """The ``ok`` result with the best value (by the task's direction), or None."""
    done = [r for r in results if r.status == TrialStatus.OK and r.value is not None]
    if not done:
        return None
    sign = done[0].direction.sign
    return max(done, key=lambda r: sign * (r.value or 0.0))
