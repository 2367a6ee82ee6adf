"""One driver per job: a running job holds a lock that a second ``resume`` cannot take.

PostgreSQL: a session-level advisory lock, held on one connection of the driver. A SQLite
file: a POSIX record lock on byte ``job_id`` of ``<database>-cellsearch.lock`` beside it.
Either lock goes away with the process that holds it, so a crashed job can be resumed at
once, while a live one is refused instead of being run twice (its running trials would be
marked interrupted and started again). An in-memory SQLite database needs no lock.

Example:
    >>> from sqlalchemy import create_engine
    >>> import os, tempfile
    >>> engine = create_engine("sqlite:///" + os.path.join(tempfile.mkdtemp(), "results.db"))
    >>> with hold_job(engine, 7):
    ...     pass  # the driver runs job 7 here
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

from cells import CellsearchError
from search._engine import sqlite_file

# The first key of PostgreSQL's two-key advisory locks ("cell"): keeps ours apart from
# other applications' locks on the same server.
_ADVISORY_NAMESPACE = 0x63656C6C


class JobStateError(CellsearchError, RuntimeError):
    """A job cannot be run in its current state (e.g. resuming a finished job, or one that
    another process is running)."""


@contextmanager
def hold_job(engine: Engine, job_id: int) -> Iterator[None]:
    """Hold job ``job_id`` of the database behind ``engine`` for this process; raises
    :class:`JobStateError` at once if another process holds it."""
    busy = JobStateError(
        f"job {job_id} is running in another process; wait for it to end, or stop it "
        "(Ctrl-C) before resuming it"
    )
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            held = conn.execute(
                text("SELECT pg_try_advisory_lock(:space, :job)"),
                {"space": _ADVISORY_NAMESPACE, "job": job_id},
            ).scalar()
            conn.commit()  # the lock outlives the transaction; an idle session holds it
            if not held:
                raise busy
            try:
                yield
            finally:
                conn.execute(
                    text("SELECT pg_advisory_unlock(:space, :job)"),
                    {"space": _ADVISORY_NAMESPACE, "job": job_id},
                )
                conn.commit()
        return
    database = sqlite_file(engine.url)
    if database is None:  # in memory: no other process can see it
        yield
        return
    with open(Path(f"{database}-cellsearch.lock"), "a+b") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, job_id)
        except OSError:
            raise busy from None
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN, 1, job_id)
