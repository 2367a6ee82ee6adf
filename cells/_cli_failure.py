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

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup


def cli_failure(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` to stderr; return the ``typer.Exit(code)`` for the caller to raise
    (``raise cli_failure(...) from None``, so that the traceback of the cause is not shown)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


class OneLineErrors(TyperGroup):
    """The root command group whose usage errors read like every other refusal: one line
    ``error: cellsearch status: Invalid value for 'job_id': ... (see --help)`` and exit 2, instead
    of Click's usage block. Give it to the root app (``typer.Typer(cls=OneLineErrors)``); it
    catches the errors of every subcommand, since only the root's ``main`` runs."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        except typer.TyperException as exc:  # Click's usage errors, vendored by Typer
            line = _one_line(exc)
            if line:  # empty after a bare group name: its help was shown instead
                typer.echo(f"error: {line}", err=True)
            sys.exit(getattr(exc, "exit_code", 2))
        sys.exit(code if isinstance(code, int) else 0)


def _one_line(exc: typer.TyperException) -> str:
    text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    message = "; ".join(line.strip() for line in text.splitlines() if line.strip())
    ctx = getattr(exc, "ctx", None)
    if ctx is None or not message:
        return message
    return f"{ctx.command_path}: {message.rstrip('.')} (see {ctx.command_path} --help)"
