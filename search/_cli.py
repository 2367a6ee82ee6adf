"""The ``cellsearch`` command line: one Typer app assembling every package's commands."""

from __future__ import annotations

import typer

from cells._cli import cells_app
from dashboards import _cli as _cli_dashboards
from search import _cli_jobs, _cli_status
from workers._cli import data_app, register_cell_commands

app = typer.Typer(
    help="cellsearch: distributed architecture search for recurrent cells.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
register_cell_commands(cells_app)
app.add_typer(cells_app, name="cells")
app.add_typer(data_app, name="data")
_cli_status.register(app)
_cli_jobs.register(app)
_cli_dashboards.register(app)


def main() -> None:
    """Entry point of the ``cellsearch`` script."""
    app()
