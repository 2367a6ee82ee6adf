"""The ``cellsearch`` command: every package's commands mounted on one Typer app.

This is the composition root: each package defines its commands and knows nothing of the
others' (``cells`` cannot see the workers that ``cells eval`` needs, ``search`` cannot see the
MLflow tracker of ``dashboards``); here they are put together. Heavy packages (torch, Ray,
MLflow, Optuna) are imported only inside the commands that use them, so reading commands and
``--help`` start quickly.

Example:
    >>> from typer.main import get_command
    >>> sorted(get_command(app).commands)
    ['cells', 'dashboard', 'data', 'db', 'job', 'launch', 'report', 'results', 'resume', 'status']
    >>> "eval" in get_command(app).commands["cells"].commands
    True
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import typer

from cells import OneLineErrors
from cells._cli import cells_app
from dashboards import _cli as dashboards_cli
from search import _cli_job_schema, _cli_jobs, _cli_status
from workers._cli import data_app, eval_cell

if TYPE_CHECKING:
    from search import ProgressFeed, Settings

app = typer.Typer(
    cls=OneLineErrors,
    help="cellsearch: distributed architecture search for recurrent cells.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def track_in_mlflow(settings: Settings, feed: ProgressFeed) -> AbstractContextManager[object]:
    """MLflow tracking of a job, off the driver's hot path: it reads the same progress feed as the
    display, so the two never disagree."""
    from dashboards import track_job  # MLflow loads only when a job is tracked

    return track_job(settings, feed)


MLFLOW_LOGGERS = ("mlflow.store", "mlflow.tracking", "alembic.runtime.migration")
"""MLflow's loggers of its store's start-up (the table creation and its migrations), held at
``WARNING`` while a job runs unless ``--verbose``."""


def check_mlflow(uri: str) -> None:
    """Refuse, before a job writes anything, an MLflow store the tracker could not use."""
    from dashboards import check_tracking_uri

    check_tracking_uri(uri)


cells_app.command("eval")(eval_cell)
app.add_typer(cells_app, name="cells")
app.add_typer(data_app, name="data")
_cli_status.register(app)
_cli_job_schema.register(app)
_cli_jobs.register(app, track=track_in_mlflow, check_tracking=check_mlflow, tracker_loggers=MLFLOW_LOGGERS)
dashboards_cli.register(app)


def main() -> None:
    """Entry point of the ``cellsearch`` script (and of ``python -m cellsearch``)."""
    app(prog_name="cellsearch")
