"""The libraries' own start-up lines, kept out of a job's output unless ``--verbose``.

Ray warns at every start that token authentication is on (its default) and, at ``INFO``, says
where its local instance runs; its workers' output reaches the driver only with
``log_to_driver``. The results database's migrations (Alembic) log each step, and so does a
tracker's store when it creates its tables (the composition root names the tracker's loggers:
this package knows nothing of MLflow). None of it is the user's business on an ordinary run:
``cellsearch launch`` and ``cellsearch resume`` call :func:`configure_library_logs` first, and
:func:`~search._ray_cluster.ray_session` starts Ray with :func:`ray_logging`. With ``verbose``
every logger is left at its library's level and Ray logs at ``INFO``, its workers' output
included.

Setting a logger's level by its name imports nothing: the libraries load later, and keep the
level (neither Ray nor MLflow resets the level of a logger below its own root).

Example:
    >>> configure_library_logs(verbose=False, loggers=("some.library.store",))
    >>> logging.getLogger("some.library.store").level == logging.WARNING
    True
    >>> ray_logging()["log_to_driver"]
    False
    >>> configure_library_logs(verbose=True, loggers=("some.library.store",))
    >>> logging.getLogger("some.library.store").level == logging.NOTSET, ray_logging()["log_to_driver"]
    (True, True)
    >>> configure_library_logs()  # back to quiet, the default
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

RAY_TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"
"""Ray's logger of the token-authentication warning it writes at every start."""
QUIET_LOGGERS = {
    RAY_TOKEN_LOGGER: logging.ERROR,
    "alembic.runtime.migration": logging.WARNING,  # each migration step of the results database
}
"""Loggers of the libraries this package starts, and the level they are held at when quiet."""

_verbose = False


def configure_library_logs(verbose: bool = False, loggers: Iterable[str] = ()) -> None:
    """Hold the libraries' loggers (:data:`QUIET_LOGGERS`, and ``loggers`` at ``WARNING``) so
    that only warnings and errors that matter reach the output; with ``verbose``, give them back
    their libraries' levels and have Ray log its start and its workers' output."""
    global _verbose
    _verbose = verbose
    levels = {**QUIET_LOGGERS, **dict.fromkeys(loggers, logging.WARNING)}
    for name, level in levels.items():
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else level)


def ray_logging() -> dict[str, Any]:
    """The logging arguments of ``ray.init``: Ray's own level and whether the workers' output
    reaches the driver (both quiet unless :func:`configure_library_logs` was told ``verbose``)."""
    return {"log_to_driver": _verbose, "logging_level": logging.INFO if _verbose else logging.WARNING}


def verbose() -> bool:
    """Whether the libraries' logs are shown (``--verbose``)."""
    return _verbose
