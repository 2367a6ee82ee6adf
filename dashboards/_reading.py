"""Opening the results database for the read commands (``results``, ``report``): write nothing.

The read commands never create, migrate or change the database they read. Before the
results store is opened (its engine sets SQLite pragmas on connect), ``search``'s
``check_results_url`` parses the URL and looks at a SQLite file with a read-only connection
of its own: a text file, a folder, an empty file or another program's SQLite file is refused
with one line naming ``--db`` and the user's path, and is never touched.

Example:
    >>> open_for_reading("garbage")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dashboards._reading.ReadError: --db: expected a database URL such as ..., got 'garbage'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dashboards._command_error import CommandError

if TYPE_CHECKING:
    from search import ResultStore


class ReadError(CommandError):
    """The results database cannot be read; ``usage`` tells a bad option (exit 2) from a
    database that is not there or not readable (exit 1)."""


def open_for_reading(url: str, option: str = "--db") -> ResultStore:
    """The results store at ``url``, opened without creating or upgrading anything; raises
    :class:`ReadError` naming ``option``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from search import DatabaseURLError, ResultStore, StoreError

    try:
        # The URL and a SQLite file are checked read-only before anything is opened for writing.
        return ResultStore.open(url, upgrade=False, create=False, option=option)
    except DatabaseURLError as exc:
        raise ReadError(str(exc), usage=True) from None
    except StoreError as exc:
        raise ReadError(str(exc)) from None
    except ImportError as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        raise ReadError(
            f"{option}: cannot use {shown}: its database driver is not installed ({exc})"
        ) from None
    except (SQLAlchemyError, OSError, ValueError) as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ReadError(f"{option}: cannot read {shown}: {reason}") from None
