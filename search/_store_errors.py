"""The results database's errors: each says what the user can do about it.

Example:
    >>> from cells import CellsearchError
    >>> issubclass(UnknownJobError, CellsearchError) and issubclass(UnknownJobError, KeyError)
    True
    >>> str(UnknownJobError("unknown job 7"))  # not KeyError's quoted repr
    'unknown job 7'
"""

from __future__ import annotations

from cells import CellsearchError


class StoreError(CellsearchError, RuntimeError):
    """A results-database problem the user can act on; the message says what to do."""


class DatabaseURLError(StoreError):
    """The database URL itself cannot name a results database (not a URL, in memory): a usage error."""


class NoDatabaseError(StoreError):
    """There are no cellsearch results at the URL (and the caller asked not to create them)."""


class DatabaseRevisionError(StoreError):
    """The database's schema revision does not match the code's (older, newer or foreign)."""


class _UnknownKey(StoreError, KeyError):
    """A lookup that found nothing; prints its message, not ``KeyError``'s quoted repr."""

    what = "key"

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else f"unknown {self.what}"


class UnknownJobError(_UnknownKey):
    """No job with that id."""

    what = "job"


class UnknownTaskError(_UnknownKey):
    """The job has no task by that name or label."""

    what = "task"


class UnknownArchitectureError(_UnknownKey):
    """No architecture with that id."""

    what = "architecture"
