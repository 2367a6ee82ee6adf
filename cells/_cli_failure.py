"""How every ``cellsearch`` command fails: one line ``error: ...`` on stderr and an exit code.

Each package's commands raise the :class:`typer.Exit` this returns, so that a refusal reads
the same whichever command it comes from (1: the input or the database could not be used,
2: bad usage).

Example:
    >>> failure = cli_failure("no such job", code=2)  # prints "error: no such job" to stderr
    >>> failure.exit_code
    2
"""

from __future__ import annotations

import typer


def cli_failure(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` to stderr; return the ``typer.Exit(code)`` for the caller to raise
    (``raise cli_failure(...) from None``, so that the traceback of the cause is not shown)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)
