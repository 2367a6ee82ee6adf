"""Export a job's architectures and their per-task results to CSV, Parquet or JSON Lines.

The format follows the file's extension. CSV and Parquet get one flat row per
architecture (the score and its interval, ``score_low`` and ``score_high``; per task:
``<task>_value``, ``<task>_relative``, their intervals' ``_low`` and ``_high``, and
``<task>_trials``, where ``<task>`` is the task's label or name in the job); JSON Lines gets
the same objects as ``cellsearch results top --format json``, with ``per_task`` nested. The file is written
to a temporary name beside the target and renamed into place, so a reader never sees half
a file and a failed export leaves an earlier file intact.

Example:
    >>> import tempfile, pathlib
    >>> from search import JobSpec
    >>> from search import ResultStore
    >>> from cells import library
    >>> store = ResultStore.open("sqlite://")
    >>> job_id = store.create_job(JobSpec.from_yaml_text(
    ...     "name: demo\\nstrategy: {kind: fixed, cells: [gru]}\\ntasks: [{name: memorize}]"))
    >>> _ = store.add_architecture(library.get("gru"), job_id=job_id, library_name="gru")
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "results.csv"
    >>> export_job(store, job_id, path)
    1
    >>> path.read_text().splitlines()[0].split(",")[:4]
    ['job_id', 'arch_id', 'rank', 'score']
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cells import CellsearchError
from dashboards._writable import unwritable_folder
from search import RankedArchitecture, StoreReader, job_architectures, job_tasks

FORMATS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl"}
"""File extension -> export format."""

BASE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("job_id", "int"),
    ("arch_id", "int"),
    ("rank", "int"),
    ("score", "float"),
    ("score_low", "float"),
    ("score_high", "float"),
    ("library_name", "str"),
    ("parent_id", "int"),
    ("mutation", "str"),
    ("generation", "int"),
    ("canonical_hash", "str"),
    ("num_states", "int"),
    ("num_nodes", "int"),
    ("parameter_count", "int"),
    ("parameter_hidden", "int"),
    ("equations", "str"),
)
"""The flat columns before the per-task ones, with their types (for Parquet's schema)."""

TASK_COLUMNS: tuple[tuple[str, str], ...] = (
    ("value", "float"),
    ("value_low", "float"),
    ("value_high", "float"),
    ("relative", "float"),
    ("relative_low", "float"),
    ("relative_high", "float"),
    ("trials", "int"),
)
"""Each task's columns, ``<task>_value`` ...; the ``_low``/``_high`` ones are the intervals
(``docs/uncertainty.md``), empty where there is none."""


class ExportError(CellsearchError, ValueError):
    """The export cannot be written (unknown extension, unwritable folder)."""


def export_format(path: str | Path) -> str:
    """The format for a file name, from its extension; raises :class:`ExportError` for others."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ExportError(
            f"-o/--output: unknown extension {suffix or '(none)'!r} in {str(path)!r}; "
            f"use one of {', '.join(FORMATS)}"
        )
    return FORMATS[suffix]


def check_output(path: str | Path, option: str = "-o/--output") -> None:
    """Check, writing nothing, that a file can be written at ``path``: its folder exists and
    is writable, and the path is not a folder; raises :class:`ExportError` naming ``option``
    and the path as given.

    Example:
        >>> check_output("/nonexistent/dir/r.html")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        dashboards._export.ExportError: -o/--output: cannot write /nonexistent/dir/r.html: ... does not exist
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")

    def fail(reason: str) -> ExportError:
        return ExportError(f"{option}: cannot write {path}: {reason}")

    if target.is_dir():
        raise fail("it is a folder")
    if target.exists() and not target.is_file():
        raise fail("it is not a regular file")
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise fail(f"the folder {str(folder)!r} {what}")
    problem = unwritable_folder(folder)
    if problem:
        raise fail(f"the folder {str(folder)!r} is not writable ({problem})")


def export_job(store: StoreReader, job_id: int, path: str | Path) -> int:
    """Write every architecture of the job (scored ones best first) to ``path``; returns the row count."""
    fmt = export_format(path)
    architectures = job_architectures(store, job_id)
    tasks = job_tasks(store, job_id)
    for arch in architectures:  # tasks of a reused evaluation keep their label from the first job
        tasks += [t for t in arch.per_task if t not in tasks]
    writer: Callable[[Path, list[RankedArchitecture], list[str]], None] = {
        "csv": _write_csv,
        "parquet": _write_parquet,
        "jsonl": _write_jsonl,
    }[fmt]
    _atomic(Path(path), lambda tmp: writer(tmp, architectures, tasks))
    return len(architectures)


def flat_row(arch: RankedArchitecture, tasks: list[str]) -> dict[str, Any]:
    """One architecture as a flat mapping of :func:`columns`."""
    data = arch.to_dict()
    row = {name: data[name] for name, _ in BASE_COLUMNS}
    row["rank"] = arch.rank or None
    for task in tasks:
        result = data["per_task"].get(task)
        for suffix, _ in TASK_COLUMNS:
            row[f"{task}_{suffix}"] = None if result is None else result[suffix]
    return row


def columns(tasks: list[str]) -> list[tuple[str, str]]:
    """The flat export's columns and their types for a job with ``tasks``."""
    return [*BASE_COLUMNS, *((f"{task}_{suffix}", kind) for task in tasks for suffix, kind in TASK_COLUMNS)]


def _write_csv(path: Path, architectures: list[RankedArchitecture], tasks: list[str]) -> None:
    names = [name for name, _ in columns(tasks)]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        for arch in architectures:
            writer.writerow({k: "" if v is None else v for k, v in flat_row(arch, tasks).items()})


def _write_parquet(path: Path, architectures: list[RankedArchitecture], tasks: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}
    schema = pa.schema([(name, types[kind]) for name, kind in columns(tasks)])
    table = pa.Table.from_pylist([flat_row(arch, tasks) for arch in architectures], schema=schema)
    pq.write_table(table, path)


def _write_jsonl(path: Path, architectures: list[RankedArchitecture], tasks: list[str]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for arch in architectures:
            data = arch.to_dict()
            data["rank"] = arch.rank or None
            f.write(json.dumps(data) + "\n")


def _atomic(path: Path, write: Callable[[Path], None], option: str = "-o/--output") -> None:
    """Write through a temporary file beside ``path``, renamed into place; a failure is an
    :class:`ExportError` naming ``option`` and ``path`` (never the temporary file)."""
    check_output(path, option)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ExportError(f"{option}: cannot write {path}: {_reason(exc)}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; give it the usual mode
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{option}: cannot write {path}: {_reason(exc)}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _reason(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
