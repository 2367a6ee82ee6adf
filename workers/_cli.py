"""``cellsearch data ...`` and ``cellsearch cells eval``.

``eval_cell`` is a command function, not an app of its own: the ``cellsearch`` composition root
mounts it in the ``cells`` group (the cells package cannot depend on the workers that run it).
Heavy imports (torch, Optuna) happen inside the command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from cells import cli_failure
from workers._download import DATASETS, DownloadError, dataset_dir, download_dataset
from workers._eval_progress import TrialProgress
from workers._problems import shown_value

if TYPE_CHECKING:
    from cells import CellGraph
    from workers._hparams import SearchSpace
    from workers._results import Budget, TrialResult
    from workers._task import Task

data_app = typer.Typer(help="Fetch the public data sets of the paper's tasks.", no_args_is_help=True)


@data_app.command("download")
def download_command(
    name: Annotated[str, typer.Argument(help=f"The data set: {', '.join(DATASETS)}.")],
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Folder to write to (default: <data dir>/<name>).")
    ] = None,
    url_base: Annotated[
        str | None, typer.Option("--url-base", help="Fetch <url-base>/<file name> instead (a mirror).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Fetch again even if a file exists.")] = False,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Check known SHA-256 digests.")] = True,
) -> None:
    """Fetch a public data set (Penn Treebank or a polyphonic music corpus).

    Files already present are skipped; a failed download leaves no partial file.
    """
    if name not in DATASETS:
        raise cli_failure(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}", 2)
    if url_base is not None and not url_base.startswith(("http://", "https://", "file://")):
        raise cli_failure(
            f"--url-base: expected an http://, https:// or file:// URL, got {shown_value(url_base)}", 2
        )
    if directory is not None and directory.exists() and not directory.is_dir():
        raise cli_failure(f"--dir: {directory}: expected a folder, got a file", 2)
    try:
        paths = download_dataset(name, directory, url_base=url_base, force=force, verify=verify)
    except DownloadError as error:
        raise cli_failure(str(error)) from None
    for path in paths:
        typer.echo(str(path))


@data_app.command("list")
def list_command(
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Data folder (default: $CELLSEARCH_DATA_DIR or ./data).")
    ] = None,
) -> None:
    """Show the data sets, their files and whether they are present."""
    table = Table("data set", "folder", "file", "present")
    for name, files in DATASETS.items():
        folder = data_dir / name if data_dir is not None else dataset_dir(name)
        for file in files:
            table.add_row(name, str(folder), file.name, "yes" if (folder / file.name).is_file() else "no")
    Console().print(table)


DEFAULT_TRIALS = 2
"""``cells eval``'s defaults: a trial of ``examples/quickstart.yaml`` (its trials per task, its
arith budget and its model)."""
DEFAULT_STEPS = 200
DEFAULT_EVAL_EVERY = 100
DEFAULT_SPACE = {"num_layers": 1, "hidden_size": 32, "dropout": 0.0}
"""The search space of ``cells eval`` unless the task's protocol (e.g. the ``text`` task's
language-model protocol) or ``--space`` sets a field (the rest of :class:`workers.SearchSpace`'s
defaults are sampled)."""


def eval_cell(
    cell: Annotated[str, typer.Argument(help="A library cell name or a cell JSON file.")],
    task: Annotated[str, typer.Option("--task", "-t", help="Task: memorize, arith, xml, text or music.")],
    task_settings: Annotated[
        list[str] | None,
        typer.Option("--task-setting", help="A task setting KEY=VALUE (repeatable), e.g. max_digits=2."),
    ] = None,
    trials: Annotated[
        int, typer.Option("--trials", "-n", help="Hyperparameter trials, 1 to 100,000.")
    ] = DEFAULT_TRIALS,
    budget_seconds: Annotated[
        float | None,
        typer.Option("--budget-seconds", help="Wall-clock limit per trial, above 0 and at most a week."),
    ] = None,
    budget_steps: Annotated[
        int | None,
        typer.Option(
            "--budget-steps",
            help=f"Step limit per trial, 1 to 10,000,000 ({DEFAULT_STEPS} when no limit is given).",
        ),
    ] = None,
    eval_every: Annotated[
        int, typer.Option("--eval-every", help="Validate every this many steps, 1 to 10,000,000.")
    ] = DEFAULT_EVAL_EVERY,
    space_file: Annotated[
        Path | None,
        typer.Option(
            "--space",
            help="YAML or JSON file of search-space overrides (by default one layer of 32 units, "
            "no dropout), e.g. {num_layers: [1, 2], hidden_size: {low: 32, high: 128, log: true}}.",
        ),
    ] = None,
    sampler: Annotated[
        Literal["random", "tpe"], typer.Option("--sampler", help="Optuna sampler.")
    ] = "random",
    device: Annotated[
        Literal["auto", "cpu", "cuda"], typer.Option("--device", help="Where to train.")
    ] = "auto",
    seed: Annotated[
        int,
        typer.Option("--seed", help="Seeds the sampler, 0 to 2**32 - 1; trial n trains with seed + n."),
    ] = 0,
    format: Annotated[
        Literal["table", "json"], typer.Option("--format", "-f", help="table or json.")
    ] = "table",
) -> None:
    """Tune one cell on one task with a small local Optuna study and print the best trial.

    The defaults are sized like a trial of examples/quickstart.yaml: 2 trials of 200 steps,
    validated every 100, of a one-layer model with 32 hidden units and no dropout (the learning
    rate, init scale and gradient clipping sampled); the task's own settings otherwise. A line
    on stderr says when each trial starts and how it ended.

    Errors print one line to stderr and exit with code 1 (bad cell file, no trial
    completed) or 2 (bad usage: unknown task, bad setting, budget or space).
    """
    from workers._evaluate import best_result, tune_cell

    _check_range("--trials", trials, 1, MAX_TRIALS)
    _check_range("--seed", seed, 0, MAX_SEED)
    budget = _budget(budget_steps, budget_seconds, eval_every)
    _check_device(device)
    settings = _settings(task, task_settings or [])
    space = _space(space_file, _protocol(task, settings))
    graph = _cell(cell)
    resolved = _task(task, settings)
    with TrialProgress(f"{graph.name} on {resolved.name}", trials) as (start, advance):
        results = tune_cell(graph, resolved, trials, budget, space, sampler, seed, device, advance, start)
    best = best_result(results)
    if format == "json":
        typer.echo(json.dumps(_json_report(graph, resolved, results, best), indent=2))
    else:
        _print_table(graph, resolved, results, best)
    if best is None:
        raise cli_failure(f"no trial of {graph.name} on {resolved.name} completed", 1)


# -- the inputs of `cells eval`, validated up front (exit 1: bad cell, exit 2: bad usage) ------------


MAX_TRIALS = 100_000
"""The most trials one ``cells eval`` runs."""
MAX_SEED = 2**32 - 1
"""Optuna's samplers take 32-bit seeds."""
MAX_SPACE_FILE_BYTES = 1_000_000
"""A search-space file is a few lines; anything over a megabyte is not one."""
_BUDGET_OPTIONS = {
    "max_steps": "--budget-steps",
    "max_seconds": "--budget-seconds",
    "eval_every": "--eval-every",
}


def _check_range(option: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise cli_failure(
            f"{option}: expected an integer from {low} to {high:,}, got {shown_value(value)}", 2
        )


def _cell(cell: str) -> CellGraph:
    from cells import CellsearchError
    from workers._evaluate import resolve_cell

    try:
        return resolve_cell(cell)
    except CellsearchError as exc:
        raise cli_failure(str(exc), 1) from None


def _settings(task: str, task_settings: list[str]) -> dict[str, Any]:
    """The ``--task-setting`` values (each YAML), checked against the task's config."""
    from workers._task_registry import TASKS, task_config

    settings = {}
    for item in task_settings:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise cli_failure(f"--task-setting: expected KEY=VALUE, got {shown_value(item)}", 2)
        settings[key.strip()] = _yaml_value(f"--task-setting {key.strip()}", text)
    if task not in TASKS:
        raise cli_failure(f"--task: unknown task {task!r}; known tasks: {', '.join(sorted(TASKS))}", 2)
    try:
        task_config(task, **settings)
    except ValueError as exc:
        raise cli_failure(f"--task-setting: {exc}", 2) from None
    return settings


def _check_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise cli_failure("--device: expected a machine with a CUDA GPU for 'cuda', got none", 2)


def _yaml_value(option: str, text: str) -> Any:
    """``text`` parsed as strict YAML (no repeated key, bounded nesting), or the usage failure of
    ``option`` (one line)."""
    from cells import StrictYAMLError, load_strict_yaml

    try:
        return load_strict_yaml(text)
    except StrictYAMLError as exc:
        raise cli_failure(f"{option}: expected YAML, got {exc}", 2) from None


def _task(task: str, settings: dict[str, Any]) -> Task:
    from workers._evaluate import resolve_task
    from workers._task import TaskSpec

    try:
        return resolve_task(TaskSpec(name=task, settings=settings))
    except (ValueError, OSError) as exc:
        raise cli_failure(f"--task: {exc}", 2) from None


def _budget(budget_steps: int | None, budget_seconds: float | None, eval_every: int) -> Budget:
    from pydantic import ValidationError

    from workers._problems import described_errors
    from workers._results import Budget

    try:
        steps = budget_steps if budget_steps is not None or budget_seconds is not None else DEFAULT_STEPS
        return Budget(max_steps=steps, max_seconds=budget_seconds, eval_every=eval_every)
    except ValidationError as exc:
        problem, message = described_errors(exc)[0]
        option = _BUDGET_OPTIONS.get(str(problem.loc[0]) if problem.loc else "", "budget")
        raise cli_failure(f"{option}: {message}", 2) from None


def _protocol(task: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The search-space fields the task's protocol sets (its settings are checked already)."""
    from workers._task_registry import task_config

    return task_config(task, **settings).search_space_defaults()


def _space(space_file: Path | None, protocol: dict[str, Any]) -> SearchSpace:
    from cells import UserFileError, read_text_file
    from workers._hparams import SearchSpace, SearchSpaceError

    space = SearchSpace().with_overrides({**DEFAULT_SPACE, **protocol})
    if space_file is None:
        return space
    try:
        text = read_text_file(space_file, what="search space file", max_bytes=MAX_SPACE_FILE_BYTES)
    except UserFileError as exc:
        raise cli_failure(f"--space: {exc}", 2) from None
    overrides = _yaml_value(f"--space: {space_file}", text) or {}
    if not isinstance(overrides, dict):
        kind = type(overrides).__name__
        raise cli_failure(
            f"--space: {space_file}: expected a mapping of field names to values, got a {kind}", 2
        )
    try:
        return space.with_overrides(overrides)
    except SearchSpaceError as exc:
        raise cli_failure(f"--space: {space_file}: {exc}", 2) from None


# -- progress and output -----------------------------------------------------------------------------


def _json_report(
    graph: CellGraph, resolved: Task, results: list[TrialResult], best: TrialResult | None
) -> dict[str, Any]:
    trial_rows = [
        {
            "number": number,
            "status": r.status,
            "value": r.value,
            "hparams": r.hparams,
            "steps": r.steps,
            "seconds": r.seconds,
            "diverged_at_step": r.diverged_at_step,
            "error": r.error,
        }
        for number, r in enumerate(results)
    ]
    best_row = None
    if best is not None:
        best_row = {
            "number": results.index(best),
            "value": best.value,
            "metrics": best.metrics,
            "hparams": best.hparams,
            "num_params": best.num_params,
            "steps": best.steps,
            "seconds": best.seconds,
            "device": best.device,
        }
    return {
        "cell": graph.name,
        "task": resolved.name,
        "metric": resolved.primary_metric,
        "direction": resolved.direction,
        "best": best_row,
        "trials": trial_rows,
    }


def _print_table(
    graph: CellGraph, resolved: Task, results: list[TrialResult], best: TrialResult | None
) -> None:
    console = Console(markup=False)
    table = Table(title=f"{graph.name} on {resolved.name} ({resolved.primary_metric}, {resolved.direction})")
    for column in ("#", "status", "value", "lr", "layers", "hidden", "steps", "seconds"):
        table.add_column(column, justify="left" if column == "status" else "right")
    for number, r in enumerate(results):
        hp = r.hparams
        table.add_row(
            str(number),
            r.status if r.diverged_at_step is None else f"{r.status}@{r.diverged_at_step}",
            "-" if r.value is None else f"{r.value:.4g}",
            f"{hp.get('learning_rate', 0):.2g}",
            str(hp.get("num_layers", "")),
            str(r.metrics.get("hidden_size") or hp.get("hidden_size") or "-"),
            str(r.steps),
            f"{r.seconds:.1f}",
        )
    console.print(table)
    if best is not None:
        console.print(f"best: trial {results.index(best)}, {best.metric} {best.value:.4g}")
        metrics = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in best.metrics.items()
        )
        console.print(f"  metrics: {metrics}")
        console.print(f"  hparams: {json.dumps(best.hparams)}")
    for number, r in enumerate(results):
        if r.error:
            console.print(f"trial {number} failed: {r.error.splitlines()[0]}")
