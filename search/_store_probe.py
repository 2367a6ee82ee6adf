"""What a results database URL points at, checked before any engine touches it.

A read command (``status``, ``results``, ``report``) must recognise a results database before
its engine sets any pragma: switching another program's file to WAL journaling, or leaving
``-wal``/``-shm`` files beside it, is a write. :func:`sqlite_tables` reads the file's header
and its table names through a read-only connection: ``immutable`` when no ``-wal`` file exists
(then the main file holds everything, and SQLite creates no ``-shm``), a plain read-only one
when a writer's ``-wal`` is there (its files exist already). :func:`check_results_url` is what
the store runs before it opens a database it must not create.

Example:
    >>> import os, sqlite3, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "other.db")
    >>> sqlite3.connect(path).execute("CREATE TABLE notes (x)").connection.close()
    >>> sqlite_tables(path), sorted(os.listdir(folder))
    ({'notes'}, ['other.db'])
    >>> open(os.path.join(folder, "text.db"), "w").write("hello")
    5
    >>> sqlite_tables(os.path.join(folder, "text.db")) is None
    True
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from search._engine import is_sqlite, is_sqlite_uri, sqlite_file
from search._schema import TABLES, VERSION_TABLE
from search._store_errors import DatabaseURLError, NoDatabaseError, StoreError

__all__ = ["SQLITE_HEADER", "check_results_url", "is_sqlite_header", "sqlite_tables"]

SQLITE_HEADER = b"SQLite format 3\x00"


def is_sqlite_header(path: str | Path) -> bool:
    """Whether ``path`` is empty (SQLite treats it as a new database) or starts with SQLite's header."""
    with open(path, "rb") as handle:
        head = handle.read(len(SQLITE_HEADER))
    return head in (b"", SQLITE_HEADER)


def sqlite_tables(path: str | Path) -> set[str] | None:
    """The table names in the SQLite file ``path``; ``None`` when it is not a SQLite file.
    Raises ``OSError`` or ``sqlite3.Error`` when the file cannot be read."""
    if not is_sqlite_header(path):
        return None
    if os.path.getsize(path) == 0:
        return set()
    mode = "mode=ro" if os.path.exists(f"{path}-wal") else "mode=ro&immutable=1"
    uri = f"file:{quote(os.path.abspath(path))}?{mode}"
    connection = sqlite3.connect(uri, uri=True)
    try:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.DatabaseError:
        return None  # the header was right but the rest is not a database
    finally:
        connection.close()
    return {str(name) for (name,) in rows}


def check_url_form(url: str, option: str | None = None) -> None:
    """Refuse (:class:`DatabaseURLError`) a URL that is not a database URL, names a kind of
    database no driver is installed for, or is an in-memory SQLite database. ``option`` starts
    the message."""
    prefix = f"{option}: " if option else ""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise DatabaseURLError(
            f"{prefix}expected a database URL such as sqlite:///cellsearch.db or "
            f"postgresql+psycopg://user@host/database, got {url!r}"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    try:
        parsed.get_dialect()
    except (ArgumentError, ImportError) as exc:  # NoSuchModuleError is an ArgumentError
        raise DatabaseURLError(f"{prefix}cannot use {shown}: {exc}") from None
    if is_sqlite(parsed) and sqlite_file(parsed) is None:
        raise DatabaseURLError(
            f"{prefix}expected a results database, got an in-memory SQLite database ({shown})"
        )


def check_results_url(url: str, option: str | None = None) -> None:
    """Refuse, before an engine is made, a URL that is not a database URL or is in memory
    (:class:`DatabaseURLError`), and a SQLite file that does not exist, is not a regular file,
    is not SQLite, or holds no cellsearch tables; reads only. ``option`` (``--db``) starts the
    messages about the URL itself."""
    prefix = f"{option}: " if option else ""
    check_url_form(url, option)
    database = sqlite_file(url)
    if database is None or is_sqlite_uri(database):
        return  # a SQLite URI: SQLite itself reads its options (mode=ro, ...)
    if not os.path.exists(database):
        raise NoDatabaseError(f"no results database at {database} (no job has been launched with this URL)")
    if not os.path.isfile(database):
        raise StoreError(f"{prefix}expected a SQLite file, got a folder or special file at {database}")
    try:
        tables = sqlite_tables(database)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"{prefix}cannot read {database}: {exc}") from None
    if tables is None:
        raise StoreError(f"{prefix}{database} is not a SQLite database")
    if not tables:
        raise NoDatabaseError(f"no cellsearch results in {database} (the file is empty)")
    if VERSION_TABLE not in tables and not tables & set(TABLES):
        raise NoDatabaseError(
            f"no cellsearch results in {database} (a SQLite file without cellsearch's tables)"
        )
