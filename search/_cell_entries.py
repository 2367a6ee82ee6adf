"""Cell entries of a job file: a library cell's name, or a cell JSON file.

Example:
    >>> check_cells(["gru"], base_dir=None), resolve_cell_entry("gru")[0]
    (['gru'], 'gru')
"""

from __future__ import annotations

from pathlib import Path

from cells import CellGraph, CellGraphError
from cells import library as cell_library
from search._job_errors import ErrorList, job_field_error


def check_cells(cells: list[str], base_dir: str | Path | None) -> list[str]:
    """Each entry must be a library cell or a readable cell JSON file; files become absolute
    (relative ones are read from ``base_dir`` when there, else from the working folder)."""
    normalized: list[str] = []
    errors: ErrorList = []
    for i, entry in enumerate(cells):
        if entry in cell_library.names():
            normalized.append(entry)
            continue
        path = Path(entry)
        if not path.is_absolute() and base_dir is not None and (Path(base_dir) / path).is_file():
            path = Path(base_dir) / path
        try:
            CellGraph.load(path) if path.is_file() else cell_library.resolve(entry)
        except (CellGraphError, OSError) as exc:
            errors.append(((i,), str(exc)))
            continue
        normalized.append(str(path.resolve()))
    if errors:
        raise job_field_error(errors)
    return normalized


def resolve_cell_entry(entry: str) -> tuple[str | None, CellGraph]:
    """``(library name or None, graph)`` of a checked entry."""
    if entry in cell_library.names():
        return entry, cell_library.get(entry)
    return None, CellGraph.load(entry)
