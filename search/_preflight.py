"""The checks a job passes before anything is written: its file, and the results database.

``launch`` reads the job file with :func:`load_job` (a regular UTF-8 file under
:data:`MAX_JOB_FILE_BYTES`, then :class:`~search.JobSpec` validation) and checks the results
database with :func:`check_db_url`, which reaches it and proves it writable without leaving a
trace. The Ray side (a node that can run a trial) is checked by the driver once it has joined
the cluster (:mod:`search._cluster_fit`), still before the first write.

Example:
    >>> load_job("nope.yaml")
    Traceback (most recent call last):
    ...
    search._job_errors.JobError: nope.yaml: (file): cannot read the job file: No such file or directory
    >>> check_db_url("sqlite:///no/dir/x.db")
    Traceback (most recent call last):
    ...
    search._job_errors.JobError: db_url: cannot use sqlite:///no/dir/x.db: folder 'no/dir' does not exist
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from cells import UserFileError, first_line, read_text_file
from search._job_errors import JobError
from search._job_yaml import MAX_JOB_TEXT
from search._jobspec import JobSpec

__all__ = ["MAX_JOB_FILE_BYTES", "check_db_url", "load_job"]

MAX_JOB_FILE_BYTES = MAX_JOB_TEXT
"""The largest job file read (bytes); a real one is a few kilobytes."""


def load_job(path: str | Path) -> JobSpec:
    """Read and validate a job file; raises :class:`~search.JobError` naming every bad field."""
    path = Path(path)
    try:
        text = read_text_file(path, what="job file", max_bytes=MAX_JOB_FILE_BYTES)
    except UserFileError as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        raise JobError([f"(file): {reason}"], str(path)) from None
    return JobSpec.from_yaml_text(text, source=str(path), base_dir=path.resolve().parent)


def check_db_url(url: str, field: str = "db_url") -> None:
    """Check that a job can keep its results at ``url``, writing nothing.

    A SQLite database must be a file (in memory, a job's results would be lost when it ends):
    an existing one must be a regular, writable SQLite file; a new one's folder must exist and
    take a new file (tried with a temporary file, removed at once: permission bits do not tell
    it for root, ``/proc`` or a read-only mount). Other databases are connected to once. Raises
    :class:`~search.JobError` naming ``field``.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from search._engine import is_sqlite, is_sqlite_uri, sqlite_file

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise JobError([f"{field}: not a database URL: {url!r} (e.g. sqlite:///cellsearch.db)"]) from None
    shown = parsed.render_as_string(hide_password=True)
    if not is_sqlite(parsed):
        _check_server(url, parsed.get_backend_name(), shown, field)
        return
    database = sqlite_file(parsed)
    in_memory = parsed.query.get("mode") == "memory" or "mode=memory" in (database or "")
    if database is None or in_memory or database.startswith("file::memory:"):
        raise JobError(
            [
                f"{field}: {shown} is an in-memory database: what is written to it is lost when the "
                "process ends (give a file, e.g. sqlite:///cellsearch.db)"
            ]
        )
    if is_sqlite_uri(database):
        return  # a file: URI with options of its own; SQLite checks it when the job opens it
    problem = _sqlite_file_problem(database)
    if problem:
        raise JobError([f"{field}: cannot use {shown}: {problem}"])


def _sqlite_file_problem(database: str) -> str | None:
    from search._store_probe import is_sqlite_header

    folder = os.path.dirname(database) or "."
    if os.path.lexists(database):
        if os.path.isdir(database):
            return "it is a folder, not a database file"
        if not os.path.isfile(database):
            return "it is not a regular file"
        try:
            with open(database, "r+b"):  # opened for writing, nothing written
                pass
            if not is_sqlite_header(database):
                return "the file exists and is not a SQLite database"
        except OSError as exc:
            return f"the file cannot be opened for writing ({exc.strerror or exc})"
    elif not os.path.isdir(folder):
        return f"folder {folder!r} does not exist"
    # SQLite writes its journal (or -wal and -shm) beside the database: the folder must take files.
    try:
        handle, probe = tempfile.mkstemp(prefix=".cellsearch-check-", dir=folder)
    except OSError as exc:
        return f"folder {folder!r} is not writable ({exc.strerror or exc})"
    os.close(handle)
    os.unlink(probe)
    return None


def _check_server(url: str, backend: str, shown: str, field: str) -> None:
    import sqlalchemy as sa
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from search._engine import database_error_reason

    try:
        engine = sa.create_engine(url, connect_args=_connect_timeout(backend))
    except (ArgumentError, ImportError, SQLAlchemyError) as exc:
        raise JobError([f"{field}: cannot use {shown}: {first_line(exc)}"]) from None
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise JobError([f"{field}: cannot connect to {shown}: {database_error_reason(exc)}"]) from None
    finally:
        engine.dispose()


def _connect_timeout(backend: str) -> dict[str, Any]:
    return {"connect_timeout": 5} if backend == "postgresql" else {}
