"""How a job's MLflow experiment opens: as model training (not GenAI), on its runs table
with the columns a researcher compares (score, per-task relative scores, size, lineage),
best first; and the job's leaderboard as an MLflow table on the job's run.

The MLflow UI (3.x) reads the experiment's kind from the tag ``mlflow.experimentKind``, and
the runs table's columns from a saved view, an experiment tag
``mlflow.sharedViewState.<key>`` that the page's address names (``?viewStateShareKey=<key>``);
without it the table shows no metric column until the user picks them.

Example:
    >>> experiment_name(None, "quickstart", 3)
    'quickstart (job 3)'
    >>> table_columns(["arith"])[:4]
    ['metrics.`score`', 'metrics.`score_low`', 'metrics.`score_high`', 'metrics.`arith.relative`']
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dashboards._tracking_ops import metric_key
from search import StoreReader, top_architectures

if TYPE_CHECKING:
    from mlflow import MlflowClient

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
"""The kind the MLflow UI (3.x) reads to open an experiment as model training, not GenAI."""
VIEW_KEY = "cellsearch"
"""The experiment's saved view of its runs table (see the module docstring)."""
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
JOB_TAG = "cellsearch.job_id"
"""On a job's experiment: the job it holds (``cellsearch dashboard`` opens the latest)."""
MAX_EXPERIMENT_NAME = 500
"""MLflow's limit on an experiment's name."""
LEADERBOARD_FILE = "leaderboard.json"
JOB_NOTE = (
    "The job's run: its file (`job.yaml` and the parameters), its progress over time (the "
    "metrics' charts), and at its end the leaderboard (`leaderboard.json`, an MLflow table). "
    "Every architecture is a run of this experiment."
)
MAX_LEADERBOARD_ROWS = 100_000


def experiment_name(chosen: str | None, job_name: str, job_id: int) -> str:
    """The experiment of a job: the one chosen, else one per job, named after it."""
    name = (chosen or "").strip() or f"{job_name.strip() or 'job'} (job {job_id})"
    return name[:MAX_EXPERIMENT_NAME]


def table_columns(tasks: Sequence[str]) -> list[str]:
    """The runs table's columns: the score and its interval, per task the relative score,
    then what the architecture is (size, generation, mutation)."""
    metrics = ["score", "score_low", "score_high", *(f"{metric_key(t)}.relative" for t in tasks)]
    params = ["parameter_count", "generation", "mutation"]
    return [
        *(f"metrics.`{m}`" for m in metrics),
        *(f"params.`{p}`" for p in params),
        "attributes.`Duration`",
    ]


def view_state(tasks: Sequence[str]) -> str:
    """The experiment's saved runs view (JSON, as the MLflow UI reads it): the columns of
    :func:`table_columns`, best score first."""
    return json.dumps(
        {
            "orderByKey": "metrics.`score`",
            "orderByAsc": False,
            "selectedColumns": table_columns(tasks),
            "columnOrder": ["attributes.`Run Name`", *table_columns(tasks)],
            "runsHiddenMode": "SHOW_ALL",
        }
    )


def set_experiment_view(client: MlflowClient, experiment_id: str, tasks: Sequence[str], job_id: int) -> None:
    """Tag the job's experiment: model training, its runs table's view, its job."""
    for key, value in (
        (EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND),
        (VIEW_TAG, view_state(tasks)),
        (JOB_TAG, str(job_id)),
    ):
        client.set_experiment_tag(experiment_id, key, value)


def leaderboard_table(store: StoreReader, job_id: int) -> dict[str, list[Any]]:
    """The job's leaderboard as columns (the rows ``cellsearch results top`` ranks)."""
    rows = top_architectures(store, job_id, limit=MAX_LEADERBOARD_ROWS)
    tasks = list(dict.fromkeys(t for r in rows for t in r.per_task))
    columns: dict[str, list[Any]] = {
        "rank": [r.rank for r in rows],
        "architecture": [
            f"arch-{r.arch_id}" + (f"-{r.library_name}" if r.library_name else "") for r in rows
        ],
        "score": [r.score for r in rows],
        "score_low": [r.score_interval.low if r.score_interval else None for r in rows],
        "score_high": [r.score_interval.high if r.score_interval else None for r in rows],
    }
    for task in tasks:
        columns[f"{task}.relative"] = [
            r.per_task[task].relative if task in r.per_task else None for r in rows
        ]
    columns |= {
        "parameter_count": [r.parameter_count for r in rows],
        "generation": [r.generation for r in rows],
        "mutation": [r.mutation or "" for r in rows],
        "equations": [r.equations for r in rows],
    }
    return columns


def log_leaderboard(client: MlflowClient, store: StoreReader, job_id: int, run_id: str) -> None:
    """The leaderboard on the job's run, as an MLflow table (the run's artifacts, and the
    experiment's evaluation view)."""
    client.log_table(run_id, data=leaderboard_table(store, job_id), artifact_file=LEADERBOARD_FILE)


def runs_page(base_url: str, experiment_id: str) -> str:
    """The address of an experiment's runs table, as model training, in the saved view."""
    query = f"viewStateShareKey={VIEW_KEY}&workflowType=machine_learning"
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def latest_job_experiment(tracking_uri: str) -> str | None:
    """The experiment of the job logged last to a store (``None``: no job logged yet)."""
    from mlflow import MlflowClient

    experiments = MlflowClient(tracking_uri=tracking_uri).search_experiments(
        filter_string=f"tags.`{JOB_TAG}` != ''", order_by=["creation_time DESC"], max_results=1
    )
    return str(experiments[0].experiment_id) if experiments else None
