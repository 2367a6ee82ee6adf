"""The MLflow pre-flight: is the tracking store a job will log to reachable and writable?

``cellsearch launch`` and ``resume`` call :func:`check_tracking_uri` before their first
write, so a store that cannot take the job's runs is refused in seconds instead of being
found out (with a traceback) after the job has run. The check writes nothing: no file,
no folder, no table, no MLflow experiment.

What is checked, by kind of store:

- ``sqlite:///path``: not in memory; the folder exists and is writable (SQLite writes its
  journal there, MLflow its ``mlartifacts``); an existing file is a SQLite file.
- ``file:///path`` or a plain folder path (MLflow's file store): the folder, or the nearest
  folder above it that exists, is a writable folder.
- ``http(s)://host``: an MLflow server answers (``/health``, else the experiments API)
  within ``timeout`` seconds.
- ``postgresql(+driver)://``: the database accepts a connection within ``timeout``
  seconds, and may create tables when MLflow's are not there yet.

Example:
    >>> import tempfile
    >>> check_tracking_uri(f"sqlite:///{tempfile.mkdtemp()}/mlflow.db")  # a fresh file: fine
    >>> check_tracking_uri("sqlite://")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dashboards._preflight.TrackingStoreError: MLflow tracking URI 'sqlite://': ... in-memory database ...
    >>> check_tracking_uri("garbage://x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dashboards._preflight.TrackingStoreError: MLflow tracking URI 'garbage://x': expected a URI of scheme ...'
"""

from __future__ import annotations

import base64
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from dashboards._command_error import CommandError
from dashboards._writable import unwritable_folder
from search import is_sqlite_header, sqlite_file

CHECK_TIMEOUT_SECONDS = 5.0
"""How long the check waits for a server or database to answer (a finite number of seconds)."""

_SCHEMES = "sqlite, postgresql, http, https or file, or a folder path"


_Fail = Callable[..., "TrackingStoreError"]


class TrackingStoreError(CommandError):
    """The MLflow tracking store cannot take a job's runs; the one-line message names the URI
    (its password hidden) and the reason. ``usage``: the URI itself is wrong (an unknown
    scheme, in memory), so a command exits 2; else the store is (exit 1)."""


def check_tracking_uri(uri: str, *, timeout: float = CHECK_TIMEOUT_SECONDS) -> None:
    """Check, writing nothing, that the MLflow store at ``uri`` is reachable and writable;
    raises :class:`TrackingStoreError` (see the module docstring for what is checked)."""
    shown = hide_password(uri)

    def fail(reason: str, usage: bool = False) -> TrackingStoreError:
        return TrackingStoreError(f"MLflow tracking URI {shown!r}: {reason}", usage=usage)

    if not uri.strip():
        raise fail("expected a URI or a folder path, got an empty string", usage=True)
    if "\x00" in uri:
        raise fail("expected a URI without NUL characters", usage=True)
    try:
        scheme = urllib.parse.urlsplit(uri).scheme.lower()
    except ValueError:  # a malformed host part, such as an unclosed [
        raise fail(f"expected a URI of scheme {_SCHEMES}", usage=True) from None
    if scheme == "sqlite":
        _check_sqlite(uri, fail)
    elif scheme in ("http", "https"):
        _check_server(uri, timeout, fail)
    elif scheme == "postgresql" or scheme.startswith("postgresql+"):
        _check_postgresql(uri, timeout, fail)
    elif scheme in ("file", ""):
        path = urllib.parse.unquote(urllib.parse.urlsplit(uri).path) if scheme else uri
        _check_folder_store(Path(path), fail)
    else:
        raise fail(f"expected a URI of scheme {_SCHEMES}, got scheme {scheme!r}", usage=True)


def hide_password(uri: str) -> str:
    """``uri`` with the password of its user part, if any, shown as ``***``.

    Example:
        >>> hide_password("postgresql://me:secret@db:5432/mlflow")
        'postgresql://me:***@db:5432/mlflow'
    """
    return _PASSWORD.sub(r"\1***@", uri, count=1)


_PASSWORD = re.compile(r"^([^:/?#]+://[^:/?#@]*:)[^/?#]*@")
"""The password of ``scheme://user:password@host``: a regular expression, as a malformed URI
(an unclosed ``[``) cannot be split by ``urllib`` but may still hold one."""


# -- files and folders -----------------------------------------------------------------------


def _check_sqlite(uri: str, fail: _Fail) -> None:
    try:
        database = sqlite_file(uri)
    except Exception:  # SQLAlchemy cannot parse it
        raise fail("expected sqlite:///relative/path.db or sqlite:////absolute/path.db", usage=True) from None
    if database is None:
        raise fail(
            "expected a SQLite file, got an in-memory database (its runs would be lost when the job ends)",
            usage=True,
        )
    if database.startswith("file:"):
        raise fail("expected a path to a SQLite file, got a SQLite file: URI", usage=True)
    path = Path(database)
    shown = database if database.isprintable() else repr(database)  # one line, whatever the name
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise fail(f"expected a SQLite file, got {_kind(path)} at {shown}")
        try:
            sqlite = is_sqlite_header(path)
        except OSError as exc:
            raise fail(f"cannot read {shown}: {exc.strerror}") from None
        if not sqlite:
            raise fail(f"{shown} is not a SQLite file")
        if not os.access(path, os.R_OK | os.W_OK):
            raise fail(f"{shown} is not writable")
    folder = path.parent
    if not folder.is_dir():
        raise fail(f"the folder {str(folder)!r} of {shown} does not exist")
    problem = unwritable_folder(folder)
    if problem:
        raise fail(f"cannot create files in the folder {str(folder)!r} of {shown}: {problem}")


def _check_folder_store(path: Path, fail: _Fail) -> None:
    if path.exists() and not path.is_dir():
        raise fail(f"expected a folder for MLflow's file store, got {_kind(path)} at {path}")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise fail(f"cannot create the folder {str(path)!r}: {existing} is {_kind(existing)}")
    problem = unwritable_folder(existing)
    if problem:
        what = "folder" if existing == path else f"folder {str(path)!r} in"
        raise fail(f"cannot create the {what} {str(existing)!r}: {problem}")


def _kind(path: Path) -> str:
    if path.is_dir():
        return "a folder"
    if path.is_file():
        return "a file"
    return "a special file" if path.exists() else "a broken link"


# -- servers ---------------------------------------------------------------------------------


def _check_server(uri: str, timeout: float, fail: _Fail) -> None:
    base = uri.rstrip("/")
    last = ""
    for path in ("/health", "/api/2.0/mlflow/experiments/search?max_results=1"):
        request = urllib.request.Request(base + path, headers=_auth_headers())
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise fail(
                    f"the server refuses access (HTTP {exc.code}); "
                    f"set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN"
                ) from None
            last = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise fail(f"no MLflow server answers within {timeout:g} s ({_one_line(reason)})") from None
    raise fail(f"the server answers but is not an MLflow tracking server ({last})")


def _auth_headers() -> dict[str, str]:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def _check_postgresql(uri: str, timeout: float, fail: _Fail) -> None:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(uri, connect_args={"connect_timeout": max(1, round(timeout))})
    except ModuleNotFoundError as exc:
        raise fail(f"its database driver is not installed ({exc}); use postgresql+psycopg://") from None
    except Exception as exc:  # a URL SQLAlchemy cannot parse
        raise fail(f"expected postgresql://user@host:port/database ({_one_line(exc)})", usage=True) from None
    try:
        with engine.connect() as conn:
            has_tables = "experiments" in sa.inspect(conn).get_table_names()
            may_create = conn.execute(
                sa.text("SELECT has_schema_privilege(current_schema(), 'CREATE')")
            ).scalar()
    except sa.exc.SQLAlchemyError as exc:
        raise fail(f"cannot connect: {_one_line(getattr(exc, 'orig', None) or exc)}") from None
    finally:
        engine.dispose()
    if not has_tables and not may_create:
        raise fail("the user may not create MLflow's tables in the database's schema")


def _one_line(error: object) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
