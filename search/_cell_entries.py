"""Cell entries of a job file: a library cell's name, or a cell JSON file.

A file is read as a user's file (a regular file of at most :data:`MAX_CELL_FILE_BYTES`
bytes, UTF-8, strict JSON: no repeated keys, no ``NaN``) and checked as a graph, hash
included, when the job is validated; a problem is named with the entry's index and the file
(``seed_cells.1: /jobs/x.json: ...``).

Example:
    >>> check_cells(["gru"], base_dir=None), resolve_cell_entry("gru")[0]
    (['gru'], 'gru')
    >>> read_cell_file("/dev/zero")
    Traceback (most recent call last):
    ...
    cells._user_files.UserFileError: /dev/zero: the cell file is not a regular file (it is a character device)
"""

from __future__ import annotations

import os
from pathlib import Path

from cells import CellGraph, CellsearchError, canonical_hash, load_strict_json, read_text_file
from cells import library as cell_library
from search._job_errors import ErrorList, job_field_error

MAX_CELL_FILE_BYTES = 1_000_000
"""The largest cell JSON file a job may name (a cell of 30 nodes takes about 2 kB)."""

MAX_CELL_ENTRIES = 1000
"""The most entries of a cell list in a job (``seed_cells``, ``baselines``, ``cells``)."""


def check_cells(cells: list[str], base_dir: str | Path | None) -> list[str]:
    """Each entry must be a library cell or a readable cell JSON file; files become absolute
    (relative ones are read from ``base_dir`` when there, else from the working folder)."""
    normalized: list[str] = []
    errors: ErrorList = []
    for i, entry in enumerate(cells):
        if entry in cell_library.names():
            normalized.append(entry)
            continue
        path = _locate(entry, base_dir)
        if not os.path.lexists(path):
            known = ", ".join(cell_library.names())
            shown = repr(entry) if len(entry) <= 100 else repr(entry[:100]) + "..."
            errors.append(((i,), f"expected a library cell ({known}) or a cell JSON file, got {shown}"))
            continue
        try:
            canonical_hash(read_cell_file(path))  # a graph too large to hash fails here, not in the run
        except RecursionError:
            errors.append(((i,), f"{path}: the cell is too large to process"))
            continue
        except (CellsearchError, OSError, UnicodeDecodeError, ValueError) as exc:
            errors.append(((i,), _with_path(str(exc), path)))
            continue
        normalized.append(str(path.resolve()))
    if errors:
        raise job_field_error(errors)
    return normalized


def read_cell_file(path: str | Path) -> CellGraph:
    """The graph of a cell JSON file, read strictly (see the module's notes)."""
    text = read_text_file(path, what="cell file", max_bytes=MAX_CELL_FILE_BYTES)
    return CellGraph.parse(load_strict_json(text, str(path)))


def resolve_cell_entry(entry: str) -> tuple[str | None, CellGraph]:
    """``(library name or None, graph)`` of a checked entry."""
    if entry in cell_library.names():
        return entry, cell_library.get(entry)
    return None, read_cell_file(entry)


def _locate(entry: str, base_dir: str | Path | None) -> Path:
    path = Path(entry)
    if not path.is_absolute() and base_dir is not None and os.path.lexists(Path(base_dir) / path):
        return Path(base_dir) / path
    return path


def _with_path(message: str, path: Path) -> str:
    message = " ".join(message.split("\n")) or "cannot be read"
    return message if message.startswith(str(path)) else f"{path}: {message}"
