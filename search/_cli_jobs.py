"""``cellsearch launch`` and ``cellsearch resume``: run a job with a live progress display.

Exit codes: 0 the job finished; 1 it failed, or nothing was scored (the reason is printed), or
the database or the cluster could not be used (no node can run a trial); 2 the job file, the
database URL or the MLflow URI is invalid; 130 it was interrupted with Ctrl-C (resume it with
``cellsearch resume JOB_ID``). Whenever the exit code is 1 or 2 before the job starts, nothing
was written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cells import CellsearchError, cli_failure, clip, table_console
from search._ids import ID_MAX
from search._intervals import format_estimate
from search._jobspec import JobError, JobSpec
from search._library_logs import configure_library_logs
from search._preflight import check_db_url, load_job
from search._progress import ProgressDisplay, ProgressFeed
from search._progress_lines import DEFAULT_EVERY, ProgressLines, check_every
from search._settings import ENV_DB_URL, ENV_MLFLOW_URI, Settings, resolve_settings
from search._states import JobState

if TYPE_CHECKING:
    from search._leaderboard import RankedArchitecture
    from search._result_store import ResultStore

TOP_ROWS = 10
EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 1, 2, 130

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Results database URL (else the job's db_url, CELLSEARCH_DB_URL, sqlite:///cellsearch.db).",
    ),
]
MlflowOption = Annotated[
    str | None,
    typer.Option("--mlflow", help="MLflow tracking URI (else MLFLOW_TRACKING_URI, sqlite:///mlflow.db)."),
]
NoMlflowOption = Annotated[
    bool,
    typer.Option("--no-mlflow", help="Do not track the job in MLflow (results still go to the database)."),
]
RayOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address", help="Ray cluster to join (else RAY_ADDRESS; none: start a local instance)."
    ),
]
ProgressEveryOption = Annotated[
    float,
    typer.Option(
        "--progress-every",
        help="Seconds between two progress lines, 1 to 3600, when stderr is not a terminal "
        "(a pipe, a log file, CI); a terminal shows the live view instead.",
    ),
]
VerboseOption = Annotated[
    bool,
    typer.Option("--verbose", help="Show Ray's and MLflow's own start-up logs and the Ray workers' output."),
]


JobTracker = Callable[[Settings, ProgressFeed], AbstractContextManager[object]]
"""Follows a running job (for example in MLflow) by reading its progress feed; entered around the
run. The command line's composition root supplies it, so that this package depends on no tracker."""

TrackingCheck = Callable[[str], None]
"""Checks, writing nothing, that the tracker can use the store at a URI; raises a
:class:`cells.CellsearchError` saying why not. Supplied with the tracker."""


class _JobCommands:
    """``launch`` and ``resume``, each job followed by ``track`` unless ``--no-mlflow`` is given."""

    def __init__(
        self, track: JobTracker | None, check_tracking: TrackingCheck | None, tracker_loggers: Sequence[str]
    ) -> None:
        self._track = track
        self._check_tracking = check_tracking
        self._tracker_loggers = tuple(tracker_loggers)

    def _output(self, progress_every: float, verbose: bool) -> _Output:
        """The progress interval checked (exit 2, one line), and the libraries' logs set."""
        problem = check_every(progress_every)
        if problem:
            raise cli_failure(f"--progress-every: {problem}", EXIT_INVALID)
        configure_library_logs(verbose, self._tracker_loggers)
        return _Output(progress_every)

    def launch(
        self,
        job_file: Annotated[Path, typer.Argument(help="The job file (YAML).", dir_okay=False)],
        db: DbOption = None,
        mlflow: MlflowOption = None,
        ray_address: RayOption = None,
        no_mlflow: NoMlflowOption = False,
        progress_every: ProgressEveryOption = DEFAULT_EVERY,
        verbose: VerboseOption = False,
    ) -> None:
        """Launch a job: validate it, run it on Ray, show progress, print the best architectures.

        On a terminal the progress is a live view; otherwise (a pipe, a log) a plain line every
        --progress-every seconds and a last one, then the table."""
        output = self._output(progress_every, verbose)
        try:
            spec = load_job(job_file)
            settings = resolve_settings(
                db_url=db or spec.db_url, mlflow_uri=mlflow or spec.mlflow_uri, ray_address=ray_address
            )
            check_db_url(settings.db_url, field=_source("--db", db, "db_url", spec.db_url, ENV_DB_URL))
        except JobError as exc:
            raise cli_failure(f"invalid job: {exc}", EXIT_INVALID) from None
        tracker = None if no_mlflow else self._track
        if tracker is not None:
            self._preflight_tracking(
                settings, _source("--mlflow", mlflow, "mlflow_uri", spec.mlflow_uri, ENV_MLFLOW_URI)
            )
        _run(spec, settings, job_id=None, tracker=tracker, output=output)

    def resume(
        self,
        job_id: Annotated[int, typer.Argument(help="The job to continue.", min=1, max=ID_MAX)],
        db: DbOption = None,
        mlflow: MlflowOption = None,
        ray_address: RayOption = None,
        no_mlflow: NoMlflowOption = False,
        progress_every: ProgressEveryOption = DEFAULT_EVERY,
        verbose: VerboseOption = False,
    ) -> None:
        """Continue a job that was interrupted or crashed; finished trials are kept, not run again.
        A job that another process is still running is refused. Progress is shown as by launch."""
        output = self._output(progress_every, verbose)
        from search._result_store import ResultStore  # SQLAlchemy and Alembic: not for --help
        from search._store_errors import StoreError

        settings = resolve_settings(db_url=db, mlflow_uri=mlflow, ray_address=ray_address)
        tracker = None if no_mlflow else self._track
        if tracker is not None:  # the options first, then the job's state
            self._preflight_tracking(
                settings, _source("--mlflow", mlflow, "mlflow_uri", None, ENV_MLFLOW_URI)
            )
        try:
            with ResultStore.open(settings.db_url, upgrade=False, create=False) as store:
                if store.get_job(job_id).state == JobState.FINISHED:  # before Ray is even loaded
                    raise cli_failure(f"job {job_id} is already finished; nothing to resume")
                spec = store.load_job_spec(job_id)
        except (StoreError, JobError) as exc:
            raise cli_failure(str(exc)) from None
        _run(spec, settings, job_id=job_id, tracker=tracker, output=output)

    def _preflight_tracking(self, settings: Settings, field: str) -> None:
        if self._check_tracking is None:
            return
        try:
            self._check_tracking(settings.mlflow_uri)
        except CellsearchError as exc:  # exit 2: a bad URI; 1: a store that cannot take runs
            code = getattr(exc, "exit_code", EXIT_INVALID)
            raise cli_failure(f"{field}: {exc} (or run with --no-mlflow)", code) from None


def register(
    app: typer.Typer,
    track: JobTracker | None = None,
    check_tracking: TrackingCheck | None = None,
    tracker_loggers: Sequence[str] = (),
) -> None:
    """Add ``launch`` and ``resume`` to the root app; ``track`` follows each job they run, once
    ``check_tracking`` has accepted its store. ``tracker_loggers``: the tracker's libraries'
    loggers, held at ``WARNING`` unless ``--verbose`` (its store's start-up lines)."""
    commands = _JobCommands(track, check_tracking, tracker_loggers)
    app.command("launch")(commands.launch)
    app.command("resume")(commands.resume)


def _source(option: str, given: str | None, field: str, in_job: str | None, env: str) -> str:
    """Where a location came from, to name it in a message: the option, the job's field, the
    environment variable, or the default."""
    if given:
        return option
    if in_job:
        return field
    return env if os.environ.get(env) else f"{field} (the default)"


@dataclass(frozen=True)
class _Output:
    """How a running job reports: plain progress lines every ``progress_every`` seconds when
    stderr is not a terminal."""

    progress_every: float = DEFAULT_EVERY


def _run(
    spec: JobSpec, settings: Settings, job_id: int | None, tracker: JobTracker | None, output: _Output
) -> None:
    from search._cluster_fit import ray_address_problem

    problem = ray_address_problem(settings.ray_address)
    if problem:
        raise cli_failure(f"--ray-address: {problem}", EXIT_INVALID)
    from search._cluster_fit import ClusterFitError
    from search._driver import JobStateError, run_job  # Ray and Optuna load only for these commands
    from search._result_store import ResultStore
    from search._store_errors import StoreError

    console, errors = table_console(), Console(stderr=True)
    feed = ProgressFeed(job_name=spec.name)
    feed.subscribe(lambda event, data: _warn(errors, event, data))
    lines = ProgressLines(feed, errors.file, every=output.progress_every, enabled=not errors.is_terminal)
    try:
        tracking = nullcontext() if tracker is None else tracker(settings, feed)
        with ProgressDisplay(feed, console=errors), lines, tracking:
            job_id = run_job(spec, settings, job_id=job_id, resume=job_id is not None, progress=feed)
    except (StoreError, JobStateError, ClusterFitError) as exc:
        raise cli_failure(str(exc)) from None
    with ResultStore.open(settings.db_url, upgrade=False, create=False) as store:
        job = store.get_job(job_id)
        state, error = job.state, job.error
        _print_top(console, store, job_id, spec)
    if state == JobState.INTERRUPTED:
        console.print(f"job {job_id} interrupted; continue it with: cellsearch resume {job_id}")
        raise typer.Exit(EXIT_INTERRUPTED)
    if state != JobState.FINISHED:
        reason = f": {error}" if error else ""
        raise cli_failure(f"job {job_id} ended {state}{reason}")
    console.print(f"job {job_id} finished")


def _warn(console: Console, event: str, data: dict[str, Any]) -> None:
    """A driver's warning, above the live view (or as a plain line when not on a terminal)."""
    if event == "warning":
        console.print(
            f"warning: {data['message']}", style="bold yellow", markup=False, highlight=False, soft_wrap=True
        )


def _print_top(console: Console, store: ResultStore, job_id: int, spec: JobSpec) -> None:
    """The leaderboard: rank, architecture, score, what it is, and its value relative to the best
    baseline on each scored or reported task."""
    from search._final_board import (
        final_baselines,
        final_legend,
        final_seeds,
        final_task_cell,
        final_tasks_of,
    )

    leaders = store.top_architectures(job_id, TOP_ROWS, final_first=True)
    if not leaders:
        console.print(f"job {job_id}: no architecture scored yet")
        return
    labels = [t.id for t in spec.tasks if t.role != "filter"]
    table = Table(title=f"job {job_id}: top architectures (score = worst task relative to the best baseline)")
    for column in ("rank", "arch", "score", "cell"):
        table.add_column(column, justify="left" if column == "cell" else "right")
    for label in labels:
        table.add_column(label, justify="right")
    final_tasks = final_tasks_of(leaders)
    if final_tasks:
        table.add_column("final", justify="right")
    for label in final_tasks:
        table.add_column(f"{label}\nverdict relative", justify="right")
    for entry in leaders:
        cell = entry.library_name or _short(entry.mutation) or entry.canonical_hash
        row = [
            str(entry.rank),
            str(entry.arch_id),
            format_estimate(entry.score, entry.score_interval, 4),
            cell,
        ]
        row += [_relative(entry, label) for label in labels]
        if final_tasks:
            row.append(format_estimate(entry.final_score, entry.final_interval, 4))
        row += [final_task_cell(entry.per_task, label) for label in final_tasks]
        table.add_row(*row)
    console.print(table)
    if final_tasks:
        console.print(final_legend(final_baselines(store, job_id), final_seeds(store, job_id)), markup=False)
    best = leaders[0]
    if best.equations:
        from cells import CellGraph, equation_legend

        console.print(f"best architecture {best.arch_id}:\n{best.equations}", markup=False)
        console.print(equation_legend(CellGraph.parse(best.graph)), markup=False)


def _relative(entry: RankedArchitecture, label: str) -> str:
    """The task's relative score and its interval (``docs/uncertainty.md``), ``-`` without one."""
    result = entry.per_task.get(label)
    return "-" if result is None else format_estimate(result.relative, result.relative_interval, 4)


def _short(text: str | None, width: int = 60) -> str | None:
    if not text:
        return None
    return clip(text, width)
