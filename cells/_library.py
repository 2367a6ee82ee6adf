"""The library of known cells, shipped as JSON graphs in ``cells/library``.

Example:
    >>> from cells import library
    >>> "lstm" in library.names()
    True
    >>> library.get("gru").num_states
    1
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from cells._graph import CellGraph, CellGraphError

_DIR = Path(__file__).parent / "library"


@cache
def names() -> tuple[str, ...]:
    """Names of the library cells, sorted."""
    return tuple(sorted(p.stem for p in _DIR.glob("*.json")))


@cache
def get(name: str) -> CellGraph:
    """The library cell called ``name``; unknown names raise :class:`KeyError` listing the known ones."""
    path = _DIR / f"{name}.json"
    if name not in names():
        raise KeyError(f"unknown library cell {name!r} (known: {', '.join(names())})")
    return CellGraph.load(path)


def resolve(name_or_file: str | Path) -> CellGraph:
    """A library cell by name, or a cell graph from a JSON file path (read as
    :meth:`CellGraph.load` does: a regular, size-capped UTF-8 file of strict JSON)."""
    text = str(name_or_file)
    if text in names():
        return get(text)
    path = Path(text)
    # lexists: a FIFO, a device or a broken link is named as what it is by CellGraph.load
    # (which never opens anything but a regular file), not as an unknown cell name.
    if text and os.path.lexists(text):
        return CellGraph.load(path)
    raise CellGraphError(
        f"{text!r} is neither a library cell ({', '.join(names())}) nor a readable JSON file"
    )
