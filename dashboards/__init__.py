"""dashboards: MLflow tracking, results queries, reports and plots.

Reads the results database that ``search`` writes (never the other way round: ``search``
does not import this package; the ``cellsearch`` command hands MLflow tracking to the jobs it
launches).

Example:
    >>> from dashboards import ensure_views, top_architectures
    >>> from search import ResultStore
    >>> store = ResultStore.open("sqlite://")
    >>> ensure_views(store.engine)
    ['leaderboard', 'architecture_tasks', 'trial_summary']
    >>> top_architectures(store, all_jobs=True)
    []
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cells import lazy_exports

if TYPE_CHECKING:
    from dashboards._export import ExportError, export_job
    from dashboards._links import RunLink, runs_of
    from dashboards._preflight import TrackingStoreError, check_tracking_uri
    from dashboards._queries import (
        ArchitectureDetails,
        RankedArchitecture,
        TaskResult,
        UnknownArchitectureError,
        UnknownTaskError,
        describe_architecture,
        job_architectures,
        parameter_count,
        top_architectures,
    )
    from dashboards._tracking import Tracker, track_job
    from dashboards._views import VIEW_NAMES, ensure_views

# Loaded on first use (PEP 562), so that `cellsearch` commands load only the parts they use.
__getattr__ = lazy_exports(
    globals(),
    {
        "dashboards._export": ("ExportError", "export_job"),
        "dashboards._links": ("RunLink", "runs_of"),
        "dashboards._preflight": ("TrackingStoreError", "check_tracking_uri"),
        "dashboards._queries": (
            "ArchitectureDetails",
            "RankedArchitecture",
            "TaskResult",
            "UnknownArchitectureError",
            "UnknownTaskError",
            "describe_architecture",
            "job_architectures",
            "parameter_count",
            "top_architectures",
        ),
        "dashboards._tracking": ("Tracker", "track_job"),
        "dashboards._views": ("VIEW_NAMES", "ensure_views"),
    },
)


__all__ = [
    "VIEW_NAMES",
    "ArchitectureDetails",
    "ExportError",
    "RankedArchitecture",
    "RunLink",
    "TaskResult",
    "Tracker",
    "TrackingStoreError",
    "UnknownArchitectureError",
    "UnknownTaskError",
    "check_tracking_uri",
    "describe_architecture",
    "ensure_views",
    "export_job",
    "job_architectures",
    "parameter_count",
    "runs_of",
    "top_architectures",
    "track_job",
]
