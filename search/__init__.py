"""search: job specs, strategies, the driver loop (Ray + Optuna), the results database and the CLI.

Example:
    >>> from search import resolve_settings
    >>> resolve_settings(db_url="sqlite:///results.db", env={}).db_url
    'sqlite:///results.db'
"""

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


def __getattr__(name: str) -> object:
    # The driver imports Ray and Optuna: loaded on first use, so `cellsearch status` stays quick.
    if name in ("run_job", "JobStateError"):
        from search import _driver

        return getattr(_driver, name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")


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
