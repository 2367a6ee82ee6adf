"""The refusals of the dashboards' commands: a usage error (exit 2) or a runtime one (exit 1)."""

from __future__ import annotations

from cells import CellsearchError


class CommandError(CellsearchError, ValueError):
    """A refusal with a one-line message; ``usage``: the option itself is wrong (exit 2), else
    what it names cannot be used (exit 1)."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage

    @property
    def exit_code(self) -> int:
        return 2 if self.usage else 1
