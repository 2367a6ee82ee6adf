"""``cellsearch data ...`` and ``cellsearch cells eval`` (being built)."""

from __future__ import annotations

import typer

data_app = typer.Typer(help="Fetch the public data sets of the paper's tasks.", no_args_is_help=True)


def register_cell_commands(cells_app: typer.Typer) -> None:
    """Add ``cells eval`` to the ``cells`` command group (it needs the workers)."""
