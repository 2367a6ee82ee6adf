"""search: job specs, strategies, the driver loop (Ray + Optuna), the results database and the CLI.

Example:
    >>> from search import resolve_settings
    >>> resolve_settings(db_url="sqlite:///results.db", env={}).db_url
    'sqlite:///results.db'
"""

from search._jobspec import JobError, JobSpec, check_db_url, load_job, task_key
from search._settings import Settings, resolve_settings
from search._store import (
    DatabaseRevisionError,
    JobSummary,
    NoDatabaseError,
    ResultStore,
    StoreError,
    UnknownJobError,
)

__all__ = [
    "DatabaseRevisionError",
    "JobError",
    "JobSpec",
    "JobSummary",
    "NoDatabaseError",
    "ResultStore",
    "Settings",
    "StoreError",
    "UnknownJobError",
    "check_db_url",
    "load_job",
    "resolve_settings",
    "task_key",
]
