"""How an architecture came to be, in words: a mutant of its parent, a random cell, a
library cell or a cell from a file (what ``results show``, the report and MLflow say).

A random cell has no parent and no library name; the book records its origin in the
architecture's ``mutation`` field (:func:`random_origin`), so it never reads as a seed cell.

Example:
    >>> origin_text("lstm", None, None)
    'library cell lstm'
    >>> origin_text(None, None, random_origin(job_id=1, seed=0))
    'random cell (job 1, seed 0)'
    >>> origin_text(None, 3, "rewired 'r' input 1 from 'h' to 'x'")
    "mutated: rewired 'r' input 1 from 'h' to 'x'"
"""

from __future__ import annotations

RANDOM_ORIGIN = "random cell"
"""How the ``mutation`` field of a random cell begins."""


def random_origin(job_id: int, seed: int) -> str:
    """The ``mutation`` field of a random cell the job drew (its strategy is seeded by the job's seed)."""
    return f"{RANDOM_ORIGIN} (job {job_id}, seed {seed})"


def origin_text(library_name: str | None, parent_id: int | None, mutation: str | None) -> str:
    """One line: ``mutated: ...`` for a mutant, the random cell's origin, ``library cell NAME``,
    or ``cell from a file`` (a seed cell or baseline given as a JSON file)."""
    if mutation and mutation.startswith(RANDOM_ORIGIN) and parent_id is None:
        return mutation
    if mutation:
        return f"mutated: {mutation}" + ("" if parent_id is not None else " (its parent is gone)")
    if library_name:
        return f"library cell {library_name}"
    return "cell from a file"
