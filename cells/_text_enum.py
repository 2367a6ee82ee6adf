"""The base of the project's fixed vocabularies (directions, trial, job and stage states).

Example:
    >>> class Color(TextEnum):
    ...     RED = "red"
    >>> Color.RED == "red", repr(Color.RED), f"{Color.RED}"
    (True, "'red'", 'red')
"""

from __future__ import annotations

from enum import StrEnum


class TextEnum(StrEnum):
    """A ``StrEnum`` whose members also *read* as the strings they equal: stored, printed and
    logged as the word itself, so the database, JSON output and messages never change."""

    def __repr__(self) -> str:
        return repr(self.value)
