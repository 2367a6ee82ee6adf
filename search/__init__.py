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
from search._ids import ID_MAX

if TYPE_CHECKING:
    from search._architecture_history import (
        ArchitectureHistory,
        JobMembership,
        LineageStep,
        TaskDetail,
        architecture_history,
    )
    from search._cluster_fit import ClusterFitError
    from search._driver import JobStateError, run_job
    from search._engine import is_sqlite, is_sqlite_uri, make_engine, sqlite_file, use_fast_sqlite_commits
    from search._final_board import (
        final_baselines,
        final_legend,
        final_seeds,
        final_task_cell,
        final_tasks_of,
        format_p,
        is_final_task,
        search_task_of,
        split_tasks,
        verdict_mark,
        verdict_sentence,
        verdict_words,
    )
    from search._intervals import (
        Interval,
        best_interval,
        format_estimate,
        mean_interval,
        relative_interval,
        score_interval,
    )
    from search._job_strategy import make_strategy
    from search._jobspec import JobError, JobSpec, task_key
    from search._leaderboard import (
        RankedArchitecture,
        TaskResult,
        job_architectures,
        job_tasks,
        parameter_count,
        resolve_job,
        top_architectures,
    )
    from search._preflight import check_db_url, load_job
    from search._progress import ProgressDisplay, ProgressFeed
    from search._ranking import leaderboard_rank_sql
    from search._records import JobSummary
    from search._result_store import ResultStore
    from search._schema import upgrade_database
    from search._settings import Settings, resolve_settings
    from search._significance import Comparison, Verdict, paired_verdict
    from search._states import EvaluationStatus, JobState
    from search._store_errors import (
        DatabaseRevisionError,
        DatabaseURLError,
        NoDatabaseError,
        StoreError,
        UnknownArchitectureError,
        UnknownJobError,
        UnknownTaskError,
    )
    from search._store_probe import check_results_url, is_sqlite_header
    from search._store_reader import StoreReader
    from search._strategies import (
        Candidate,
        FixedCells,
        JozefowiczSearch,
        Outcome,
        RandomSearch,
        Refine,
        RegularizedEvolution,
        Strategy,
    )

# Loaded on first use (PEP 562): the driver imports Ray and Optuna, the store SQLAlchemy and
# Alembic, so each `cellsearch` command loads only what it uses and starts quickly.
__getattr__ = lazy_exports(
    globals(),
    {
        "search._driver": ("JobStateError", "run_job"),
        "search._jobspec": ("JobError", "JobSpec", "task_key"),
        "search._cluster_fit": ("ClusterFitError",),
        "search._preflight": ("check_db_url", "load_job"),
        "search._store_probe": ("check_results_url", "is_sqlite_header"),
        "search._progress": ("ProgressDisplay", "ProgressFeed"),
        "search._settings": ("Settings", "resolve_settings"),
        "search._states": ("EvaluationStatus", "JobState"),
        "search._architecture_history": (
            "ArchitectureHistory",
            "JobMembership",
            "LineageStep",
            "TaskDetail",
            "architecture_history",
        ),
        "search._engine": (
            "is_sqlite",
            "is_sqlite_uri",
            "make_engine",
            "sqlite_file",
            "use_fast_sqlite_commits",
        ),
        "search._leaderboard": (
            "RankedArchitecture",
            "TaskResult",
            "job_architectures",
            "job_tasks",
            "parameter_count",
            "resolve_job",
            "top_architectures",
        ),
        "search._ranking": ("leaderboard_rank_sql",),
        "search._final_board": (
            "final_baselines",
            "final_legend",
            "final_seeds",
            "final_task_cell",
            "final_tasks_of",
            "format_p",
            "is_final_task",
            "search_task_of",
            "split_tasks",
            "verdict_mark",
            "verdict_sentence",
            "verdict_words",
        ),
        "search._intervals": (
            "Interval",
            "best_interval",
            "format_estimate",
            "mean_interval",
            "relative_interval",
            "score_interval",
        ),
        "search._significance": ("Comparison", "Verdict", "paired_verdict"),
        "search._records": ("JobSummary",),
        "search._result_store": ("ResultStore",),
        "search._schema": ("upgrade_database",),
        "search._store_errors": (
            "DatabaseRevisionError",
            "DatabaseURLError",
            "NoDatabaseError",
            "StoreError",
            "UnknownArchitectureError",
            "UnknownJobError",
            "UnknownTaskError",
        ),
        "search._store_reader": ("StoreReader",),
        "search._strategies": (
            "Candidate",
            "FixedCells",
            "JozefowiczSearch",
            "Outcome",
            "RandomSearch",
            "Refine",
            "RegularizedEvolution",
            "Strategy",
        ),
        "search._job_strategy": ("make_strategy",),
    },
)


__all__ = [
    "ID_MAX",
    "ArchitectureHistory",
    "Candidate",
    "ClusterFitError",
    "Comparison",
    "DatabaseRevisionError",
    "DatabaseURLError",
    "EvaluationStatus",
    "FixedCells",
    "Interval",
    "JobError",
    "JobMembership",
    "JobSpec",
    "JobState",
    "JobStateError",
    "JobSummary",
    "JozefowiczSearch",
    "LineageStep",
    "NoDatabaseError",
    "Outcome",
    "ProgressDisplay",
    "ProgressFeed",
    "RandomSearch",
    "RankedArchitecture",
    "Refine",
    "RegularizedEvolution",
    "ResultStore",
    "Settings",
    "StoreError",
    "StoreReader",
    "Strategy",
    "TaskDetail",
    "TaskResult",
    "UnknownArchitectureError",
    "UnknownJobError",
    "UnknownTaskError",
    "Verdict",
    "architecture_history",
    "best_interval",
    "check_db_url",
    "check_results_url",
    "final_baselines",
    "final_legend",
    "final_seeds",
    "final_task_cell",
    "final_tasks_of",
    "format_estimate",
    "format_p",
    "is_final_task",
    "is_sqlite",
    "is_sqlite_header",
    "is_sqlite_uri",
    "job_architectures",
    "job_tasks",
    "leaderboard_rank_sql",
    "load_job",
    "make_engine",
    "make_strategy",
    "mean_interval",
    "paired_verdict",
    "parameter_count",
    "relative_interval",
    "resolve_job",
    "resolve_settings",
    "run_job",
    "score_interval",
    "search_task_of",
    "split_tasks",
    "sqlite_file",
    "task_key",
    "top_architectures",
    "upgrade_database",
    "use_fast_sqlite_commits",
    "verdict_mark",
    "verdict_sentence",
    "verdict_words",
]
