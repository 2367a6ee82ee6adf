"""The results database's writer: what the driver records, one short transaction per call.

:class:`ResultStore` is the single writer (the driver). Every method is one short
transaction, so a process killed at any point loses no committed work and leaves nothing
half-written: a trial's row and its evaluation's best value and counts change together.
Methods return plain frozen records (:mod:`search._records`), never live ORM objects; the
reads are :class:`~search._store_reader.StoreReader`'s.

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
    >>> from workers import TrialResult, TrialStatus
    >>> result = TrialResult(status="ok", task="memorize", metric="accuracy",
    ...                      direction="maximize", value=0.95)
    >>> store.finish_trial(trial_id, result).best_value
    0.95
    >>> store.job_summary(job_id).trials.completed
    1
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cells import CellGraph, canonical_hash
from search import _trial_writes
from search._code_version import package_code_version
from search._engine import make_engine
from search._evaluation_copy import copy_evaluation
from search._intervals import Interval
from search._jobspec import JobSpec, TaskEntry
from search._leaderboard import RankedArchitecture, top_architectures
from search._records import EvaluationRecord, finite, interval_columns, record
from search._schema import (
    TRIAL_RUNNING,
    Architecture,
    Evaluation,
    Job,
    JobArchitecture,
    Trial,
    ensure_schema,
    utcnow,
)
from search._states import TERMINAL_JOB_STATES, EvaluationStatus, JobState
from search._store_errors import StoreError, UnknownJobError
from search._store_probe import check_results_url
from search._store_reader import StoreReader
from workers import TrialResult, TrialStatus

_JOB_STATES = tuple(JobState)
_EVALUATION_STATES = tuple(EvaluationStatus)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""Marks a keyword argument that was not given (so ``None`` can be written on purpose)."""


class ResultStore(StoreReader):
    """Writes (and reads) cellsearch results in one SQL database (SQLite file or PostgreSQL).

    Open with :meth:`open`, which checks the schema revision first. One store holds one
    engine; use it from one thread (the driver's), and close it when done.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
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
        option: str | None = None,
    ) -> ResultStore:
        """Open the results database at ``url``, creating or upgrading its schema as allowed.

        A database without cellsearch tables gets them (``create``; other tables, such as
        Optuna's, are left alone). One at an older revision is upgraded (``upgrade``) or
        refused with :class:`DatabaseRevisionError` telling to run ``cellsearch db
        upgrade``. One at an unknown revision, or with cellsearch tables but no revision,
        is always refused. With ``create=False`` a missing SQLite file is not created
        (:class:`NoDatabaseError`), and a file that is not a results database is refused before
        any pragma is set; ``option`` (``--db``) names the URL's source in those messages.
        ``migrations`` points at another script folder (tests).
        """
        if not create:
            check_results_url(url, option)  # before the engine: its pragmas write
        engine = make_engine(url)
        try:
            ensure_schema(engine, upgrade=upgrade, create=create, migrations=migrations)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

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
                state=JobState.CREATED,
                code_version=code_version if code_version is not None else package_code_version(),
            )
            s.add(job)
            s.flush()
            return job.id

    def set_job_state(self, job_id: int, state: JobState, *, error: str | None = None) -> None:
        """Move a job to ``state``; ``running`` stamps the start (first time), the terminal
        states (stopped, finished, failed, interrupted) the end; ``error`` is kept for ``failed``."""
        if state not in _JOB_STATES:
            raise ValueError(f"state: expected one of {', '.join(_JOB_STATES)}, got {state!r}")
        with self._transaction() as s:
            job = self._job(s, job_id)
            now = utcnow()
            job.state = state
            job.error = error
            if state == JobState.RUNNING:
                job.started_at = job.started_at or now
                job.finished_at = None
            elif state in TERMINAL_JOB_STATES:
                job.finished_at = now

    def save_strategy_state(self, job_id: int, state: dict[str, Any]) -> None:
        """Store the strategy's resumable state (JSON-ready), replacing the previous one."""
        with self._transaction() as s:
            result = s.execute(update(Job).where(Job.id == job_id).values(strategy_state=state))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise UnknownJobError(f"unknown job {job_id}")

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

        Returns ``(architecture id, new)``: ``new`` is False when an equivalent graph (same
        canonical hash) was first recorded by an earlier job; then the stored graph, parent and
        mutation are kept (a library name is added if new). Recording again an architecture this
        job recorded first (a resumed job replaying) changes nothing and gives ``new``.
        """
        key = canonical_hash(graph)
        for _ in range(2):  # a second writer may insert the same hash between our select and insert
            try:
                with self._transaction() as s:
                    arch = s.scalar(select(Architecture).where(Architecture.canonical_hash == key))
                    created = arch is None or arch.first_job_id == job_id
                    if arch is None:
                        arch = Architecture(
                            canonical_hash=key,
                            graph=graph.model_dump(mode="json"),
                            equations=_equations(graph),
                            num_states=len(graph.states_read),
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

    def update_job_architecture(
        self,
        job_id: int,
        arch_id: int,
        *,
        score: float | None = UNSET,
        score_interval: Interval | None = UNSET,
        generation: int = UNSET,
        filter_passed: bool | None = UNSET,
        evaluated: bool = UNSET,
        listed: bool = UNSET,
        duplicate: bool = UNSET,
        final_score: float | None = UNSET,
        final_interval: Interval | None = UNSET,
    ) -> None:
        """Set a job's view of an architecture; only the given fields change (a non-finite
        score is stored as none: the leaderboards rank only finite scores)."""
        values = {
            k: v
            for k, v in dict(
                score=score if score is UNSET else finite(score),
                final_score=final_score if final_score is UNSET else finite(final_score),
                generation=generation,
                filter_passed=filter_passed,
                evaluated=evaluated,
                listed=listed,
                duplicate=duplicate,
            ).items()
            if v is not UNSET
        }
        for prefix, interval in (("score", score_interval), ("final", final_interval)):
            if interval is not UNSET:
                values.update(interval_columns(prefix, interval))
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

    def top_architectures(
        self, job_id: int, limit: int = 10, *, final_first: bool = False
    ) -> list[RankedArchitecture]:
        """The job's leaderboard, best first, ties by :mod:`search._ranking`'s rule:
        :func:`search.top_architectures`. By the search's scores alone (what the driver takes
        its final round from); ``final_first``: a final round's architectures first, by their
        final score (what ``cellsearch status`` and ``launch`` print)."""
        return top_architectures(self, job_id, limit=limit, final_first=final_first)

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
                            status=EvaluationStatus.PENDING,
                        )
                        s.add(row)
                        s.flush()
                    return record(EvaluationRecord, row)
            except IntegrityError:
                continue
        raise StoreError(f"could not record the evaluation of architecture {arch_id} on {task.name}")

    def set_evaluation(
        self,
        evaluation_id: int,
        *,
        status: EvaluationStatus = UNSET,
        relative_score: float | None = UNSET,
        best_interval: Interval | None = UNSET,
        relative_interval: Interval | None = UNSET,
        final: tuple[float | None, str | None, float | None] = UNSET,
    ) -> None:
        """Set an evaluation's stage status, its score relative to the best baseline and/or the
        intervals of its best value and relative score (``None`` clears one); ``final``: a final
        task's seed mean, verdict and p-value."""
        values: dict[str, Any] = {"updated_at": utcnow()}
        if final is not UNSET:
            values["mean_value"], values["verdict"], values["p_value"] = final
        for prefix, interval in (("best", best_interval), ("relative", relative_interval)):
            if interval is not UNSET:
                values.update(interval_columns(prefix, interval))
        if status is not UNSET:
            if status not in _EVALUATION_STATES:
                raise ValueError(f"status: expected one of {', '.join(_EVALUATION_STATES)}, got {status!r}")
            values["status"] = status
            self._running_evaluations.discard(evaluation_id)
        if relative_score is not UNSET:  # a non-finite one is no score: never ranked
            values["relative_score"] = finite(relative_score)
        with self._transaction() as s:
            result = s.execute(update(Evaluation).where(Evaluation.id == evaluation_id).values(**values))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise StoreError(f"unknown evaluation {evaluation_id}")

    def copy_evaluation_into_job(
        self, evaluation_id: int, job_id: int, *, task_label: str | None = None
    ) -> EvaluationRecord:
        """Reuse an earlier job's evaluation in ``job_id``: its status, best value, relative
        score, their intervals and counts are copied (``reused_from_id`` points at the original;
        its trials stay with the original). ``task_label``: the task entry's id in the new job
        (default: the original's). An evaluation the job already has with trials of its own is
        returned unchanged."""
        with self._transaction() as s:
            return copy_evaluation(s, evaluation_id, job_id, task_label)

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
        launch: int | None = None,
        ordinals: Sequence[int] | None = None,
    ) -> list[int]:
        """:meth:`start_trial` for several trials of one evaluation (a population's members) in
        one transaction; returns their ids in order. ``numbers``: their Optuna trial numbers;
        ``launch``: the driver's launch they belong to; ``ordinals``: their places among the
        evaluation's trials."""
        numbers = [None] * len(hparams) if numbers is None else list(numbers)
        if len(numbers) != len(hparams):
            raise ValueError(f"numbers: {len(numbers)} given for {len(hparams)} trials")
        if not hparams:
            return []
        now = utcnow()
        # Core statements, not the ORM: this and finish_trials are the hot path (every trial).
        with self.engine.begin() as conn:
            owner = self._evaluation_owner.get(evaluation_id)
            if owner is None:
                owner = self._evaluation_owner[evaluation_id] = _trial_writes.evaluation_owner(
                    conn, evaluation_id
                )
            ids = _trial_writes.insert_running(
                conn,
                owner,
                evaluation_id,
                hparams,
                numbers,
                study_name=study_name,
                attempt=attempt,
                now=now,
                launch=launch,
                ordinals=ordinals,
            )
            if evaluation_id not in self._running_evaluations:
                _trial_writes.start_evaluation(conn, evaluation_id, now)
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
        with self.engine.begin() as conn:
            return _trial_writes.finish(conn, outcomes, utcnow())

    def fail_trial(
        self,
        trial_id: int,
        error: str,
        *,
        status: TrialStatus = TrialStatus.FAILED,
    ) -> EvaluationRecord:
        """Record a trial that produced no :class:`TrialResult` (its worker died, Ray gave up):
        ``failed`` counts it as finished, ``interrupted`` leaves it to run again."""
        with self.engine.begin() as conn:
            return _trial_writes.fail(conn, trial_id, error, status, utcnow())

    def mark_running_trials_interrupted(self, job_id: int) -> int:
        """Mark the job's ``running`` trials ``interrupted`` (after Ctrl-C, or before a resume
        re-runs them); returns how many."""
        with self._transaction() as s:
            result = s.execute(
                update(Trial)
                .where(Trial.job_id == job_id, Trial.status == TRIAL_RUNNING)
                .values(status=TrialStatus.INTERRUPTED, finished_at=utcnow())
            )
            return int(result.rowcount)  # type: ignore[attr-defined]


def _equations(graph: CellGraph) -> str:
    try:
        from cells import to_equations

        return to_equations(graph)
    except Exception:  # rendering is a convenience; a renderer gap must not lose the architecture
        return ""
