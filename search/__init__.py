"""search: job specs, strategies, the driver loop (Ray + Optuna), the results database, and the
commands that launch and follow jobs (mounted by the ``cellsearch`` command).

Example:
    >>> from search import resolve_settings
    >>> resolve_settings(db_url="sqlite:///results.db", env={}).db_url
    'sqlite:///results.db'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cells import lazy_exports

if TYPE_CHECKING:
    from search._driver import JobStateError, run_job
    from search._jobspec import JobError, JobSpec, check_db_url, load_job, task_key
    from search._progress import ProgressDisplay, ProgressFeed
    from search._settings import Settings, resolve_settings
    from search._store import (
        DatabaseRevisionError,
        JobSummary,
        NoDatabaseError,
        ResultStore,
        StoreError,
        UnknownJobError,
    )
    from search._strategies import (
        Candidate,
        FixedCells,
        JozefowiczSearch,
        Outcome,
        RandomSearch,
        Refine,
        RegularizedEvolution,
        Strategy,
        make_strategy,
    )

# Loaded on first use (PEP 562): the driver imports Ray and Optuna, the store SQLAlchemy and
# Alembic, so each `cellsearch` command loads only what it uses and starts quickly.
__getattr__ = lazy_exports(
    globals(),
    {
        "search._driver": ("JobStateError", "run_job"),
        "search._jobspec": ("JobError", "JobSpec", "check_db_url", "load_job", "task_key"),
        "search._progress": ("ProgressDisplay", "ProgressFeed"),
        "search._settings": ("Settings", "resolve_settings"),
        "search._store": (
            "DatabaseRevisionError",
            "JobSummary",
            "NoDatabaseError",
            "ResultStore",
            "StoreError",
            "UnknownJobError",
        ),
        "search._strategies": (
            "Candidate",
            "FixedCells",
            "JozefowiczSearch",
            "Outcome",
            "RandomSearch",
            "Refine",
            "RegularizedEvolution",
            "Strategy",
            "make_strategy",
        ),
    },
)


__all__ = [
    "Candidate",
    "DatabaseRevisionError",
    "FixedCells",
    "JobError",
    "JobSpec",
    "JobStateError",
    "JobSummary",
    "JozefowiczSearch",
    "NoDatabaseError",
    "Outcome",
    "ProgressDisplay",
    "ProgressFeed",
    "RandomSearch",
    "Refine",
    "RegularizedEvolution",
    "ResultStore",
    "Settings",
    "StoreError",
    "Strategy",
    "UnknownJobError",
    "check_db_url",
    "load_job",
    "make_strategy",
    "resolve_settings",
    "run_job",
    "task_key",
]
