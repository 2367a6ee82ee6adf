"""Where each job and architecture was logged in MLflow: a small table in the results database.

The tracker records the MLflow run of every job (``architecture_id`` NULL) and of every
architecture it logged, so ``cellsearch results show`` prints the run's link without
asking the MLflow store, and a resumed job (or a later ``cellsearch results sync-mlflow``)
continues the same runs instead of starting new ones. One job may be logged to several
stores; ``tracking_uri`` tells them apart.

Example:
    >>> from search import ResultStore
    >>> store = ResultStore.open("sqlite://")
    >>> ensure_links_table(store.engine)
    >>> record_run(store.engine, "sqlite:///m.db", job_id=1, arch_id=None, experiment_id="1", run_id="abc")
    >>> [(r.job_id, r.arch_id, r.run_id) for r in runs_of(store.engine, job_id=1)]
    [(1, None, 'abc')]
    >>> run_url("http://mlflow:5000/", "1", "abc")
    'http://mlflow:5000/#/experiments/1/runs/abc?workflowType=machine_learning'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    Column,
    ColumnElement,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    inspect,
    select,
)

LINKS_TABLE = "cs_mlflow_runs"

_metadata = MetaData()
mlflow_runs = Table(
    LINKS_TABLE,
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("tracking_uri", String(500), nullable=False),
    Column("job_id", Integer, nullable=False),
    Column("architecture_id", Integer, nullable=True),
    Column("experiment_id", String(64), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_cs_mlflow_runs_job_arch", "job_id", "architecture_id"),
)


@dataclass(frozen=True)
class RunLink:
    """An MLflow run of a job (``arch_id`` None) or of one of its architectures."""

    tracking_uri: str
    job_id: int
    arch_id: int | None
    experiment_id: str
    run_id: str

    def url(self, dashboard: str | None = None) -> str:
        """The run's page: on the tracking server, or on ``dashboard`` (``cellsearch dashboard``)
        for a store that is not a server (a SQLite file)."""
        base = self.tracking_uri if is_server_uri(self.tracking_uri) else dashboard
        return run_url(base or "", self.experiment_id, self.run_id)


def is_server_uri(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """A run's page in the MLflow UI, opened as model training (the UI's default is GenAI)."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def ensure_links_table(engine: Engine) -> None:
    _metadata.create_all(engine, checkfirst=True)


def record_run(
    engine: Engine, tracking_uri: str, *, job_id: int, arch_id: int | None, experiment_id: str, run_id: str
) -> None:
    """Remember a run (replacing an earlier one of the same job, architecture and store)."""
    with engine.begin() as conn:
        conn.execute(mlflow_runs.delete().where(_match(tracking_uri, job_id, arch_id)))
        conn.execute(
            mlflow_runs.insert().values(
                tracking_uri=tracking_uri,
                job_id=job_id,
                architecture_id=arch_id,
                experiment_id=experiment_id,
                run_id=run_id,
                created_at=datetime.now(UTC),
            )
        )


def runs_of(
    engine: Engine,
    *,
    job_id: int | None = None,
    arch_id: int | None = None,
    tracking_uri: str | None = None,
    jobs_only: bool = False,
) -> list[RunLink]:
    """Recorded runs, filtered; an empty list when the table does not exist yet."""
    if LINKS_TABLE not in inspect(engine).get_table_names():
        return []
    query = select(mlflow_runs)
    if job_id is not None:
        query = query.where(mlflow_runs.c.job_id == job_id)
    if arch_id is not None:
        query = query.where(mlflow_runs.c.architecture_id == arch_id)
    if jobs_only:
        query = query.where(mlflow_runs.c.architecture_id.is_(None))
    if tracking_uri is not None:
        query = query.where(mlflow_runs.c.tracking_uri == tracking_uri)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(mlflow_runs.c.id)).all()
    return [RunLink(r.tracking_uri, r.job_id, r.architecture_id, r.experiment_id, r.run_id) for r in rows]


def _match(tracking_uri: str, job_id: int, arch_id: int | None) -> ColumnElement[bool]:
    arch = (
        mlflow_runs.c.architecture_id.is_(None)
        if arch_id is None
        else mlflow_runs.c.architecture_id == arch_id
    )
    return and_(mlflow_runs.c.tracking_uri == tracking_uri, mlflow_runs.c.job_id == job_id, arch)
