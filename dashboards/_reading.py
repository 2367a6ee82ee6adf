"""Opening the results database for the read commands (``results``, ``report``): write nothing.

The read commands never create, migrate or change the database they read. Before the
results store is opened (its engine sets SQLite pragmas on connect), the database URL is
parsed and a SQLite file is looked at with a read-only connection of its own: a text file,
a folder, an empty file or another program's SQLite file is refused with one line naming
``--db`` and the user's path, and is never touched.

Example:
    >>> open_for_reading("garbage")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dashboards._reading.ReadError: --db: expected a database URL such as ..., got 'garbage'
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from cells import CellsearchError
from search import sqlite_file

if TYPE_CHECKING:
    from search import ResultStore

SQLITE_HEADER = b"SQLite format 3\x00"
SCHEMA_TABLE = "cs_alembic_version"
"""The table that marks a cellsearch results database (its schema revision)."""


class ReadError(CellsearchError, ValueError):
    """The results database cannot be read; ``usage`` tells a bad option (exit 2) from a
    database that is not there or not readable (exit 1)."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage

    @property
    def exit_code(self) -> int:
        return 2 if self.usage else 1


def open_for_reading(url: str, option: str = "--db") -> ResultStore:
    """The results store at ``url``, opened without creating or upgrading anything; raises
    :class:`ReadError` naming ``option``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from search import ResultStore, StoreError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ReadError(
            f"{option}: expected a database URL such as sqlite:///cellsearch.db or "
            f"postgresql+psycopg://user@host/database, got {url!r}",
            usage=True,
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_file(url, shown, option)
    try:
        return ResultStore.open(url, upgrade=False, create=False)
    except StoreError as exc:
        raise ReadError(str(exc)) from None
    except ImportError as exc:
        raise ReadError(
            f"{option}: cannot use {shown}: its database driver is not installed ({exc})"
        ) from None
    except (SQLAlchemyError, OSError, ValueError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ReadError(f"{option}: cannot read {shown}: {reason}") from None


def _check_sqlite_file(url: str, shown: str, option: str) -> None:
    database = sqlite_file(url)
    if database is None:
        raise ReadError(
            f"{option}: expected a results database, got an in-memory SQLite database ({shown})", usage=True
        )
    if database.startswith("file:"):
        return  # a SQLite URI: SQLite itself reads its options (mode=ro, ...)
    path = Path(database)
    if not path.exists():
        raise ReadError(f"no results database at {database} (no job has been launched with this URL)")
    if not path.is_file():
        raise ReadError(f"{option}: expected a SQLite file, got a folder or special file at {database}")
    try:
        with path.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise ReadError(f"{option}: cannot read {database}: {exc.strerror}") from None
    if not header:
        raise ReadError(f"no cellsearch results in {database} (the file is empty)")
    if header != SQLITE_HEADER:
        raise ReadError(f"{option}: {database} is not a SQLite database")
    if not _has_schema(path):
        raise ReadError(f"no cellsearch results in {database} (a SQLite file without cellsearch's tables)")


def _has_schema(path: Path) -> bool:
    """Whether the SQLite file holds cellsearch's schema table, asked over a read-only
    connection that sets no pragma (another program's file is left exactly as it is).

    Without a ``-wal`` file beside it (no writer has it open), the file is read as
    immutable: a plain read-only connection to a WAL database would leave ``-wal`` and
    ``-shm`` files behind. With one, a writer is at work and SQLite's own locking applies.
    """
    resolved = path.resolve()
    in_use = resolved.with_name(resolved.name + "-wal").exists()
    uri = f"file:{urllib.parse.quote(str(resolved))}?mode=ro" + ("" if in_use else "&immutable=1")
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5)
    except sqlite3.Error:
        return True  # let the store's own open report what is wrong
    try:
        row = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (SCHEMA_TABLE,)
        ).fetchone()
    except sqlite3.Error:
        return True
    finally:
        conn.close()
    return row is not None
