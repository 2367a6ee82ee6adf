"""``cellsearch status`` and ``cellsearch db upgrade``: read a job's progress, migrate the database.

Errors print one line to stderr and exit with code 1; ``status`` never creates or
migrates a database.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from cells import cli_failure as _fail
from cells import table_console
from search._ids import ID_MAX
from search._intervals import format_estimate
from search._settings import ENV_DB_URL, resolve_settings

if TYPE_CHECKING:
    from search._leaderboard import RankedArchitecture
    from search._records import JobSummary

db_app = typer.Typer(help="Manage the results database.", no_args_is_help=True)

LEADERBOARD_ROWS = 5
"""Architectures shown under a job's status table."""


class StatusFormat(StrEnum):
    table = "table"
    json = "json"


DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Results database URL (else CELLSEARCH_DB_URL, else sqlite:///cellsearch.db)."),
]


def status(
    job_id: Annotated[
        int | None, typer.Argument(help="The job; default: the latest one.", min=1, max=ID_MAX)
    ] = None,
    db: DbOption = None,
    format: Annotated[
        StatusFormat, typer.Option("--format", "-f", help="table or json.")
    ] = StatusFormat.table,
    all_jobs: Annotated[bool, typer.Option("--all", help="Every job (a list), oldest first.")] = False,
) -> None:
    """Show a job's progress: architectures, trials by status and the best architecture so far."""
    from search._result_store import ResultStore  # SQLAlchemy and Alembic: not for --help
    from search._store_errors import DatabaseURLError, StoreError

    url = resolve_settings(db_url=db).db_url
    try:
        where = "--db" if db else ENV_DB_URL if os.environ.get(ENV_DB_URL) else None
        store = ResultStore.open(url, upgrade=False, create=False, option=where)  # reads only until it passes
    except DatabaseURLError as exc:
        raise _fail(str(exc), code=2) from None
    except StoreError as exc:
        raise _fail(str(exc)) from None
    with store:
        try:
            if all_jobs:
                if job_id is not None:
                    raise _fail("give a JOB_ID or --all, not both", code=2)
                summaries = [store.job_summary(job.id) for job in store.list_jobs()]
                _print_all(summaries, format)
                return
            if job_id is None:
                job_id = store.latest_job_id()
                if job_id is None:
                    raise _fail(f"no jobs in {store.url} yet (start one with `cellsearch launch JOB.yaml`)")
            summary = store.job_summary(job_id)
            leaders = store.top_architectures(job_id, LEADERBOARD_ROWS, final_first=True)
        except StoreError as exc:
            raise _fail(f"{exc} in {store.url}") from None
    if format == StatusFormat.json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        _print_job(summary, leaders)


def db_upgrade(db: DbOption = None) -> None:
    """Create the results schema, or migrate it to this version of cellsearch."""
    from search._job_errors import JobError
    from search._preflight import check_db_url
    from search._schema import upgrade_database
    from search._store_errors import StoreError

    url = resolve_settings(db_url=db).db_url
    try:
        check_db_url(url, field="--db" if db else "db_url")  # a file SQLite can use, not in memory
    except JobError as exc:
        raise _fail(str(exc), code=2) from None
    try:
        before, after = upgrade_database(url)
    except StoreError as exc:
        raise _fail(str(exc)) from None
    if before is None:
        typer.echo(f"created the results schema at revision {after}")
    elif before == after:
        typer.echo(f"already at revision {after}")
    else:
        typer.echo(f"upgraded from revision {before} to {after}")


def register(app: typer.Typer) -> None:
    """Add ``status`` and the ``db`` group to the root app."""
    app.command("status")(status)
    db_app.command("upgrade")(db_upgrade)
    app.add_typer(db_app, name="db")


# -- printing --------------------------------------------------------------------------------


def _print_job(summary: JobSummary, leaders: list[RankedArchitecture]) -> None:
    data: dict[str, Any] = summary.to_dict()
    stages, trials = data["architecture_stages"], data["trials"]
    table = Table(title=f"job {summary.job_id}: {summary.name}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("state", summary.state)
    table.add_row("created", data["created_at"] or "-")
    table.add_row("started", data["started_at"] or "-")
    table.add_row("finished", data["finished_at"] or "-")
    if summary.error:
        table.add_row("error", summary.error)
    table.add_row(
        "architectures",
        f"{stages['proposed']} proposed, {stages['passed_filter']} passed the filter, "
        f"{stages['filtered_out']} filtered out, {stages['evaluated']} evaluated",
    )
    table.add_row(
        "trials",
        f"{trials['completed']} completed, {trials['running']} running, {trials['pruned']} pruned, "
        f"{trials['failed']} failed, {trials['diverged']} diverged, {trials['interrupted']} interrupted",
    )
    best = data["best"]
    table.add_row(
        "best",
        "-"
        if best is None
        else f"architecture {best['arch_id']}, score "
        f"{format_estimate(best['score'], summary.best_score_interval, 4)}",
    )
    console = table_console()
    console.print(table)
    if leaders:
        board = Table(title="top architectures", title_justify="left")
        final = any(e.final_score is not None for e in leaders)  # the job had a final round
        columns = ("rank", "arch", "name", "score", *(("final",) if final else ()), "generation", "states")
        for column in (*columns, "nodes"):
            board.add_column(column, justify="right" if column != "name" else "left")
        for e in leaders:
            board.add_row(
                str(e.rank),
                str(e.arch_id),
                e.library_name or e.canonical_hash,
                format_estimate(e.score, e.score_interval, 4),
                *((format_estimate(e.final_score, e.final_interval, 4),) if final else ()),
                str(e.generation),
                str(e.num_states),
                str(e.num_nodes),
            )
        console.print(board)


def _print_all(summaries: list[JobSummary], format: StatusFormat) -> None:
    if format == StatusFormat.json:
        typer.echo(json.dumps([s.to_dict() for s in summaries], indent=2))
        return
    table = Table(title="jobs", title_justify="left")
    for column in (
        "job",
        "name",
        "state",
        "architectures",
        "trials ok",
        "running",
        "failed",
        "best",
        "score",
    ):
        table.add_column(column)
    for s in summaries:
        table.add_row(
            str(s.job_id),
            s.name,
            s.state,
            str(s.architectures.proposed),
            str(s.trials.completed),
            str(s.trials.running),
            str(s.trials.failed),
            "-" if s.best_arch_id is None else str(s.best_arch_id),
            format_estimate(s.best_score, s.best_score_interval, 4),
        )
    table_console().print(table)
