"""Read-only queries over the results database, as ``cellsearch results`` uses them.

The queries themselves are ``search``'s public read functions (the leaderboard, a job's
architectures, an architecture's history), re-exported here; this module adds what only
the dashboards know: the MLflow runs an architecture was logged to.

Example:
    >>> from search import JobSpec, ResultStore
    >>> from cells import library
    >>> store = ResultStore.open("sqlite://")
    >>> job_id = store.create_job(JobSpec.from_yaml_text(
    ...     "name: demo\\nstrategy: {kind: fixed, cells: [gru]}\\ntasks: [{name: memorize}]"))
    >>> arch_id, _ = store.add_architecture(library.get("gru"), job_id=job_id, library_name="gru")
    >>> details = describe_architecture(store, arch_id)
    >>> details.lineage[0].library_name, details.runs
    ('gru', [])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dashboards._links import RunLink, runs_of
from search import (
    ArchitectureHistory,
    JobMembership,
    LineageStep,
    RankedArchitecture,
    StoreReader,
    TaskDetail,
    TaskResult,
    UnknownArchitectureError,
    UnknownTaskError,
    architecture_history,
    final_baselines,
    final_seeds,
    job_architectures,
    job_tasks,
    parameter_count,
    resolve_job,
    top_architectures,
)

__all__ = [
    "ArchitectureDetails",
    "JobMembership",
    "LineageStep",
    "RankedArchitecture",
    "TaskDetail",
    "TaskResult",
    "UnknownArchitectureError",
    "UnknownTaskError",
    "describe_architecture",
    "final_baselines",
    "final_seeds",
    "job_architectures",
    "job_tasks",
    "parameter_count",
    "resolve_job",
    "top_architectures",
]


@dataclass(frozen=True)
class ArchitectureDetails(ArchitectureHistory):
    """Everything ``cellsearch results show`` prints about one architecture: its history and
    the MLflow runs it was logged to."""

    runs: list[RunLink] = field(default_factory=list)

    def to_dict(self, dashboard: str | None = None) -> dict[str, Any]:
        """JSON-ready; a run's link points at ``dashboard`` when its store is not a server."""
        return {
            **super().to_dict(),
            "mlflow_runs": [
                {
                    "job_id": r.job_id,
                    "tracking_uri": r.tracking_uri,
                    "experiment_id": r.experiment_id,
                    "run_id": r.run_id,
                    "url": r.url(dashboard),
                }
                for r in self.runs
            ],
        }


def describe_architecture(store: StoreReader, arch_id: int, job_id: int | None = None) -> ArchitectureDetails:
    """One architecture: its graph and equations, its lineage back to its first ancestor, its
    results (with the best trial's hyperparameters) in every job that evaluated it (or
    only in ``job_id``) and its MLflow runs."""
    history = architecture_history(store, arch_id, job_id)
    runs = runs_of(store.engine, arch_id=arch_id, job_id=job_id)
    return ArchitectureDetails(**vars(history), runs=runs)
