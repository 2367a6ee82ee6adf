"""``cellsearch cells ...`` commands (being built)."""

from __future__ import annotations

import typer

cells_app = typer.Typer(help="Browse, render and import cell graphs.", no_args_is_help=True)
