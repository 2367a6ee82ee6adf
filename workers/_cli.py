"""``cellsearch data ...`` and ``cellsearch cells eval`` (being built)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from workers._download import DATASETS, DownloadError, dataset_dir, download_dataset

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
    try:
        paths = download_dataset(name, directory, url_base=url_base, force=force, verify=verify)
    except DownloadError as error:
        Console(stderr=True).print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(1) from None
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


def register_cell_commands(cells_app: typer.Typer) -> None:
    """Add ``cells eval`` to the ``cells`` command group (it needs the workers)."""

    @cells_app.command("eval")
    def eval_cell(
        cell: Annotated[str, typer.Argument(help="A library cell name or a cell JSON file.")],
        task: Annotated[str, typer.Option("--task", "-t", help="Task: memorize, arith, xml, text or music.")],
        task_settings: Annotated[
            list[str] | None,
            typer.Option("--task-setting", help="A task setting KEY=VALUE (repeatable), e.g. max_digits=2."),
        ] = None,
        trials: Annotated[int, typer.Option("--trials", "-n", min=1, help="Hyperparameter trials.")] = 5,
        budget_seconds: Annotated[
            float | None, typer.Option("--budget-seconds", help="Wall-clock limit per trial.")
        ] = None,
        budget_steps: Annotated[
            int | None,
            typer.Option("--budget-steps", help="Step limit per trial (200 when no limit is given)."),
        ] = None,
        eval_every: Annotated[
            int, typer.Option("--eval-every", min=1, help="Validate every this many steps.")
        ] = 50,
        space_file: Annotated[
            Path | None,
            typer.Option(
                "--space", help="YAML or JSON file of search-space overrides, e.g. {num_layers: 1}."
            ),
        ] = None,
        sampler: Annotated[
            Literal["random", "tpe"], typer.Option("--sampler", help="Optuna sampler.")
        ] = "random",
        device: Annotated[
            Literal["auto", "cpu", "cuda"], typer.Option("--device", help="Where to train.")
        ] = "auto",
        seed: Annotated[
            int, typer.Option("--seed", help="Seeds the sampler; trial n trains with seed + n.")
        ] = 0,
        format: Annotated[
            Literal["table", "json"], typer.Option("--format", "-f", help="table or json.")
        ] = "table",
    ) -> None:
        """Tune one cell on one task with a small local Optuna study and print the best trial.

        Errors print one line to stderr and exit with code 1 (bad cell file, no trial
        completed) or 2 (bad usage: unknown task, bad setting, budget or space).
        """
        import optuna
        import yaml
        from pydantic import ValidationError
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from cells import CellGraphError
        from workers._evaluate import best_result, resolve_cell, resolve_task, tune_cell
        from workers._hparams import SearchSpace, SearchSpaceError
        from workers._results import Budget, TrialResult
        from workers._task import TaskSpec

        def fail(message: str, code: int) -> typer.Exit:
            typer.echo(f"error: {message}", err=True)
            return typer.Exit(code)

        try:
            graph = resolve_cell(cell)
        except CellGraphError as exc:
            raise fail(str(exc), 1) from None
        settings = {}
        for item in task_settings or []:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise fail(f"--task-setting: expected KEY=VALUE, got {item!r}", 2)
            settings[key.strip()] = yaml.safe_load(value)
        try:
            resolved = resolve_task(TaskSpec(name=task, settings=settings))
        except (ValueError, OSError) as exc:
            raise fail(f"--task: {exc}", 2) from None
        try:
            steps = budget_steps if budget_steps is not None or budget_seconds is not None else 200
            budget = Budget(max_steps=steps, max_seconds=budget_seconds, eval_every=eval_every)
        except ValidationError as exc:
            raise fail(f"budget: {exc.errors()[0]['msg']}", 2) from None
        space = SearchSpace()
        if space_file is not None:
            try:
                overrides = yaml.safe_load(space_file.read_text()) or {}
                if not isinstance(overrides, dict):
                    raise SearchSpaceError("expected a mapping of field names to values")
                space = space.with_overrides(overrides)
            except (OSError, yaml.YAMLError, SearchSpaceError) as exc:
                raise fail(f"--space: {exc}", 2) from None

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        stderr = Console(stderr=True)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=stderr, transient=True) as progress:
            bar = progress.add_task(f"{graph.name} on {resolved.name}", total=trials)
            finished: list[TrialResult] = []

            def advance(result: TrialResult) -> None:
                finished.append(result)
                best = best_result(finished)
                shown = "-" if best is None else f"{best.value:.4g}"
                progress.update(bar, advance=1, description=f"{graph.name} on {resolved.name}: best {shown}")

            results = tune_cell(graph, resolved, trials, budget, space, sampler, seed, device, advance)

        best = best_result(results)
        if format == "json":
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
            report = {
                "cell": graph.name,
                "task": resolved.name,
                "metric": resolved.primary_metric,
                "direction": resolved.direction,
                "best": best_row,
                "trials": trial_rows,
            }
            typer.echo(json.dumps(report, indent=2))
        else:
            console = Console(markup=False)
            table = Table(
                title=f"{graph.name} on {resolved.name} ({resolved.primary_metric}, {resolved.direction})"
            )
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
        if best is None:
            raise fail(f"no trial of {graph.name} on {resolved.name} completed", 1)
