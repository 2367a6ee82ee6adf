"""The read side of the results database: every record the store hands out, by id or filtered.

:class:`StoreReader` opens no transaction that writes; ``cellsearch status``, the reports
and the driver's resume read through it (:class:`~search._result_store.ResultStore`, the
writer, is a reader too). The leaderboard and an architecture's history are query
functions over a reader: :mod:`search._leaderboard`, :mod:`search._architecture_history`.

Example:
    >>> from search._result_store import ResultStore
    >>> store = ResultStore.open("sqlite://")
    >>> store.latest_job_id() is None and store.list_jobs() == []
    True
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, case, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from cells import CellGraph, canonical_hash
from search._intervals import Interval
from search._jobspec import JobSpec
from search._ranking import by_score
from search._records import (
    ArchitectureCounts,
    ArchitectureRecord,
    EvaluationRecord,
    JobArchitectureRecord,
    JobRecord,
    JobSummary,
    TrialCounts,
    TrialRecord,
    aware_utc,
    record,
)
from search._schema import TRIAL_RUNNING, Architecture, Evaluation, Job, JobArchitecture, Trial
from search._states import SETTLED_EVALUATIONS
from search._store_errors import StoreError, UnknownJobError
from workers import TrialStatus


class StoreReader:
    """Reads cellsearch results from one SQL database (SQLite file or PostgreSQL).

    Holds one engine; use it from one thread, and close it when done.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def url(self) -> str:
        """The database URL with the password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    # -- jobs ----------------------------------------------------------------------------

    def get_job(self, job_id: int) -> JobRecord:
        """The job with id ``job_id``; raises :class:`UnknownJobError`."""
        with self._sessions() as s:
            return record(JobRecord, self._job(s, job_id))

    def latest_job_id(self) -> int | None:
        """The most recently created job, ``None`` when there is none."""
        with self._sessions() as s:
            return s.scalar(select(func.max(Job.id)))

    def list_jobs(self) -> list[JobRecord]:
        """Every job, oldest first."""
        with self._sessions() as s:
            return [record(JobRecord, j) for j in s.scalars(select(Job).order_by(Job.id))]

    def load_job_spec(self, job_id: int) -> JobSpec:
        """The validated spec a job was launched with (for ``resume``)."""
        return self.get_job(job_id).job_spec()

    def load_strategy_state(self, job_id: int) -> dict[str, Any] | None:
        """The last state saved by :meth:`save_strategy_state`, ``None`` if never saved."""
        with self._sessions() as s:
            return self._job(s, job_id).strategy_state

    # -- architectures -------------------------------------------------------------------

    def get_architecture(self, arch_id: int) -> ArchitectureRecord:
        with self._sessions() as s:
            arch = s.get(Architecture, arch_id)
            if arch is None:
                raise StoreError(f"unknown architecture {arch_id}")
            return record(ArchitectureRecord, arch)

    def find_architecture(self, graph_or_hash: CellGraph | str) -> int | None:
        """The id of the architecture equivalent to a graph (or with a canonical hash), if known."""
        key = graph_or_hash if isinstance(graph_or_hash, str) else canonical_hash(graph_or_hash)
        with self._sessions() as s:
            return s.scalar(select(Architecture.id).where(Architecture.canonical_hash == key))

    def job_architecture(self, job_id: int, arch_id: int) -> JobArchitectureRecord | None:
        with self._sessions() as s:
            row = s.get(JobArchitecture, (job_id, arch_id))
            return None if row is None else record(JobArchitectureRecord, row)

    def job_architectures(self, job_id: int, *, listed_only: bool = False) -> list[JobArchitectureRecord]:
        """A job's architectures in the order they were proposed."""
        query = select(JobArchitecture).where(JobArchitecture.job_id == job_id)
        if listed_only:
            query = query.where(JobArchitecture.listed.is_(True))
        with self._sessions() as s:
            rows = s.scalars(query.order_by(JobArchitecture.proposed_at, JobArchitecture.architecture_id))
            return [record(JobArchitectureRecord, r) for r in rows]

    def settled_scores(self, job_id: int) -> list[tuple[int, tuple[float | None, float | None]]]:
        """``(architecture id, (score, final score))`` of a job's architectures that are settled
        (evaluated, filtered out or scored), in the order they were proposed: what a tracker
        logs (and logs again when either score changed)."""
        ja = JobArchitecture
        query = (
            select(ja.architecture_id, ja.score, ja.final_score)
            .where(
                ja.job_id == job_id,
                or_(ja.evaluated.is_(True), ja.filter_passed.is_(False), ja.score.is_not(None)),
            )
            .order_by(ja.proposed_at, ja.architecture_id)
        )
        with self.engine.connect() as conn:
            return [(arch_id, (score, final)) for arch_id, score, final in conn.execute(query).all()]

    # -- evaluations and trials ----------------------------------------------------------

    def get_evaluation(self, evaluation_id: int) -> EvaluationRecord:
        with self._sessions() as s:
            row = s.get(Evaluation, evaluation_id)
            if row is None:
                raise StoreError(f"unknown evaluation {evaluation_id}")
            return record(EvaluationRecord, row)

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
            return [record(EvaluationRecord, r) for r in s.scalars(query.order_by(Evaluation.id))]

    def find_reusable_evaluation(
        self, arch_id: int, task_key: str, *, exclude_job_id: int | None = None
    ) -> EvaluationRecord | None:
        """A finished evaluation (``done`` or ``filtered-out``) of the architecture on a task
        with the same key, from another job: the one with the most completed trials."""
        query = select(Evaluation).where(
            Evaluation.architecture_id == arch_id,
            Evaluation.task_key == task_key,
            Evaluation.status.in_(SETTLED_EVALUATIONS),
        )
        if exclude_job_id is not None:
            query = query.where(Evaluation.job_id != exclude_job_id)
        query = query.order_by(Evaluation.trials_completed.desc(), Evaluation.id).limit(1)
        with self._sessions() as s:
            row = s.scalar(query)
            return None if row is None else record(EvaluationRecord, row)

    def ok_trial_values(self, evaluation_id: int) -> list[float]:
        """The values of an evaluation's ``ok`` trials, in one query: its own trials and, for one
        copied from an earlier job, the original's (whose best value it carries)."""
        source = select(Evaluation.reused_from_id).where(Evaluation.id == evaluation_id).scalar_subquery()
        query = select(Trial.value).where(
            or_(Trial.evaluation_id == evaluation_id, Trial.evaluation_id == source),
            Trial.status == TrialStatus.OK,
            Trial.value.is_not(None),
        )
        with self.engine.connect() as conn:
            return [float(v) for v in conn.execute(query.order_by(Trial.id)).scalars() if v is not None]

    def get_trial(self, trial_id: int) -> TrialRecord:
        with self._sessions() as s:
            trial = s.get(Trial, trial_id)
            if trial is None:
                raise StoreError(f"unknown trial {trial_id}")
            return record(TrialRecord, trial)

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
            return [record(TrialRecord, t) for t in s.scalars(query)]

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
                select(ja.architecture_id, ja.score, ja.score_low, ja.score_high)
                .where(ja.job_id == job_id, ja.score.is_not(None))
                .order_by(*by_score(ja))
                .limit(1)
            ).first()
            return JobSummary(
                job_id=job.id,
                name=job.name,
                state=job.state,
                created_at=aware_utc(job.created_at),
                started_at=aware_utc(job.started_at),
                finished_at=aware_utc(job.finished_at),
                architectures=ArchitectureCounts(*(int(c or 0) for c in counts)),
                trials=TrialCounts(
                    completed=statuses.get(TrialStatus.OK, 0),
                    running=statuses.get(TRIAL_RUNNING, 0),
                    pruned=statuses.get(TrialStatus.PRUNED, 0),
                    failed=statuses.get(TrialStatus.FAILED, 0),
                    diverged=statuses.get(TrialStatus.DIVERGED, 0),
                    interrupted=statuses.get(TrialStatus.INTERRUPTED, 0),
                ),
                best_arch_id=None if best is None else best[0],
                best_score=None if best is None else best[1],
                best_score_interval=None if best is None else Interval.of(best[2], best[3]),
                error=job.error,
            )

    def valued_evaluations(self, job_id: int, task_labels: list[str]) -> int:
        """How many of the job's evaluations on the tasks ``task_labels`` have a best value."""
        with self._sessions() as s:
            query = (
                select(func.count())
                .select_from(Evaluation)
                .where(
                    Evaluation.job_id == job_id,
                    Evaluation.task_label.in_(task_labels),
                    Evaluation.best_value.is_not(None),
                )
            )
            return int(s.scalar(query) or 0)

    def job_standings(self, job_id: int) -> list[tuple[str, float | None, bool | None]]:
        """``(canonical hash, score, filter passed)`` of each architecture of the job."""
        ja = JobArchitecture
        with self._sessions() as s:
            rows = s.execute(
                select(Architecture.canonical_hash, ja.score, ja.filter_passed)
                .join(Architecture, Architecture.id == ja.architecture_id)
                .where(ja.job_id == job_id)
            ).all()
        return [(str(h), score, passed) for h, score, passed in rows]

    def common_trial_errors(self, job_id: int, limit: int = 1) -> list[tuple[str, int]]:
        """The job's most frequent errors of failed trials, with how many trials had each."""
        with self._sessions() as s:
            rows = s.execute(
                select(Trial.error, func.count())
                .where(Trial.job_id == job_id, Trial.status == TrialStatus.FAILED, Trial.error.is_not(None))
                .group_by(Trial.error)
                .order_by(func.count().desc(), Trial.error)
                .limit(limit)
            ).all()
        return [(str(error), int(count)) for error, count in rows]

    # -- internals -----------------------------------------------------------------------

    @staticmethod
    def _job(s: Session, job_id: int) -> Job:
        job = s.get(Job, job_id)
        if job is None:
            raise UnknownJobError(f"unknown job {job_id}")
        return job
