"""One MLflow store created at a time: an exclusive lock beside a SQLite tracking file.

MLflow creates its tables (and runs its Alembic migrations) when a client first opens a
fresh store. Two jobs that start together on a new SQLite file used to race there: the
second one's migration failed half-way (its tracking was dropped with a traceback) and left
a ``_alembic_tmp_*`` table behind. Whoever opens an MLflow store in cellsearch (the tracker,
``cellsearch dashboard``) does it inside :func:`store_creation_lock`, so the second one
waits and then finds the tables in place.

The lock is ``fcntl.flock`` on ``<file>.lock`` beside the SQLite file (the kernel drops it
when its holder dies, so a crashed job never blocks the next); other stores need none.

Example:
    >>> import tempfile
    >>> uri = f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"
    >>> with store_creation_lock(uri) as lock:
    ...     lock.name
    'mlflow.db.lock'
    >>> with store_creation_lock("http://mlflow:5000") as lock:
    ...     lock is None
    True
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from search import sqlite_file


def lock_path(tracking_uri: str) -> Path | None:
    """The lock file of a SQLite tracking store; ``None`` for other stores (and in memory)."""
    database = sqlite_file(tracking_uri)
    if database is None or database.startswith("file:"):
        return None
    path = Path(database)
    return path.with_name(path.name + ".lock")


@contextmanager
def store_creation_lock(tracking_uri: str) -> Iterator[Path | None]:
    """Hold the store's lock while the block runs (waits for another holder); yields the
    lock file, or ``None`` when the store needs no lock. A folder that does not exist yet
    gets no lock: opening the store there fails anyway."""
    path = lock_path(tracking_uri)
    if path is None or not path.parent.is_dir():
        yield None
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
