"""``cellsearch results ...``, ``cellsearch dashboard`` and ``cellsearch report``.

Errors print one line to stderr, naming the option and the user's own path, and exit with
code 2 for a bad option and 1 for a failure at run time. Every integer option has a finite
range (ids: 1 to 2**63 - 1, what the databases store; counts: see each option). The read
commands (``results top``, ``show``, ``export``, ``report``) never write to the database
they read: they do not create, migrate or add views to it (:mod:`dashboards._reading`);
``results views`` and ``results sync-mlflow`` are the ones that write. Heavy
imports (the results store, MLflow, matplotlib) happen inside the commands that need them,
so ``cellsearch --help`` stays quick.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cells import cli_failure, table_console
from search import (
    final_legend,
    final_task_cell,
    format_estimate,
    is_final_task,
    resolve_settings,
    search_task_of,
    split_tasks,
    verdict_words,
)

if TYPE_CHECKING:
    from search import ResultStore

results_app = typer.Typer(
    help="Query the results: leaderboards, one architecture, exports.", no_args_is_help=True
)

DEFAULT_DASHBOARD_PORT = 5000
MAX_ID = 2**63 - 1
"""The largest id of a job or an architecture (a signed 64-bit integer in the databases)."""
MAX_ROWS = 100_000
"""The most architectures ``results top -n`` lists."""
MAX_REPORT_CELLS = 1_000
"""The most cells ``report --top`` draws."""


class TopFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class ShowFormat(StrEnum):
    table = "table"
    json = "json"


DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Results database URL (else CELLSEARCH_DB_URL, else sqlite:///cellsearch.db)."),
]
MlflowOption = Annotated[
    str | None,
    typer.Option(
        "--mlflow", help="MLflow tracking URI (else MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."
    ),
]
JobOption = Annotated[
    int | None,
    typer.Option("--job", "-j", help="The job (1 to 2**63 - 1); default: the latest one.", min=1, max=MAX_ID),
]


@contextmanager
def _open(db: str | None, *, views: bool = False) -> Iterator[ResultStore]:
    """The results database, opened without writing to it (``views``: add the SQL views,
    the one write, for ``results views``); errors exit 1 (2 for a bad ``--db``)."""
    from dashboards._reading import ReadError, open_for_reading
    from search import StoreError

    url = resolve_settings(db_url=db).db_url
    try:
        store = open_for_reading(url)
    except ReadError as exc:
        raise cli_failure(str(exc), code=exc.exit_code) from None
    with store:
        if views:
            from dashboards._views import ensure_views

            ensure_views(store.engine)
        try:
            yield store
        except (StoreError, ValueError) as exc:
            raise cli_failure(f"{exc} in {store.url}") from None


def _check_mlflow(uri: str) -> None:
    """The MLflow pre-flight for ``--mlflow``: one line, exit 2 for a bad URI, 1 for a store
    that cannot be reached or written."""
    from dashboards._preflight import TrackingStoreError, check_tracking_uri

    try:
        check_tracking_uri(uri)
    except TrackingStoreError as exc:
        raise cli_failure(f"--mlflow: {exc}", code=exc.exit_code) from None


# -- results ---------------------------------------------------------------------------------


@results_app.command("top")
def results_top(
    job: JobOption = None,
    task: Annotated[
        str | None, typer.Option("--task", "-t", help="Rank by this task (label or name).")
    ] = None,
    n: Annotated[
        int, typer.Option("-n", help=f"How many architectures (1 to {MAX_ROWS:,}).", min=1, max=MAX_ROWS)
    ] = 10,
    all_jobs: Annotated[
        bool, typer.Option("--all-jobs", help="Rank every job's architectures together.")
    ] = False,
    format: Annotated[
        TopFormat, typer.Option("--format", "-f", help="table, json or csv.")
    ] = TopFormat.table,
    db: DbOption = None,
) -> None:
    """The best architectures of a job: overall score (worst task's relative score), or one task's."""
    from dashboards._queries import job_tasks, top_architectures

    if all_jobs and job is not None:
        raise cli_failure("give --job or --all-jobs, not both", code=2)
    from dashboards._queries import final_baselines, final_seeds

    baselines: dict[str, str] = {}
    seeds: int | None = None
    with _open(db) as store:
        rows = top_architectures(store, job, task=task, limit=n, all_jobs=all_jobs)
        tasks: list[str] = []
        for job_id in dict.fromkeys(r.job_id for r in rows):
            tasks += [t for t in job_tasks(store, job_id) if t not in tasks]
            baselines = final_baselines(store, job_id) | baselines
            seeds = seeds or final_seeds(store, job_id)
    for row in rows:
        tasks += [t for t in row.per_task if t not in tasks]
    if format == TopFormat.json:
        typer.echo(json.dumps([r.to_dict() for r in rows], indent=2))
    elif format == TopFormat.csv:
        import csv

        from dashboards._export import columns, flat_row

        writer = csv.DictWriter(
            sys.stdout, fieldnames=[name for name, _ in columns(tasks)], lineterminator="\n"
        )
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in flat_row(row, tasks).items()})
    else:
        _print_top(rows, tasks, task)
        if any(is_final_task(t) for t in tasks):
            typer.echo(final_legend(baselines, seeds))


@results_app.command("show")
def results_show(
    arch_id: Annotated[
        int, typer.Argument(help="The architecture's id (1 to 2**63 - 1).", min=1, max=MAX_ID)
    ],
    job: Annotated[
        int | None,
        typer.Option("--job", "-j", help="Only this job's results (1 to 2**63 - 1).", min=1, max=MAX_ID),
    ] = None,
    format: Annotated[ShowFormat, typer.Option("--format", "-f", help="table or json.")] = ShowFormat.table,
    dashboard: Annotated[
        str, typer.Option("--dashboard", help="Base URL of `cellsearch dashboard` for run links.")
    ] = f"http://127.0.0.1:{DEFAULT_DASHBOARD_PORT}",
    db: DbOption = None,
) -> None:
    """One architecture: equations, lineage back to its first ancestor, per-task results with the
    best hyperparameters, and its MLflow run."""
    from dashboards._queries import describe_architecture

    with _open(db) as store:
        details = describe_architecture(store, arch_id, job_id=job)
    if format == ShowFormat.json:
        typer.echo(json.dumps(details.to_dict(dashboard), indent=2))
        return
    _print_details(details, dashboard)


@results_app.command("export")
def results_export(
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write: .csv, .parquet or .jsonl.")],
    job: JobOption = None,
    db: DbOption = None,
) -> None:
    """Write every architecture of a job with its per-task results to a file (atomically)."""
    from dashboards._export import ExportError, check_output, export_format, export_job
    from dashboards._queries import resolve_job

    try:
        export_format(output)
    except ExportError as exc:
        raise cli_failure(str(exc), code=2) from None
    try:
        check_output(output)
    except ExportError as exc:
        raise cli_failure(str(exc)) from None
    with _open(db) as store:
        job_id = resolve_job(store, job)
        try:
            count = export_job(store, job_id, output)
        except ExportError as exc:
            raise cli_failure(str(exc)) from None
    typer.echo(f"wrote {count} architectures of job {job_id} to {output}")


@results_app.command("views")
def results_views(db: DbOption = None) -> None:
    """Create (or refresh) the SQL views and print their definitions."""
    from dashboards._views import VIEW_NAMES, view_sql

    with _open(db, views=True):
        pass
    for name in VIEW_NAMES:
        typer.echo(view_sql(name) + ";\n")


@results_app.command("sync-mlflow")
def results_sync_mlflow(
    job: JobOption = None,
    mlflow: MlflowOption = None,
    db: DbOption = None,
) -> None:
    """Log a job's finished architectures to MLflow where they are missing (after an outage)."""
    from dashboards._queries import resolve_job
    from dashboards._tracking import Tracker

    settings = resolve_settings(db_url=db, mlflow_uri=mlflow)
    _check_mlflow(settings.mlflow_uri)
    with _open(db) as store:
        job_id = resolve_job(store, job)
    tracker = Tracker(settings.mlflow_uri, settings.db_url)
    try:
        logged = tracker.sync(job_id)
    except Exception as exc:
        raise cli_failure(f"could not log to MLflow at {settings.mlflow_uri}: {exc}") from None
    typer.echo(f"job {job_id}: {logged} architecture runs logged to {settings.mlflow_uri}")


# -- dashboard and report --------------------------------------------------------------------


def dashboard(
    port: Annotated[int, typer.Option("--port", "-p", help="Port of the MLflow UI.", min=1, max=65535)] = (
        DEFAULT_DASHBOARD_PORT
    ),
    host: Annotated[
        str, typer.Option("--host", help="Interface to bind; 0.0.0.0 exposes the UI to the network.")
    ] = "127.0.0.1",
    mlflow: MlflowOption = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show the server's own logging here, not in its log file.")
    ] = False,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the address in a web browser once the UI answers.")
    ] = False,
) -> None:
    """Start the MLflow UI on the tracking store and print its URL, the latest job's
    architectures, as soon as it answers (Ctrl-C stops it; the command then exits 0)."""
    from dashboards._server import DashboardError, ignore_further_interrupts, serve

    uri = resolve_settings(mlflow_uri=mlflow).mlflow_uri
    if not uri.lower().startswith(("http://", "https://")):
        # A store to serve is checked; a server's URL is only printed (the browser may reach a
        # server this machine cannot).
        _check_mlflow(uri)
    try:
        code = serve(uri, host=host, port=port, echo=typer.echo, verbose=verbose, open_browser=open_browser)
    except DashboardError as exc:
        raise cli_failure(str(exc)) from None
    if not uri.lower().startswith(("http://", "https://")):  # a server ran here and is stopped
        ignore_further_interrupts()
    raise typer.Exit(code)


def report(
    job_id: Annotated[
        int | None,
        typer.Argument(help="The job (1 to 2**63 - 1); default: the latest one.", min=1, max=MAX_ID),
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    top: Annotated[
        int,
        typer.Option(
            "--top",
            help=f"Cells shown with equations and diagrams (1 to {MAX_REPORT_CELLS:,}).",
            min=1,
            max=MAX_REPORT_CELLS,
        ),
    ] = 5,
    db: DbOption = None,
) -> None:
    """Write one self-contained HTML report of a job: plots, the comparison table, the top cells."""
    from dashboards._export import ExportError, check_output
    from dashboards._queries import resolve_job
    from dashboards._report import write_report

    try:
        check_output(output)
    except ExportError as exc:
        raise cli_failure(str(exc)) from None
    with _open(db) as store:
        job = resolve_job(store, job_id)
        try:
            write_report(store, job, output, top=top)
        except ExportError as exc:
            raise cli_failure(str(exc)) from None
    typer.echo(f"wrote the report of job {job} to {output}")


def register(app: typer.Typer) -> None:
    """Add ``results``, ``dashboard`` and ``report`` to the root app."""
    app.add_typer(results_app, name="results")
    app.command("dashboard")(dashboard)
    app.command("report")(report)


# -- printing --------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _name(library_name: str | None, canonical_hash: str) -> str:
    return library_name or canonical_hash[:12]


def _print_top(rows: list[Any], tasks: list[str], by_task: str | None) -> None:
    if not rows:
        typer.echo("no scored architectures yet" + (f" on task {by_task!r}" if by_task else ""))
        return
    multi_job = len({r.job_id for r in rows}) > 1
    table = Table(title="top architectures" + (f" by {by_task}" if by_task else ""), title_justify="left")
    tasks, final_tasks = split_tasks(tasks)
    sizes = {r.parameter_hidden for r in rows}
    params = f"params\nat hidden {next(iter(sizes))}" if len(sizes) == 1 else "params\n(at hidden)"
    headers = ["rank", *(["job"] if multi_job else []), "arch", "name", "score", "gen", params]
    for header in headers:
        table.add_column(header, justify="left" if header == "name" else "right")
    for task in tasks:
        table.add_column(f"{task}\nrelative \\[interval] (value)", justify="right")
    if final_tasks:
        table.add_column("final\nscore \\[interval]", justify="right")
    for task in final_tasks:
        table.add_column(f"{task}\nverdict relative", justify="right")
    for r in rows:
        cells = [str(r.rank), *([str(r.job_id)] if multi_job else []), str(r.arch_id)]
        cells += [
            _name(r.library_name, r.canonical_hash),
            format_estimate(r.score, r.score_interval),
            str(r.generation),
            f"{r.parameter_count:,}" if len(sizes) == 1 else f"{r.parameter_count:,} ({r.parameter_hidden})",
        ]
        for task in tasks:
            result = r.per_task.get(task)
            cells.append(
                "-"
                if result is None
                else f"{format_estimate(result.relative, result.relative_interval)} ({_num(result.value, 4)})"
            )
        if final_tasks:
            cells.append(format_estimate(r.final_score, r.final_interval))
        cells += [final_task_cell(r.per_task, task) for task in final_tasks]
        table.add_row(*cells)
    table_console().print(table)


def _legend(graph: dict[str, Any]) -> str:
    """The line under a cell's equations (``cells.equation_legend``); none for a stored graph
    this version cannot read."""
    from cells import CellGraph, CellsearchError, equation_legend

    try:
        return equation_legend(CellGraph.parse(graph))
    except (CellsearchError, ValueError):
        return ""


def _print_details(details: Any, dashboard: str) -> None:
    console = table_console(highlight=False)
    title = f"architecture {details.arch_id}"
    if details.library_name:
        title += f" ({details.library_name})"
    console.print(f"[bold]{title}[/bold]  hash {details.canonical_hash}")
    console.print(
        f"{details.num_states} state(s), {details.num_nodes} nodes, "
        f"{details.parameter_count:,} parameters per layer at input and hidden size "
        f"{details.parameter_hidden}"
    )
    console.print("\n[bold]equations[/bold]")
    console.print(details.equations or "(not rendered)", markup=False)
    legend = _legend(details.graph)
    if details.equations and legend:
        console.print(legend, markup=False, style="dim")
    console.print("\n[bold]lineage[/bold] (newest first)")
    for step in details.lineage:
        name = f" ({step.library_name})" if step.library_name else ""
        console.print(f"  {step.arch_id}{name}, generation {step.generation}: {step.origin}", markup=False)
    if not details.jobs:
        console.print("\nnot part of any job")
    for job in details.jobs:
        rank = f", rank {job.rank}" if job.rank else ""
        state = "listed" if job.listed else ("filtered out" if job.filter_passed is False else "")
        console.print(
            f"\n[bold]job {job.job_id}[/bold] {job.job_name}: "
            f"score {format_estimate(job.score, job.score_interval)}{rank}" + (f", {state}" if state else ""),
            markup=True,
        )
        table = Table(show_edge=False)
        for header in ("task", "metric", "best", "relative", "trials", "status"):
            table.add_column(header)
        for t in job.tasks:
            r = t.result
            if r.final:
                continue
            table.add_row(
                r.task,
                r.metric,
                format_estimate(r.value, r.value_interval, 4),
                format_estimate(r.relative, r.relative_interval),
                str(r.trials),
                r.status,
            )
        console.print(table)
        _print_final_round(console, job)
        for t in job.tasks:
            if t.best_hparams and not t.result.final:
                hparams = ", ".join(f"{k}={_short(v)}" for k, v in t.best_hparams.items() if v is not None)
                console.print(f"  best hyperparameters on {t.result.task}: {hparams}", markup=False)
    if details.runs:
        console.print("\n[bold]MLflow[/bold]")
        for run in details.runs:
            console.print(f"  job {run.job_id}: run {run.run_id} in {run.tracking_uri}", markup=False)
            console.print(f"  {run.url(dashboard)}", markup=False)
            if not run.url(None).startswith("http"):
                console.print(
                    f"  (start the UI with `cellsearch dashboard --mlflow {run.tracking_uri}`)", markup=False
                )


def _print_final_round(console: Console, job: Any) -> None:
    """The final round's block of one job: per task the seed mean on test, its value relative
    to the best baseline and the verdict in words (``docs/final-round.md``)."""
    finals = [t.result for t in job.tasks if t.result.final]
    if not finals:
        return
    seeds = f"{job.final_seeds} seeds" if job.final_seeds else "its seeds"
    console.print(
        f"\n[bold]final round[/bold] (test split, mean over {seeds}): "
        f"final score {format_estimate(job.final_score, job.final_interval)}"
    )
    table = Table(show_edge=False)
    for header in ("task", "mean \\[interval]", "relative \\[interval]", "verdict"):
        table.add_column(header)
    baselines = job.final_baselines or {}
    for r in finals:
        task = search_task_of(r.task)
        table.add_row(
            task,
            format_estimate(r.mean, r.value_interval, 4),
            format_estimate(r.relative, r.relative_interval),
            verdict_words(r.verdict, r.p_value, baselines.get(r.task, "the baseline"), task),
        )
    console.print(table)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
