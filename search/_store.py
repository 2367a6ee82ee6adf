"""The results database API: what the driver writes and what ``status`` and the reports read.

:class:`ResultStore` is the single writer (the driver). Every method is one short
transaction, so a process killed at any point loses no committed work and leaves nothing
half-written: a trial's row and its evaluation's best value and counts change together.
Methods return plain frozen records, never live ORM objects.

Architectures are deduplicated by canonical hash across jobs; an evaluation of an
architecture on a task with the same settings (the task key) in an earlier job can be
copied into a new job instead of retraining.

Example:
    >>> from search._jobspec import JobSpec
    >>> from cells import library
    >>> spec = JobSpec.from_yaml_text(
    ...     "name: demo\\nstrategy: {kind: fixed, cells: [gru]}\\n"
    ...     "tasks: [{name: memorize, role: filter, threshold: 0.9}]")
    >>> store = ResultStore.open("sqlite://")  # in memory; a file or PostgreSQL URL in real use
    >>> job_id = store.create_job(spec)
    >>> arch_id, created = store.add_architecture(library.get("gru"), job_id=job_id, library_name="gru")
    >>> evaluation = store.get_or_create_evaluation(job_id, arch_id, spec.tasks[0])
    >>> trial_id = store.start_trial(evaluation.id, hparams={"learning_rate": 0.01})
    >>> from workers import TrialResult
    >>> result = TrialResult(status="ok", task="memorize", metric="accuracy",
    ...                      direction="maximize", value=0.95)
    >>> store.finish_trial(trial_id, result).best_value
    0.95
    >>> store.job_summary(job_id).trials.completed
    1
"""

from __future__ import annotations

import math
import os
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

from sqlalchemy import Connection, Engine, bindparam, case, create_engine, event, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from cells import CellGraph, CellsearchError, canonical_hash
from search import _migrate
from search._db import (
    EVALUATION_STATES,
    JOB_STATES,
    Architecture,
    Base,
    Evaluation,
    Job,
    JobArchitecture,
    Trial,
    utcnow,
)
from search._jobspec import JobSpec, TaskEntry
from workers import TrialResult

JobState = Literal["created", "running", "stopped", "finished", "failed", "interrupted"]
EvaluationStatus = Literal["pending", "running", "done", "filtered-out"]
TERMINAL_JOB_STATES = frozenset({"stopped", "finished", "failed", "interrupted"})


class StoreError(CellsearchError, RuntimeError):
    """A results-database problem the user can act on; the message says what to do."""


class NoDatabaseError(StoreError):
    """There are no cellsearch results at the URL (and the caller asked not to create them)."""


class DatabaseRevisionError(StoreError):
    """The database's schema revision does not match the code's (older, newer or foreign)."""


class UnknownJobError(StoreError, KeyError):
    """No job with that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown job"


# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRecord:
    id: int
    name: str
    state: str
    spec: dict[str, Any]
    code_version: str
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    def job_spec(self) -> JobSpec:
        """The stored spec, validated again (raises :class:`~search._jobspec.JobError`)."""
        return JobSpec.from_dict(self.spec, source=f"job {self.id}")


@dataclass(frozen=True)
class ArchitectureRecord:
    id: int
    canonical_hash: str
    graph: dict[str, Any]
    equations: str
    num_states: int
    num_nodes: int
    op_counts: dict[str, int]
    requires_input_equals_hidden: bool
    parent_id: int | None
    mutation: str | None
    generation: int
    library_name: str | None
    first_job_id: int | None

    def cell(self) -> CellGraph:
        return CellGraph.parse(self.graph)


@dataclass(frozen=True)
class EvaluationRecord:
    id: int
    job_id: int
    architecture_id: int
    task: str
    task_label: str
    task_key: str
    task_settings: dict[str, Any]
    metric: str
    direction: str
    status: str
    best_value: float | None
    relative_score: float | None
    best_trial_id: int | None
    trials_completed: int
    trials_pruned: int
    trials_failed: int
    trials_diverged: int
    reused_from_id: int | None

    @property
    def trials_finished(self) -> int:
        """Trials that ended (ok, pruned, failed or diverged); interrupted ones are not counted."""
        return self.trials_completed + self.trials_pruned + self.trials_failed + self.trials_diverged


@dataclass(frozen=True)
class TrialRecord:
    id: int
    job_id: int
    architecture_id: int
    evaluation_id: int
    task: str
    study_name: str | None
    optuna_trial_number: int | None
    hparams: dict[str, Any]
    status: str
    value: float | None
    metrics: dict[str, Any] | None
    curve: list[Any] | None
    num_params: int | None
    steps: int | None
    seconds: float | None
    device: str | None
    worker_node: str | None
    worker_host: str | None
    worker_pid: int | None
    error: str | None
    attempt: int
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class JobArchitectureRecord:
    job_id: int
    architecture_id: int
    generation: int
    score: float | None
    filter_passed: bool | None
    evaluated: bool
    listed: bool
    duplicate: bool


@dataclass(frozen=True)
class LeaderboardEntry:
    """One row of a job's leaderboard (best score first)."""

    rank: int
    architecture_id: int
    canonical_hash: str
    library_name: str | None
    score: float | None
    generation: int
    num_states: int
    num_nodes: int
    listed: bool


@dataclass(frozen=True)
class TrialCounts:
    completed: int = 0
    running: int = 0
    pruned: int = 0
    failed: int = 0
    diverged: int = 0
    interrupted: int = 0

    @property
    def total(self) -> int:
        return self.completed + self.running + self.pruned + self.failed + self.diverged + self.interrupted


@dataclass(frozen=True)
class ArchitectureCounts:
    proposed: int = 0
    passed_filter: int = 0
    filtered_out: int = 0
    evaluated: int = 0
    listed: int = 0


@dataclass(frozen=True)
class JobSummary:
    """What ``cellsearch status`` shows for a job."""

    job_id: int
    name: str
    state: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    architectures: ArchitectureCounts = field(default_factory=ArchitectureCounts)
    trials: TrialCounts = field(default_factory=TrialCounts)
    best_arch_id: int | None = None
    best_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``architectures`` is the number proposed, the stages are under
        ``architecture_stages``; ``best`` is ``None`` until an architecture has a score."""
        return {
            "job_id": self.job_id,
            "name": self.name,
            "state": self.state,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "architectures": self.architectures.proposed,
            "architecture_stages": asdict(self.architectures),
            "trials": {**asdict(self.trials), "total": self.trials.total},
            "best": None
            if self.best_arch_id is None
            else {"arch_id": self.best_arch_id, "score": self.best_score},
        }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""Marks a keyword argument that was not given (so ``None`` can be written on purpose)."""


# -- the store -------------------------------------------------------------------------------


class ResultStore:
    """Reads and writes cellsearch results in one SQL database (SQLite file or PostgreSQL).

    Open with :meth:`open`, which checks the schema revision first. One store holds one
    engine; use it from one thread (the driver's), and close it when done.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # An evaluation's (job, architecture, task) never changes: remember it to save a query per trial.
        self._evaluation_owner: dict[int, tuple[int, int, str]] = {}
        # Evaluations known to be past "pending", so start_trial skips a no-op update.
        self._running_evaluations: set[int] = set()

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        *,
        upgrade: bool = True,
        create: bool = True,
        migrations: str | Path | None = None,
    ) -> ResultStore:
        """Open the results database at ``url``, creating or upgrading its schema as allowed.

        A database without cellsearch tables gets them (``create``; other tables, such as
        Optuna's, are left alone). One at an older revision is upgraded (``upgrade``) or
        refused with :class:`DatabaseRevisionError` telling to run ``cellsearch db
        upgrade``. One at an unknown revision, or with cellsearch tables but no revision,
        is always refused. With ``create=False`` a missing SQLite file is not created
        (:class:`NoDatabaseError`). ``migrations`` points at another script folder (tests).
        """
        if not create:
            _require_sqlite_file(url)
        engine = make_engine(url)
        try:
            ensure_schema(engine, upgrade=upgrade, create=create, migrations=migrations)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    @property
    def url(self) -> str:
        """The database URL with the password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    # -- jobs ----------------------------------------------------------------------------

    def create_job(self, spec: JobSpec, *, code_version: str | None = None) -> int:
        """Record a new job (state ``created``) and return its id."""
        with self._transaction() as s:
            job = Job(
                name=spec.name,
                spec=spec.to_dict(),
                state="created",
                code_version=code_version if code_version is not None else package_code_version(),
            )
            s.add(job)
            s.flush()
            return job.id

    def set_job_state(self, job_id: int, state: JobState, *, error: str | None = None) -> None:
        """Move a job to ``state``; ``running`` stamps the start (first time), the terminal
        states (stopped, finished, failed, interrupted) the end; ``error`` is kept for ``failed``."""
        if state not in JOB_STATES:
            raise ValueError(f"state: expected one of {', '.join(JOB_STATES)}, got {state!r}")
        with self._transaction() as s:
            job = self._job(s, job_id)
            now = utcnow()
            job.state = state
            job.error = error
            if state == "running":
                job.started_at = job.started_at or now
                job.finished_at = None
            elif state in TERMINAL_JOB_STATES:
                job.finished_at = now

    def get_job(self, job_id: int) -> JobRecord:
        """The job with id ``job_id``; raises :class:`UnknownJobError`."""
        with self._sessions() as s:
            return _record(JobRecord, self._job(s, job_id))

    def latest_job_id(self) -> int | None:
        """The most recently created job, ``None`` when there is none."""
        with self._sessions() as s:
            return s.scalar(select(func.max(Job.id)))

    def list_jobs(self) -> list[JobRecord]:
        """Every job, oldest first."""
        with self._sessions() as s:
            return [_record(JobRecord, j) for j in s.scalars(select(Job).order_by(Job.id))]

    def load_job_spec(self, job_id: int) -> JobSpec:
        """The validated spec a job was launched with (for ``resume``)."""
        return self.get_job(job_id).job_spec()

    def save_strategy_state(self, job_id: int, state: dict[str, Any]) -> None:
        """Store the strategy's resumable state (JSON-ready), replacing the previous one."""
        with self._transaction() as s:
            result = s.execute(update(Job).where(Job.id == job_id).values(strategy_state=state))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise UnknownJobError(f"unknown job {job_id}")

    def load_strategy_state(self, job_id: int) -> dict[str, Any] | None:
        """The last state saved by :meth:`save_strategy_state`, ``None`` if never saved."""
        with self._sessions() as s:
            return self._job(s, job_id).strategy_state

    # -- architectures -------------------------------------------------------------------

    def add_architecture(
        self,
        graph: CellGraph,
        *,
        job_id: int,
        parent_id: int | None = None,
        mutation: str | None = None,
        generation: int = 0,
        library_name: str | None = None,
    ) -> tuple[int, bool]:
        """Record a proposed architecture and its membership in ``job_id``.

        Returns ``(architecture id, created)``: ``created`` is False when an equivalent
        graph (same canonical hash) is already known, from this or any earlier job; then
        the stored graph, parent and mutation are kept (a library name is added if new).
        """
        key = canonical_hash(graph)
        for _ in range(2):  # a second writer may insert the same hash between our select and insert
            try:
                with self._transaction() as s:
                    arch = s.scalar(select(Architecture).where(Architecture.canonical_hash == key))
                    created = arch is None
                    if arch is None:
                        arch = Architecture(
                            canonical_hash=key,
                            graph=graph.model_dump(mode="json"),
                            equations=_equations(graph),
                            num_states=graph.num_states,
                            num_nodes=len(graph.nodes),
                            op_counts=dict(graph.op_counts()),
                            requires_input_equals_hidden=graph.requires_input_equals_hidden,
                            parent_id=parent_id,
                            mutation=mutation,
                            generation=generation,
                            library_name=library_name,
                            first_job_id=job_id,
                        )
                        s.add(arch)
                        s.flush()
                    elif library_name and not arch.library_name:
                        arch.library_name = library_name
                    if s.get(JobArchitecture, (job_id, arch.id)) is None:
                        s.add(JobArchitecture(job_id=job_id, architecture_id=arch.id, generation=generation))
                    return arch.id, created
            except IntegrityError:
                continue
        raise StoreError(f"could not record architecture {key} (concurrent writers?)")

    def get_architecture(self, arch_id: int) -> ArchitectureRecord:
        with self._sessions() as s:
            arch = s.get(Architecture, arch_id)
            if arch is None:
                raise StoreError(f"unknown architecture {arch_id}")
            return _record(ArchitectureRecord, arch)

    def find_architecture(self, graph_or_hash: CellGraph | str) -> int | None:
        """The id of the architecture equivalent to a graph (or with a canonical hash), if known."""
        key = graph_or_hash if isinstance(graph_or_hash, str) else canonical_hash(graph_or_hash)
        with self._sessions() as s:
            return s.scalar(select(Architecture.id).where(Architecture.canonical_hash == key))

    def update_job_architecture(
        self,
        job_id: int,
        arch_id: int,
        *,
        score: float | None = UNSET,
        generation: int = UNSET,
        filter_passed: bool | None = UNSET,
        evaluated: bool = UNSET,
        listed: bool = UNSET,
        duplicate: bool = UNSET,
    ) -> None:
        """Set a job's view of an architecture; only the given fields change."""
        values = {
            k: v
            for k, v in dict(
                score=score,
                generation=generation,
                filter_passed=filter_passed,
                evaluated=evaluated,
                listed=listed,
                duplicate=duplicate,
            ).items()
            if v is not UNSET
        }
        if not values:
            return
        with self._transaction() as s:
            result = s.execute(
                update(JobArchitecture)
                .where(JobArchitecture.job_id == job_id, JobArchitecture.architecture_id == arch_id)
                .values(**values)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise StoreError(f"architecture {arch_id} is not part of job {job_id}")

    def set_listed(self, job_id: int, arch_ids: Iterable[int]) -> None:
        """Make exactly ``arch_ids`` the job's listed architectures (top-K list or population)."""
        ids = list(dict.fromkeys(arch_ids))
        with self._transaction() as s:
            s.execute(
                update(JobArchitecture)
                .where(JobArchitecture.job_id == job_id, JobArchitecture.listed.is_(True))
                .values(listed=False)
            )
            for start in range(0, len(ids), 500):
                s.execute(
                    update(JobArchitecture)
                    .where(
                        JobArchitecture.job_id == job_id,
                        JobArchitecture.architecture_id.in_(ids[start : start + 500]),
                    )
                    .values(listed=True)
                )

    def job_architecture(self, job_id: int, arch_id: int) -> JobArchitectureRecord | None:
        with self._sessions() as s:
            row = s.get(JobArchitecture, (job_id, arch_id))
            return None if row is None else _record(JobArchitectureRecord, row)

    def job_architectures(self, job_id: int, *, listed_only: bool = False) -> list[JobArchitectureRecord]:
        """A job's architectures in the order they were proposed."""
        query = select(JobArchitecture).where(JobArchitecture.job_id == job_id)
        if listed_only:
            query = query.where(JobArchitecture.listed.is_(True))
        with self._sessions() as s:
            rows = s.scalars(query.order_by(JobArchitecture.proposed_at, JobArchitecture.architecture_id))
            return [_record(JobArchitectureRecord, r) for r in rows]

    def top_architectures(self, job_id: int, limit: int = 10) -> list[LeaderboardEntry]:
        """The job's leaderboard: scored architectures, best first (ties: earliest proposed)."""
        query = (
            select(JobArchitecture, Architecture)
            .join(Architecture, Architecture.id == JobArchitecture.architecture_id)
            .where(JobArchitecture.job_id == job_id, JobArchitecture.score.is_not(None))
            .order_by(JobArchitecture.score.desc(), JobArchitecture.architecture_id)
            .limit(limit)
        )
        with self._sessions() as s:
            return [
                LeaderboardEntry(
                    rank=rank,
                    architecture_id=arch.id,
                    canonical_hash=arch.canonical_hash,
                    library_name=arch.library_name,
                    score=ja.score,
                    generation=ja.generation,
                    num_states=arch.num_states,
                    num_nodes=arch.num_nodes,
                    listed=ja.listed,
                )
                for rank, (ja, arch) in enumerate(s.execute(query).all(), start=1)
            ]

    # -- evaluations ---------------------------------------------------------------------

    def get_or_create_evaluation(self, job_id: int, arch_id: int, task: TaskEntry) -> EvaluationRecord:
        """The job's evaluation of an architecture on a task (by task key), created ``pending``."""
        key = task.key
        for _ in range(2):
            try:
                with self._transaction() as s:
                    row = s.scalar(
                        select(Evaluation).where(
                            Evaluation.job_id == job_id,
                            Evaluation.architecture_id == arch_id,
                            Evaluation.task_key == key,
                        )
                    )
                    if row is None:
                        row = Evaluation(
                            job_id=job_id,
                            architecture_id=arch_id,
                            task=task.name,
                            task_label=task.id,
                            task_key=key,
                            task_settings={
                                "settings": task.config.model_dump(mode="json"),
                                "budget": task.budget.model_dump(mode="json"),
                            },
                            metric=task.metric,
                            direction=task.direction,
                            status="pending",
                        )
                        s.add(row)
                        s.flush()
                    return _record(EvaluationRecord, row)
            except IntegrityError:
                continue
        raise StoreError(f"could not record the evaluation of architecture {arch_id} on {task.name}")

    def get_evaluation(self, evaluation_id: int) -> EvaluationRecord:
        with self._sessions() as s:
            row = s.get(Evaluation, evaluation_id)
            if row is None:
                raise StoreError(f"unknown evaluation {evaluation_id}")
            return _record(EvaluationRecord, row)

    def evaluations(
        self, job_id: int, *, arch_id: int | None = None, task_key: str | None = None
    ) -> list[EvaluationRecord]:
        """A job's evaluations, optionally of one architecture and/or one task key."""
        query = select(Evaluation).where(Evaluation.job_id == job_id)
        if arch_id is not None:
            query = query.where(Evaluation.architecture_id == arch_id)
        if task_key is not None:
            query = query.where(Evaluation.task_key == task_key)
        with self._sessions() as s:
            return [_record(EvaluationRecord, r) for r in s.scalars(query.order_by(Evaluation.id))]

    def set_evaluation(
        self,
        evaluation_id: int,
        *,
        status: EvaluationStatus = UNSET,
        relative_score: float | None = UNSET,
    ) -> None:
        """Set an evaluation's stage status and/or its score relative to the best baseline."""
        values: dict[str, Any] = {"updated_at": utcnow()}
        if status is not UNSET:
            if status not in EVALUATION_STATES:
                raise ValueError(f"status: expected one of {', '.join(EVALUATION_STATES)}, got {status!r}")
            values["status"] = status
            self._running_evaluations.discard(evaluation_id)
        if relative_score is not UNSET:
            values["relative_score"] = relative_score
        with self._transaction() as s:
            result = s.execute(update(Evaluation).where(Evaluation.id == evaluation_id).values(**values))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise StoreError(f"unknown evaluation {evaluation_id}")

    def find_reusable_evaluation(
        self, arch_id: int, task_key: str, *, exclude_job_id: int | None = None
    ) -> EvaluationRecord | None:
        """A finished evaluation (``done`` or ``filtered-out``) of the architecture on a task
        with the same key, from another job: the one with the most completed trials."""
        query = select(Evaluation).where(
            Evaluation.architecture_id == arch_id,
            Evaluation.task_key == task_key,
            Evaluation.status.in_(("done", "filtered-out")),
        )
        if exclude_job_id is not None:
            query = query.where(Evaluation.job_id != exclude_job_id)
        query = query.order_by(Evaluation.trials_completed.desc(), Evaluation.id).limit(1)
        with self._sessions() as s:
            row = s.scalar(query)
            return None if row is None else _record(EvaluationRecord, row)

    def copy_evaluation_into_job(
        self, evaluation_id: int, job_id: int, *, task_label: str | None = None
    ) -> EvaluationRecord:
        """Reuse an earlier job's evaluation in ``job_id``: its status, best value, relative
        score and counts are copied (``reused_from_id`` points at the original; its trials
        stay with the original). ``task_label``: the task entry's id in the new job (default:
        the original's). An evaluation the job already has with trials of its own is
        returned unchanged."""
        with self._transaction() as s:
            source = s.get(Evaluation, evaluation_id)
            if source is None:
                raise StoreError(f"unknown evaluation {evaluation_id}")
            row = s.scalar(
                select(Evaluation).where(
                    Evaluation.job_id == job_id,
                    Evaluation.architecture_id == source.architecture_id,
                    Evaluation.task_key == source.task_key,
                )
            )
            if row is not None and (row.id == source.id or _trial_count(row) > 0):
                return _record(EvaluationRecord, row)
            if row is None:
                row = Evaluation(
                    job_id=job_id, architecture_id=source.architecture_id, task_key=source.task_key
                )
                s.add(row)
            for name in (
                "task",
                "task_label",
                "task_settings",
                "metric",
                "direction",
                "status",
                "best_value",
                "relative_score",
                "best_trial_id",
                "trials_completed",
                "trials_pruned",
                "trials_failed",
                "trials_diverged",
            ):
                setattr(row, name, getattr(source, name))
            row.reused_from_id = source.reused_from_id or source.id
            row.task_label = task_label or source.task_label
            row.updated_at = utcnow()
            s.flush()
            return _record(EvaluationRecord, row)

    # -- trials --------------------------------------------------------------------------

    def start_trial(
        self,
        evaluation_id: int,
        *,
        hparams: dict[str, Any],
        study_name: str | None = None,
        optuna_trial_number: int | None = None,
        attempt: int = 1,
    ) -> int:
        """Record a trial as ``running`` (and a pending evaluation as running) and return its id."""
        (trial_id,) = self.start_trials(
            evaluation_id, [hparams], study_name=study_name, numbers=[optuna_trial_number], attempt=attempt
        )
        return trial_id

    def start_trials(
        self,
        evaluation_id: int,
        hparams: Sequence[dict[str, Any]],
        *,
        study_name: str | None = None,
        numbers: Sequence[int | None] | None = None,
        attempt: int = 1,
    ) -> list[int]:
        """:meth:`start_trial` for several trials of one evaluation (a population's members) in
        one transaction; returns their ids in order. ``numbers``: their Optuna trial numbers."""
        numbers = [None] * len(hparams) if numbers is None else list(numbers)
        if len(numbers) != len(hparams):
            raise ValueError(f"numbers: {len(numbers)} given for {len(hparams)} trials")
        if not hparams:
            return []
        now = utcnow()
        # Core statements, not the ORM: this and finish_trials are the hot path (every trial).
        with self.engine.begin() as conn:
            job_id, arch_id, task = self._owner(conn, evaluation_id)
            rows = [
                {
                    "job_id": job_id,
                    "architecture_id": arch_id,
                    "evaluation_id": evaluation_id,
                    "task": task,
                    "study_name": study_name,
                    "optuna_trial_number": number,
                    "hparams": _json_safe(hp),
                    "status": "running",
                    "attempt": attempt,
                    "started_at": now,
                }
                for hp, number in zip(hparams, numbers, strict=True)
            ]
            ids = [int(row[0]) for row in conn.execute(_INSERT_TRIALS_RETURNING, rows)]
            if evaluation_id not in self._running_evaluations:
                conn.execute(_START_EVALUATION, {"_id": evaluation_id, "updated_at": now})
                self._running_evaluations.add(evaluation_id)
        return ids

    def finish_trial(self, trial_id: int, result: TrialResult) -> EvaluationRecord:
        """Record a trial's outcome and, in the same transaction, its evaluation's counts and
        best value (only ``ok`` trials with a finite value compete for best). Returns the
        updated evaluation. A trial marked interrupted may still be finished (a late result);
        finishing a trial twice raises :class:`StoreError`."""
        return self.finish_trials([(trial_id, result)])[0]

    def finish_trials(self, outcomes: Sequence[tuple[int, TrialResult]]) -> list[EvaluationRecord]:
        """:meth:`finish_trial` for several ``(trial id, result)`` (a population's members) in one
        transaction: all are recorded or, on an error, none. Returns each trial's evaluation as
        it stands after all of them."""
        ids = [trial_id for trial_id, _ in outcomes]
        if len(set(ids)) != len(ids):
            raise StoreError(f"a trial cannot be finished twice in one call: {ids}")
        now = utcnow()
        with self.engine.begin() as conn:
            rows = {row.id: row for row in conn.execute(_SELECT_TRIALS, {"ids": ids})}
            updates, finished = [], []
            for trial_id, result in outcomes:
                row = _unfinished(rows.get(trial_id), trial_id)
                values = _finished_values(result, now)
                values["hparams"] = (
                    _json_safe({**row.hparams, **result.hparams}) if result.hparams else row.hparams
                )
                updates.append({"_id": trial_id, **values})
                finished.append(_Finished(row.evaluation_id, trial_id, result.status, values["value"]))
            if updates:
                conn.execute(_UPDATE_TRIAL, updates)
            evaluations = {
                e: self._count_trials(conn, e, finished, now) for e in {f.evaluation_id for f in finished}
            }
        return [evaluations[f.evaluation_id] for f in finished]

    def fail_trial(
        self,
        trial_id: int,
        error: str,
        *,
        status: Literal["failed", "interrupted"] = "failed",
    ) -> EvaluationRecord:
        """Record a trial that produced no :class:`TrialResult` (its worker died, Ray gave up)."""
        now = utcnow()
        with self.engine.begin() as conn:
            row = _unfinished(conn.execute(_SELECT_TRIALS, {"ids": [trial_id]}).first(), trial_id)
            conn.execute(
                _UPDATE_TRIAL, {"_id": trial_id, "status": status, "error": error, "finished_at": now}
            )
            return self._count_trials(
                conn, row.evaluation_id, [_Finished(row.evaluation_id, trial_id, status)], now
            )

    def _count_trials(
        self, conn: Connection, evaluation_id: int, finished: Sequence[_Finished], now: datetime
    ) -> EvaluationRecord:
        """Count the finished trials of ``evaluation_id`` into its counters, and the best ``ok``
        value into its best; return the updated row."""
        mine = [trial for trial in finished if trial.evaluation_id == evaluation_id]
        counts = Counter(_COUNTERS[t.status] for t in mine if t.status in _COUNTERS)
        values: dict[str, Any] = {"updated_at": now}
        values.update({counter: _EVALUATIONS.c[counter] + n for counter, n in counts.items()})
        best: float | None = None
        direction = ""
        for trial in mine:
            if trial.status == "ok" and trial.value is not None:
                if not direction:
                    best, direction = conn.execute(_SELECT_BEST, {"_id": evaluation_id}).one()
                if _better(trial.value, best, direction):
                    best = values["best_value"] = trial.value
                    values["best_trial_id"] = trial.trial_id
        conn.execute(_EVALUATIONS.update().where(_EVALUATIONS.c.id == evaluation_id).values(values))
        return _record(EvaluationRecord, conn.execute(_SELECT_EVALUATION, {"_id": evaluation_id}).one())

    def mark_running_trials_interrupted(self, job_id: int) -> int:
        """Mark the job's ``running`` trials ``interrupted`` (after Ctrl-C, or before a resume
        re-runs them); returns how many."""
        with self._transaction() as s:
            result = s.execute(
                update(Trial)
                .where(Trial.job_id == job_id, Trial.status == "running")
                .values(status="interrupted", finished_at=utcnow())
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def get_trial(self, trial_id: int) -> TrialRecord:
        with self._sessions() as s:
            trial = s.get(Trial, trial_id)
            if trial is None:
                raise StoreError(f"unknown trial {trial_id}")
            return _record(TrialRecord, trial)

    def trials(
        self,
        *,
        job_id: int | None = None,
        evaluation_id: int | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[TrialRecord]:
        """Trials filtered by job, evaluation and/or status, oldest first."""
        query = select(Trial)
        if job_id is not None:
            query = query.where(Trial.job_id == job_id)
        if evaluation_id is not None:
            query = query.where(Trial.evaluation_id == evaluation_id)
        if status is not None:
            query = query.where(Trial.status == status)
        query = query.order_by(Trial.id)
        if limit is not None:
            query = query.limit(limit)
        with self._sessions() as s:
            return [_record(TrialRecord, t) for t in s.scalars(query)]

    # -- summaries -----------------------------------------------------------------------

    def job_summary(self, job_id: int) -> JobSummary:
        """Counts of a job's architectures by stage and trials by status, and its best architecture."""
        with self._sessions() as s:
            job = self._job(s, job_id)
            statuses = dict(
                s.execute(
                    select(Trial.status, func.count()).where(Trial.job_id == job_id).group_by(Trial.status)
                ).all()
            )
            ja = JobArchitecture
            counts = s.execute(
                select(
                    func.count(),
                    func.sum(case((ja.filter_passed.is_(True), 1), else_=0)),
                    func.sum(case((ja.filter_passed.is_(False), 1), else_=0)),
                    func.sum(case((ja.evaluated.is_(True), 1), else_=0)),
                    func.sum(case((ja.listed.is_(True), 1), else_=0)),
                ).where(ja.job_id == job_id)
            ).one()
            best = s.execute(
                select(ja.architecture_id, ja.score)
                .where(ja.job_id == job_id, ja.score.is_not(None))
                .order_by(ja.score.desc(), ja.architecture_id)
                .limit(1)
            ).first()
            return JobSummary(
                job_id=job.id,
                name=job.name,
                state=job.state,
                created_at=_aware(job.created_at),
                started_at=_aware(job.started_at),
                finished_at=_aware(job.finished_at),
                architectures=ArchitectureCounts(*(int(c or 0) for c in counts)),
                trials=TrialCounts(
                    completed=statuses.get("ok", 0),
                    running=statuses.get("running", 0),
                    pruned=statuses.get("pruned", 0),
                    failed=statuses.get("failed", 0),
                    diverged=statuses.get("diverged", 0),
                    interrupted=statuses.get("interrupted", 0),
                ),
                best_arch_id=None if best is None else best[0],
                best_score=None if best is None else best[1],
            )

    # -- internals -----------------------------------------------------------------------

    @staticmethod
    def _job(s: Session, job_id: int) -> Job:
        job = s.get(Job, job_id)
        if job is None:
            raise UnknownJobError(f"unknown job {job_id}")
        return job

    def _owner(self, conn: Connection, evaluation_id: int) -> tuple[int, int, str]:
        owner = self._evaluation_owner.get(evaluation_id)
        if owner is None:
            row = conn.execute(
                select(Evaluation.job_id, Evaluation.architecture_id, Evaluation.task).where(
                    Evaluation.id == evaluation_id
                )
            ).first()
            if row is None:
                raise StoreError(f"unknown evaluation {evaluation_id}")
            owner = self._evaluation_owner[evaluation_id] = (row[0], row[1], row[2])
        return owner


# -- engine and schema -----------------------------------------------------------------------


def make_engine(url: str) -> Engine:
    """One engine per database. A SQLite file gets :func:`use_fast_sqlite_commits`, foreign
    keys on and a generous lock timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    memory = parsed.database in (None, "", ":memory:")
    engine = create_engine(
        url,
        connect_args={"timeout": 60, "check_same_thread": False},
        poolclass=StaticPool if memory else None,
    )

    if not memory:
        use_fast_sqlite_commits(engine)
    event.listen(engine, "connect", _foreign_keys_on)
    return engine


def use_fast_sqlite_commits(engine: Engine) -> None:
    """Give every new connection of a SQLite file engine WAL journaling and
    ``synchronous=NORMAL``: a commit costs no fsync of its own (SQLite's default costs one
    per commit, 5-40 ms), survives a crash of the process (a power loss may drop the last
    commits), and readers never block the writer. No effect on other databases; the
    results store, Optuna's storage on it and MLflow's SQLite store all use it."""
    if engine.dialect.name != "sqlite" or event.contains(engine, "connect", _wal_pragmas):
        return
    event.listen(engine, "connect", _wal_pragmas)
    engine.dispose()  # connections made before reconnect with the pragmas


def _wal_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _foreign_keys_on(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def ensure_schema(
    engine: Engine, *, upgrade: bool = True, create: bool = True, migrations: str | Path | None = None
) -> str:
    """Check (and create or upgrade, as allowed) the schema; returns the revision now in place."""
    shown = engine.url.render_as_string(hide_password=True)
    head = _migrate.head_revision(migrations)
    try:
        with engine.connect() as conn:
            revision = _migrate.current_revision(conn)
            ours = _migrate.existing_tables(conn)
    except OperationalError as exc:
        raise StoreError(f"cannot open the results database {shown}: {_reason(exc)}") from None
    if revision is None:
        if ours:
            raise DatabaseRevisionError(
                f"{shown} has tables named like cellsearch's ({', '.join(ours)}) but no schema "
                f"revision in cs_alembic_version: not a cellsearch database; refusing to touch it"
            )
        if not create:
            raise NoDatabaseError(f"no cellsearch results in {shown}")
        _migrate.upgrade(engine, head, migrations)
        return head
    if revision == head:
        return head
    if revision not in _migrate.known_revisions(migrations):
        raise DatabaseRevisionError(
            f"{shown} is at schema revision {revision!r}, unknown to this cellsearch (expects {head!r}): "
            f"it was written by a newer cellsearch; upgrade cellsearch to read it"
        )
    if not upgrade:
        raise DatabaseRevisionError(
            f"database at revision {revision}, code expects {head}: run `cellsearch db upgrade`"
        )
    _migrate.upgrade(engine, head, migrations)
    return head


def upgrade_database(url: str, *, migrations: str | Path | None = None) -> tuple[str | None, str]:
    """Create or upgrade the schema at ``url``; returns ``(revision before, revision after)``."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            before = _migrate.current_revision(conn)
        after = ensure_schema(engine, upgrade=True, create=True, migrations=migrations)
        return before, after
    except OperationalError as exc:
        raise StoreError(f"cannot open the results database: {_reason(exc)}") from None
    finally:
        engine.dispose()


def _require_sqlite_file(url: str) -> None:
    parsed = make_url(url)
    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file:")
    if parsed.get_backend_name() == "sqlite" and not in_memory and not os.path.exists(database):
        raise NoDatabaseError(f"no results database at {database} (no job has been launched with this URL)")


def _reason(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


@cache
def package_code_version() -> str:
    """The package version, plus ``git describe`` of the source tree when it is a checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("cellsearch")
    except PackageNotFoundError:
        text = "unknown"
    root = Path(__file__).resolve().parents[1]
    if (root / ".git").exists():
        try:
            described = subprocess.run(
                ["git", "describe", "--always", "--dirty", "--tags"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            described = ""
        if described:
            text += f"+git.{described}"
    return text


# -- conversions -----------------------------------------------------------------------------


def _equations(graph: CellGraph) -> str:
    try:
        from cells import to_equations

        return to_equations(graph)
    except Exception:  # rendering is a convenience; a renderer gap must not lose the architecture
        return ""


def _better(value: float, best: float | None, direction: str) -> bool:
    if best is None:
        return True
    return value > best if direction == "maximize" else value < best


_COUNTERS = {
    "ok": "trials_completed",
    "pruned": "trials_pruned",
    "failed": "trials_failed",
    "diverged": "trials_diverged",
}
"""The evaluation column counting each final trial status (interrupted trials are not counted)."""


class _Finished(NamedTuple):
    """A trial being finished, as its evaluation's counters need it."""

    evaluation_id: int
    trial_id: int
    status: str
    value: float | None = None


def _unfinished(row: Any, trial_id: int) -> Any:
    """``row`` (a trial's id, status, evaluation id and hparams) if the trial may be finished."""
    if row is None:
        raise StoreError(f"unknown trial {trial_id}")
    if row.status not in ("running", "interrupted"):
        raise StoreError(f"trial {trial_id} is already finished ({row.status})")
    return row


def _finished_values(result: TrialResult, now: datetime) -> dict[str, Any]:
    """The columns of a trial's row that its result sets."""
    worker = result.worker
    pid = worker.get("pid")
    return {
        "status": result.status,
        "value": _finite_or_none(result.value),
        "metrics": _json_safe(result.metrics),
        "curve": _json_safe([list(point) for point in result.curve]),
        "num_params": result.num_params,
        "steps": result.steps,
        "seconds": result.seconds,
        "device": result.device,
        "error": result.error,
        "worker_node": _str_or_none(worker.get("node_id", worker.get("node"))),
        "worker_host": _str_or_none(worker.get("hostname", worker.get("host"))),
        "worker_pid": int(pid) if isinstance(pid, int | str) and str(pid).isdigit() else None,
        "finished_at": now,
    }


# Statements of the per-trial hot path, built once: values come as execution parameters.
_TRIALS, _EVALUATIONS = Base.metadata.tables["cs_trials"], Base.metadata.tables["cs_evaluations"]
_INSERT_TRIAL = _TRIALS.insert()
_UPDATE_TRIAL = _TRIALS.update().where(_TRIALS.c.id == bindparam("_id"))
_INSERT_TRIALS_RETURNING = _TRIALS.insert().returning(_TRIALS.c.id, sort_by_parameter_order=True)
_SELECT_TRIALS = select(_TRIALS.c.id, _TRIALS.c.status, _TRIALS.c.evaluation_id, _TRIALS.c.hparams).where(
    _TRIALS.c.id.in_(bindparam("ids", expanding=True))
)
_START_EVALUATION = (
    _EVALUATIONS.update()
    .where(_EVALUATIONS.c.id == bindparam("_id"), _EVALUATIONS.c.status == "pending")
    .values(status="running")
)
_SELECT_BEST = select(_EVALUATIONS.c.best_value, _EVALUATIONS.c.direction).where(
    _EVALUATIONS.c.id == bindparam("_id")
)
_SELECT_EVALUATION = select(_EVALUATIONS).where(_EVALUATIONS.c.id == bindparam("_id"))


def _trial_count(row: Evaluation) -> int:
    return row.trials_completed + row.trials_pruned + row.trials_failed + row.trials_diverged


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _json_safe(value: Any) -> Any:
    """JSON columns refuse NaN/inf on PostgreSQL; store them as strings ("nan", "inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _aware(value: datetime | None) -> Any:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


_R = TypeVar("_R")


def _record(cls: type[_R], row: Any) -> _R:
    """A record from an ORM object or a Core row with the same column names; times made UTC."""
    values = {f.name: getattr(row, f.name) for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: _aware(v) if isinstance(v, datetime) else v for k, v in values.items()})
