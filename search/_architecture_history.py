"""One architecture in depth: its lineage back to its first ancestor and how every job saw it (its
rank there and its result on each task, with the best trial's hyperparameters).

Example:
    >>> from search._jobspec import JobSpec
    >>> from search._result_store import ResultStore
    >>> from cells import library
    >>> store = ResultStore.open("sqlite://")
    >>> job_id = store.create_job(JobSpec.from_yaml_text(
    ...     "name: demo\\nstrategy: {kind: fixed, cells: [gru]}\\ntasks: [{name: memorize}]"))
    >>> gru, _ = store.add_architecture(library.get("gru"), job_id=job_id, library_name="gru")
    >>> child, _ = store.add_architecture(library.get("mut1"), job_id=job_id, parent_id=gru, mutation="swap")
    >>> [(step.arch_id, step.mutation) for step in architecture_history(store, child).lineage]
    [(2, 'swap'), (1, None)]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, literal_column, select
from sqlalchemy.orm import Session, aliased

from search._final_board import final_baselines, final_seeds
from search._intervals import Interval
from search._leaderboard import (
    EVALUATION_COLUMNS,
    PARAMETER_COUNT_HIDDEN,
    TaskResult,
    job_tasks,
    parameter_count,
    parameter_hidden,
    task_result,
)
from search._origin import origin_text
from search._ranking import ranked_ahead
from search._records import finite, interval_columns
from search._schema import Architecture, Evaluation, Job, JobArchitecture, Trial
from search._store_errors import UnknownArchitectureError
from search._store_reader import StoreReader

# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineageStep:
    """An ancestor of an architecture (the first step is the architecture itself)."""

    arch_id: int
    library_name: str | None
    mutation: str | None
    """How this architecture was made from the next step, or for a random cell
    ``random cell (job J, seed N)`` (``None``: a library cell or a cell from a file)."""
    generation: int
    canonical_hash: str
    parent_id: int | None = None

    @property
    def origin(self) -> str:
        """How it came to be, in words (:func:`search._origin.origin_text`)."""
        return origin_text(self.library_name, self.parent_id, self.mutation)


@dataclass(frozen=True)
class TaskDetail:
    """A :class:`TaskResult` with its best trial's hyperparameters."""

    result: TaskResult
    best_hparams: dict[str, Any] | None
    best_trial_params: int | None
    """The trained model's parameter count in the best trial."""
    best_trial_seconds: float | None


@dataclass(frozen=True)
class JobMembership:
    """How one job saw an architecture."""

    job_id: int
    job_name: str
    score: float | None
    rank: int | None
    generation: int
    listed: bool
    filter_passed: bool | None
    evaluated: bool
    duplicate: bool
    tasks: list[TaskDetail]
    score_interval: Interval | None = None
    final_score: float | None = None
    """The final round's score (``docs/final-round.md``); ``None`` where it did not take it."""
    final_interval: Interval | None = None
    final_seeds: int | None = None
    """Seeds of the job's final round (``None``: the job has none)."""
    final_baselines: dict[str, str] | None = None
    """Final task -> the baseline it was judged against."""


@dataclass(frozen=True)
class ArchitectureHistory:
    """An architecture, its lineage and every job that saw it (``cellsearch results show``)."""

    arch_id: int
    canonical_hash: str
    library_name: str | None
    graph: dict[str, Any]
    equations: str
    num_states: int
    num_nodes: int
    op_counts: dict[str, int]
    parameter_count: int
    first_job_id: int | None
    lineage: list[LineageStep]
    jobs: list[JobMembership]
    parameter_hidden: int = PARAMETER_COUNT_HIDDEN
    """The input and hidden size ``parameter_count`` is counted at: that of the jobs shown
    when they agree (``search._leaderboard.parameter_hidden``), else the reference size."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (what ``cellsearch results show --format json`` prints, before the runs)."""
        return {
            "arch_id": self.arch_id,
            "canonical_hash": self.canonical_hash,
            "library_name": self.library_name,
            "equations": self.equations,
            "num_states": self.num_states,
            "num_nodes": self.num_nodes,
            "op_counts": self.op_counts,
            "parameter_count": self.parameter_count,
            "parameter_hidden": self.parameter_hidden,
            "first_job_id": self.first_job_id,
            "graph": self.graph,
            "lineage": [
                {
                    "arch_id": s.arch_id,
                    "library_name": s.library_name,
                    "mutation": s.mutation,
                    "origin": s.origin,
                    "generation": s.generation,
                    "canonical_hash": s.canonical_hash,
                }
                for s in self.lineage
            ],
            "jobs": [_membership_dict(j) for j in self.jobs],
        }


def _membership_dict(j: JobMembership) -> dict[str, Any]:
    return {
        "job_id": j.job_id,
        "job_name": j.job_name,
        "score": finite(j.score),
        **interval_columns("score", j.score_interval),
        "final_score": finite(j.final_score),
        **interval_columns("final", j.final_interval),
        "rank": j.rank,
        "generation": j.generation,
        "listed": j.listed,
        "filter_passed": j.filter_passed,
        "evaluated": j.evaluated,
        "duplicate": j.duplicate,
        "per_task": {
            t.result.task: {
                **t.result.to_dict(),
                "best_hparams": t.best_hparams,
                "best_trial_id": t.result.best_trial_id,
                "best_trial_params": t.best_trial_params,
                "best_trial_seconds": t.best_trial_seconds,
            }
            for t in j.tasks
        },
    }


# -- queries ---------------------------------------------------------------------------------


def architecture_history(store: StoreReader, arch_id: int, job_id: int | None = None) -> ArchitectureHistory:
    """One architecture: its graph and equations, its lineage back to its first ancestor, and its
    results (with the best trial's hyperparameters) in every job that evaluated it (or
    only in ``job_id``). Raises :class:`UnknownArchitectureError`."""
    with Session(store.engine) as conn:
        record = conn.get(Architecture, arch_id)
        if record is None:
            raise UnknownArchitectureError(f"unknown architecture {arch_id}")
        if job_id is not None:
            store.get_job(job_id)  # raises UnknownJobError
        lineage = _lineage(conn, arch_id)
        jobs = _memberships(store, conn, arch_id, job_id)
    shown = [job_id] if job_id is not None else [m.job_id for m in jobs]
    sizes = {parameter_hidden(store, j) for j in shown}
    hidden = sizes.pop() if len(sizes) == 1 else PARAMETER_COUNT_HIDDEN
    return ArchitectureHistory(
        arch_id=record.id,
        canonical_hash=record.canonical_hash,
        library_name=record.library_name,
        graph=record.graph,
        equations=record.equations,
        num_states=record.num_states,
        num_nodes=record.num_nodes,
        op_counts=dict(record.op_counts),
        parameter_count=parameter_count(record.graph, hidden),
        parameter_hidden=hidden,
        first_job_id=record.first_job_id,
        lineage=lineage,
        jobs=jobs,
    )


def _memberships(store: StoreReader, conn: Session, arch_id: int, job_id: int | None) -> list[JobMembership]:
    """How each job (or only ``job_id``) saw the architecture, oldest job first."""
    ja = JobArchitecture
    query = select(ja, Job.name).join(Job, Job.id == ja.job_id).where(ja.architecture_id == arch_id)
    if job_id is not None:
        query = query.where(ja.job_id == job_id)
    memberships = conn.execute(query.order_by(ja.job_id)).all()
    evaluations = conn.execute(
        select(*EVALUATION_COLUMNS).where(Evaluation.architecture_id == arch_id).order_by(Evaluation.id)
    ).all()
    best_trials = _best_trials(conn, [ev.best_trial_id for ev in evaluations if ev.best_trial_id])
    jobs = []
    for row in memberships:
        member = row.JobArchitecture
        rank = None
        if member.score is not None:
            ahead = select(func.count()).where(
                ranked_ahead(ja, member.job_id, arch_id, member.score, member.final_score)
            )
            rank = int(conn.execute(ahead).scalar_one()) + 1
        details = [_task_detail(ev, best_trials) for ev in evaluations if ev.job_id == member.job_id]
        jobs.append(
            JobMembership(
                job_id=member.job_id,
                job_name=row.name,
                score=member.score,
                rank=rank,
                generation=member.generation,
                listed=bool(member.listed),
                filter_passed=member.filter_passed,
                evaluated=bool(member.evaluated),
                duplicate=bool(member.duplicate),
                tasks=_in_job_order(store, member.job_id, details),
                score_interval=Interval.of(member.score_low, member.score_high),
                final_score=member.final_score,
                final_interval=Interval.of(member.final_low, member.final_high),
                final_seeds=final_seeds(store, member.job_id),
                final_baselines=final_baselines(store, member.job_id)
                if any(d.result.final for d in details)
                else None,
            )
        )
    return jobs


def _best_trials(conn: Session, trial_ids: Sequence[int]) -> dict[int, Any]:
    """The hyperparameters, parameter count and seconds of the given trials, by id."""
    query = select(Trial.id, Trial.hparams, Trial.num_params, Trial.seconds).where(Trial.id.in_(trial_ids))
    return {t.id: t for t in conn.execute(query).all()}


def _task_detail(ev: Any, best_trials: dict[int, Any]) -> TaskDetail:
    best = best_trials.get(ev.best_trial_id) if ev.best_trial_id else None
    return TaskDetail(
        result=task_result(ev),
        best_hparams=None if best is None else best.hparams,
        best_trial_params=None if best is None else best.num_params,
        best_trial_seconds=None if best is None else best.seconds,
    )


def _lineage(conn: Session, arch_id: int) -> list[LineageStep]:
    """The architecture and its ancestors (parent first after it), by one recursive query."""
    a = Architecture
    chain = (
        select(a.id, a.parent_id, literal_column("0").label("depth"))
        .where(a.id == arch_id)
        .cte("chain", recursive=True)
    )
    parent = aliased(a)
    chain = chain.union_all(
        select(parent.id, parent.parent_id, (chain.c.depth + 1).label("depth"))
        .join(chain, parent.id == chain.c.parent_id)
        .where(chain.c.depth < 10_000)  # a guard; parents are always older, so there is no cycle
    )
    rows = conn.execute(
        select(a.id, a.library_name, a.mutation, a.generation, a.canonical_hash, a.parent_id)
        .join(chain, chain.c.id == a.id)
        .order_by(chain.c.depth)
    ).all()
    return [
        LineageStep(r.id, r.library_name, r.mutation, r.generation, r.canonical_hash, r.parent_id)
        for r in rows
    ]


def _in_job_order(store: StoreReader, job_id: int, details: Iterable[TaskDetail]) -> list[TaskDetail]:
    order = {name: i for i, name in enumerate(job_tasks(store, job_id))}
    return sorted(details, key=lambda d: (order.get(d.result.task, len(order)), d.result.task))
