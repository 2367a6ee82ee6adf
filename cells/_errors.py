"""The root of every error cellsearch raises on purpose.

Each package's own errors derive from :class:`CellsearchError` (and, where it helps a
caller, from the built-in they stand for, such as ``ValueError`` for bad input), so that
one ``except CellsearchError`` catches a refusal of the tool and lets a bug through.

Example:
    >>> from cells import CellGraphError, CellsearchError
    >>> issubclass(CellGraphError, CellsearchError), issubclass(CellGraphError, ValueError)
    (True, True)
"""

from __future__ import annotations


class CellsearchError(Exception):
    """An error cellsearch raises on purpose: bad input, a missing resource, a refused state."""
