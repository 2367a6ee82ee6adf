"""Database engines: one per results database, with the SQLite settings every engine on a
SQLite file uses, and the one place that reads what a SQLite URL points at.

Example:
    >>> sqlite_file("sqlite:///results/cellsearch.db")
    'results/cellsearch.db'
    >>> sqlite_file("sqlite:////data/mlflow.db")  # an absolute path: four slashes
    '/data/mlflow.db'
    >>> [sqlite_file(u) for u in ("sqlite://", "postgresql://db/test", "http://mlflow:5000")]
    [None, None, None]
    >>> engine = make_engine("sqlite://")  # in memory: one connection shared by every user
    >>> engine.pool.__class__.__name__
    'StaticPool'
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

SQLITE_LOCK_TIMEOUT_SECONDS = 60
"""How long a SQLite connection waits for another writer's lock before it fails."""


def is_sqlite(url: str | URL) -> bool:
    """Whether ``url`` names a SQLite database (a file or in memory)."""
    if isinstance(url, str) and not url.startswith("sqlite"):
        return False
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_file(url: str | URL) -> str | None:
    """The file a SQLite URL names (as written in the URL); ``None`` for an in-memory SQLite
    database (``sqlite://``, ``sqlite:///:memory:``) and for any other kind of database.

    A ``file:`` URI (``sqlite:///file:name?mode=ro&uri=true``) is returned as written: SQLite
    opens it, but it is not a path to check or to put a lock file beside; see
    :func:`is_sqlite_uri`.
    """
    if isinstance(url, str) and not url.startswith("sqlite"):
        return None  # not a SQLite URL, perhaps not a database URL at all (an MLflow server)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


def is_sqlite_uri(database: str) -> bool:
    """Whether a SQLite database name is a ``file:`` URI rather than a plain path."""
    return database.startswith("file:")


def make_engine(url: str) -> Engine:
    """One engine per database. A SQLite file gets :func:`use_fast_sqlite_commits`, foreign
    keys on and a generous lock timeout; an in-memory one a single shared connection."""
    if not is_sqlite(url):
        return create_engine(url, pool_pre_ping=True)
    file = sqlite_file(url)
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_LOCK_TIMEOUT_SECONDS, "check_same_thread": False},
        poolclass=StaticPool if file is None else None,
    )
    if file is not None:
        use_fast_sqlite_commits(engine)
    event.listen(engine, "connect", _foreign_keys_on)
    return engine


def use_fast_sqlite_commits(engine: Engine) -> None:
    """Give every new connection of a SQLite file engine WAL journaling and
    ``synchronous=NORMAL``: a commit costs no fsync of its own (SQLite's default costs one
    per commit), survives a crash of the process (a power loss may drop the last commits),
    and readers never block the writer. No effect on other databases; the results store,
    Optuna's storage on it and MLflow's SQLite store all use it."""
    if engine.dialect.name != "sqlite" or event.contains(engine, "connect", _wal_pragmas):
        return
    event.listen(engine, "connect", _wal_pragmas)
    engine.dispose()  # connections made before reconnect with the pragmas


def database_error_reason(exc: SQLAlchemyError) -> str:
    """The first line of the database driver's own message (what the user can act on)."""
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


def _wal_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _foreign_keys_on(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
