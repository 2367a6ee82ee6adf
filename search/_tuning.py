"""Hyperparameter tuning: one Optuna study per (job, architecture, task), driven by ask-and-tell.

Studies live in Optuna's RDB storage in the results database (Optuna's own tables), so
``optuna.load_study(study_name=..., storage=db_url)`` and Optuna's dashboards read them.
The driver samples and prunes against an in-memory mirror of each study and writes every
change through to the database at once: a trial is stored ``RUNNING`` with its parameters
when asked, its intermediate values as they are reported, its final state when told. The
mirror saves the per-call reads of Optuna's RDB storage (listing a study's trials for every
sample, every pruning decision) that would otherwise bound the driver's trial rate. A study
is loaded back from the database when a job resumes; ``RUNNING`` trials a crash left
behind are marked ``FAIL`` then.

Each write is one short transaction (a population's trials share one). Optuna's public
storage calls re-read the trial and every parameter's earlier distribution before each
write (a dozen queries for one trial's parameters), which alone held the driver under 40
trials/s on SQLite; so the rows go in through Optuna's own table definitions
(:class:`_TableWriter`), falling back to the public calls when those definitions are not
what this module knows.

Example:
    >>> from optuna.distributions import FloatDistribution
    >>> import os, tempfile
    >>> url = "sqlite:///" + os.path.join(tempfile.mkdtemp(), "results.db")
    >>> book = StudyBook(url, sampler="random", pruner="none", seed=0)
    >>> study = book.study("job1-arch1-memorize", "maximize", {"lr": FloatDistribution(0.1, 1.0)})
    >>> trial = study.ask()
    >>> study.tell(trial.number, "ok", 0.5)
    >>> import optuna
    >>> loaded = optuna.load_study(study_name="job1-arch1-memorize", storage=book.storage)
    >>> [t.state.name for t in loaded.trials], loaded.best_value
    (['COMPLETE'], 0.5)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import optuna
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.storages import RDBStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Engine, bindparam, insert, update
from sqlalchemy.engine import make_url

from search._engine import use_fast_sqlite_commits
from workers import Direction, TrialStatus

optuna.logging.set_verbosity(optuna.logging.WARNING)

_STATES: dict[str, TrialState] = {
    "ok": TrialState.COMPLETE,
    "pruned": TrialState.PRUNED,
    "diverged": TrialState.FAIL,
    "failed": TrialState.FAIL,
    "interrupted": TrialState.FAIL,
}


def study_name(job_id: int, arch_id: int, task_key: str, task: str) -> str:
    """The study of an architecture on a task within a job, e.g. ``job3-arch17-memorize-1a2b3c4d``.

    The task key (settings and budget, see :func:`search._jobspec.task_key`) keeps studies of
    the same task with different settings apart.
    """
    return f"job{job_id}-arch{arch_id}-{task}-{task_key[:8]}"


def derived_seed(*parts: object) -> int:
    """A 32-bit seed from any values (equal parts, equal seed; nearby parts, unrelated seeds)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "big")


def make_sampler(kind: Literal["random", "tpe"], seed: int) -> optuna.samplers.BaseSampler:
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(kind: Literal["none", "median", "hyperband"]) -> optuna.pruners.BasePruner:
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def open_storage(url: str) -> RDBStorage:
    """Optuna's RDB storage on the results database; SQLite gets the results store's settings
    (WAL, ``synchronous=NORMAL``, a long lock timeout) so the two engines share the file well."""
    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True}
    storage = RDBStorage(url, engine_kwargs=engine_kwargs)
    if sqlite and parsed.database not in (None, "", ":memory:"):
        use_fast_sqlite_commits(storage.engine)
    return storage


@dataclass
class AskedTrial:
    """A trial handed out by :meth:`TunedStudy.ask`: its number and sampled parameters."""

    number: int
    params: dict[str, Any]
    trial: optuna.Trial = field(repr=False)
    storage_id: int = field(repr=False, default=-1)


class TunedStudy:
    """One study: an in-memory Optuna study for sampling and pruning, written through to RDB."""

    def __init__(
        self,
        book: StudyBook,
        name: str,
        direction: Direction,
        space: dict[str, BaseDistribution],
        seed: int,
    ) -> None:
        self.name = name
        self.space = space
        self._storage = book.storage
        self._writer = book.writer
        try:
            self._study_id = self._storage.get_study_id_from_name(name)
            stored = self._storage.get_all_trials(self._study_id, deepcopy=False)
        except KeyError:
            self._study_id = self._storage.create_new_study([StudyDirection[direction.upper()]], name)
            stored = []
        # A resumed study continues the random stream where it left off, not from its start.
        self._memory = optuna.create_study(
            direction=Direction(direction).value,
            sampler=make_sampler(book.sampler, derived_seed(seed, len(stored))),
            pruner=make_pruner(book.pruner),
        )
        for frozen in stored:
            if frozen.state == TrialState.RUNNING:  # left by a crash: it never finished
                self._storage.set_trial_state_values(frozen._trial_id, TrialState.FAIL)
                frozen = _copy(frozen, state=TrialState.FAIL)
            self._memory.add_trial(frozen)
        self._open: dict[int, AskedTrial] = {}

    @property
    def num_trials(self) -> int:
        """Trials in the study, any state."""
        return len(self._memory.trials)

    def enqueue(self, params: dict[str, Any]) -> bool:
        """Make ``params`` the next trial (a child inheriting its parent's best); the parameters
        outside this study's space are dropped, ``False`` when none is left or one is out of range."""
        kept = {k: v for k, v in params.items() if k in self.space}
        if not kept or any(
            not self.space[k]._contains(self.space[k].to_internal_repr(v)) for k, v in kept.items()
        ):
            return False
        self._memory.enqueue_trial(kept, skip_if_exists=True)
        return True

    def ask(self) -> AskedTrial:
        """Sample a trial and record it ``RUNNING`` in the database."""
        return self.ask_many(1)[0]

    def ask_many(self, count: int) -> list[AskedTrial]:
        """Sample ``count`` trials (a population's members) and record them ``RUNNING`` in one
        transaction."""
        trials = [self._memory.ask(self.space) for _ in range(count)]
        if self._writer is not None:
            ids = self._writer.add_running(
                self._study_id, [(t.number, t.params, t.distributions) for t in trials]
            )
        else:
            ids = [
                self._storage.create_new_trial(
                    self._study_id,
                    template_trial=_copy(
                        self._memory._storage.get_trial(t._trial_id), state=TrialState.RUNNING
                    ),
                )
                for t in trials
            ]
        asked = [AskedTrial(t.number, dict(t.params), t, i) for t, i in zip(trials, ids, strict=True)]
        self._open.update((a.number, a) for a in asked)
        return asked

    def report(self, number: int, step: int, value: float) -> bool:
        """Record an intermediate value; True when the pruner says stop."""
        asked = self._open.get(number)
        if asked is None or not math.isfinite(value):
            return False
        if step in asked.trial.storage.get_trial(asked.trial._trial_id).intermediate_values:
            return bool(asked.trial.should_prune())
        asked.trial.report(value, step)
        if self._writer is not None:
            self._writer.add_intermediate(asked.storage_id, step, value)
        else:
            self._storage.set_trial_intermediate_value(asked.storage_id, step, value)
        return bool(asked.trial.should_prune())

    def tell(self, number: int, status: TrialStatus, value: float | None) -> None:
        """Finish a trial: ``ok`` is COMPLETE with ``value``, ``pruned`` PRUNED, anything else FAIL."""
        self.tell_many([(number, status, value)])

    def tell_many(self, outcomes: Sequence[tuple[int, TrialStatus, float | None]]) -> None:
        """:meth:`tell` for several ``(number, status, value)`` in one transaction; numbers that
        are not open (told already, or never asked) are skipped."""
        finished: list[tuple[int, TrialState, list[float] | None]] = []
        for number, status, value in outcomes:
            asked = self._open.pop(number, None)
            if asked is None:
                continue
            state = _STATES[status]
            if state == TrialState.COMPLETE and (value is None or not math.isfinite(value)):
                state = TrialState.FAIL
            values = [float(value)] if state == TrialState.COMPLETE and value is not None else None
            frozen = self._memory.tell(asked.trial, values, state=state, skip_if_finished=True)
            finished.append(
                (asked.storage_id, frozen.state, frozen.values if frozen.state != TrialState.FAIL else None)
            )
        if self._writer is not None:
            self._writer.finish(finished)
        else:
            for storage_id, state, final_values in finished:
                self._storage.set_trial_state_values(storage_id, state, final_values)

    def abandon_open(self) -> None:
        """Mark every asked trial that was not told FAIL (the job stops with them unfinished)."""
        for number in list(self._open):
            self.tell(number, TrialStatus.INTERRUPTED, None)


class StudyBook:
    """The studies of one job run: one RDB storage (one engine), studies cached by name."""

    def __init__(
        self,
        url: str,
        sampler: Literal["random", "tpe"] = "random",
        pruner: Literal["none", "median", "hyperband"] = "none",
        seed: int = 0,
    ) -> None:
        self.storage = open_storage(url)
        self.writer = _TableWriter.create(self.storage.engine)
        self.sampler = sampler
        self.pruner = pruner
        self.seed = seed
        self._studies: dict[str, TunedStudy] = {}

    def study(
        self, name: str, direction: Direction, space: dict[str, BaseDistribution]
    ) -> TunedStudy:
        """The study called ``name``, created (or loaded from the database) on first use."""
        if name not in self._studies:
            self._studies[name] = TunedStudy(self, name, direction, space, derived_seed(self.seed, name))
        return self._studies[name]

    def cached(self, name: str) -> TunedStudy | None:
        return self._studies.get(name)

    def forget(self, name: str) -> None:
        """Drop a study from the cache (its architecture is done); it is loaded again if needed.
        Keeps the driver's memory flat over thousands of architectures."""
        study = self._studies.get(name)
        if study is not None and not study._open:
            del self._studies[name]

    def abandon_open(self) -> None:
        for study in self._studies.values():
            study.abandon_open()

    def close(self) -> None:
        self.storage.engine.dispose()


def _copy(frozen: FrozenTrial, state: TrialState) -> FrozenTrial:
    finished = frozen.datetime_complete or datetime.now()
    return FrozenTrial(
        number=frozen.number,
        state=state,
        value=None,
        values=frozen.values if state not in (TrialState.RUNNING, TrialState.FAIL) else None,
        datetime_start=frozen.datetime_start,
        datetime_complete=finished if state != TrialState.RUNNING else None,
        params=frozen.params,
        distributions=frozen.distributions,
        user_attrs=frozen.user_attrs,
        system_attrs=frozen.system_attrs,
        intermediate_values=frozen.intermediate_values,
        trial_id=frozen._trial_id,
    )


class _TableWriter:
    """Writes trial rows in one transaction per call, with Optuna's own table definitions.

    Equivalent to ``RDBStorage.create_new_trial`` (with a template), ``set_trial_state_values``
    and ``set_trial_intermediate_value`` for a study this process alone writes, without their
    re-reads. :meth:`create` returns ``None`` when the installed Optuna's tables are not the
    ones this code knows; the callers then use the public calls.
    """

    def __init__(self, engine: Engine, models: Any) -> None:
        self._engine = engine
        self._trials = models.TrialModel.__table__
        self._params = models.TrialParamModel.__table__
        self._values = models.TrialValueModel.__table__
        self._intermediate = models.TrialIntermediateValueModel.__table__
        self._value_repr = models.TrialValueModel.value_to_stored_repr
        self._intermediate_repr = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr
        self._insert_trials = insert(self._trials).returning(
            self._trials.c.trial_id, sort_by_parameter_order=True
        )
        self._finish_trials = (
            update(self._trials)
            .where(self._trials.c.trial_id == bindparam("_id"))
            .values(state=bindparam("_state"), datetime_complete=bindparam("_complete"))
        )

    @classmethod
    def create(cls, engine: Engine) -> _TableWriter | None:
        try:
            from optuna.storages._rdb import models

            writer = cls(engine, models)
            expected = {
                writer._trials: {
                    "trial_id",
                    "number",
                    "study_id",
                    "state",
                    "datetime_start",
                    "datetime_complete",
                },
                writer._params: {"trial_id", "param_name", "param_value", "distribution_json"},
                writer._values: {"trial_id", "objective", "value", "value_type"},
                writer._intermediate: {"trial_id", "step", "intermediate_value", "intermediate_value_type"},
            }
            if all(columns <= set(table.c.keys()) for table, columns in expected.items()):
                return writer
        except (ImportError, AttributeError):
            pass
        return None

    def add_running(
        self, study_id: int, trials: Sequence[tuple[int, dict[str, Any], dict[str, BaseDistribution]]]
    ) -> list[int]:
        """Insert ``(number, params, distributions)`` trials ``RUNNING``; returns their trial ids."""
        if not trials:
            return []
        now = _utc_now()
        rows = [
            {"number": number, "study_id": study_id, "state": TrialState.RUNNING, "datetime_start": now}
            for number, _, _ in trials
        ]
        with self._engine.begin() as conn:
            ids = [int(row[0]) for row in conn.execute(self._insert_trials, rows)]
            params = [
                {
                    "trial_id": trial_id,
                    "param_name": name,
                    "param_value": distributions[name].to_internal_repr(value),
                    "distribution_json": distribution_to_json(distributions[name]),
                }
                for trial_id, (_, values, distributions) in zip(ids, trials, strict=True)
                for name, value in values.items()
            ]
            if params:
                conn.execute(insert(self._params), params)
        return ids

    def add_intermediate(self, trial_id: int, step: int, value: float) -> None:
        stored, kind = self._intermediate_repr(value)
        with self._engine.begin() as conn:
            conn.execute(
                insert(self._intermediate).values(
                    trial_id=trial_id, step=step, intermediate_value=stored, intermediate_value_type=kind
                )
            )

    def finish(self, trials: Sequence[tuple[int, TrialState, list[float] | None]]) -> None:
        """Set ``(trial id, state, values)`` trials finished in one transaction."""
        if not trials:
            return
        now = _utc_now()
        values = []
        for trial_id, _, objectives in trials:
            for objective, value in enumerate(objectives or []):
                stored, kind = self._value_repr(value)
                values.append(
                    {"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind}
                )
        with self._engine.begin() as conn:
            if values:
                conn.execute(insert(self._values), values)
            conn.execute(
                self._finish_trials,
                [{"_id": trial_id, "_state": state, "_complete": now} for trial_id, state, _ in trials],
            )


def _utc_now() -> datetime:
    """Optuna's RDB storage keeps naive UTC times."""
    return datetime.now(UTC).replace(tzinfo=None)
