"""The console the commands print their tables on.

On a terminal a table fits the window. Piped or logged (``| tee``, CI, ``nohup``), rich would
assume 80 columns and wrap every wide cell over several lines; a log has no width, so a table
there is as wide as its content needs, up to ``COLUMNS`` when that is set, else
:data:`PIPED_WIDTH`.

Example:
    >>> import io, os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"COLUMNS": ""}):
    ...     table_console(file=io.StringIO()).width
    200
    >>> with mock.patch.dict(os.environ, {"COLUMNS": "132"}):
    ...     table_console(file=io.StringIO()).width
    132
"""

from __future__ import annotations

import os
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["PIPED_WIDTH", "table_console"]

PIPED_WIDTH = 200
"""Columns of a table that is not printed on a terminal (and no ``COLUMNS`` says otherwise)."""


def table_console(stderr: bool = False, file: IO[str] | None = None, **options: Any) -> Console:
    """A rich ``Console`` on stdout (or stderr, or ``file``) for tables: the terminal's width on
    a terminal, else ``COLUMNS`` or :data:`PIPED_WIDTH`."""
    from rich.console import Console

    console = Console(stderr=stderr, file=file, **options)
    if not console.is_terminal and "width" not in options:
        columns = os.environ.get("COLUMNS", "")
        console.width = int(columns) if columns.isdigit() and int(columns) > 0 else PIPED_WIDTH
    return console
