"""Hyperparameter tuning: one Optuna study per (job, architecture, task), driven by ask-and-tell.

Studies live in Optuna's RDB storage in the results database (Optuna's own tables), so
``optuna.load_study(study_name=..., storage=db_url)`` and Optuna's dashboards read them.
Each study is an ``optuna.Study`` on :class:`~search._optuna_storage.BatchedRDBStorage`,
which serves the samplers' and pruners' reads from memory and writes every change through
to the database at once: a trial is stored ``RUNNING`` with its parameters when asked, its
intermediate values as they are reported, its final state when told; a population's trials
share one transaction. A study is loaded back from the database when a job resumes;
``RUNNING`` trials a crash left behind are marked ``FAIL`` then.

Example:
    >>> from optuna.distributions import FloatDistribution
    >>> import os, tempfile
    >>> url = "sqlite:///" + os.path.join(tempfile.mkdtemp(), "results.db")
    >>> book = StudyBook(url, sampler="random", pruner="none", seed=0)
    >>> from workers import Direction, TrialStatus
    >>> study = book.study("job1-arch1-memorize", Direction.MAXIMIZE, {"lr": FloatDistribution(0.1, 1.0)})
    >>> trial = study.ask()
    >>> study.tell(trial.number, TrialStatus.OK, 0.5)
    >>> import optuna
    >>> loaded = optuna.load_study(study_name="job1-arch1-memorize", storage=url)
    >>> [t.state.name for t in loaded.trials], loaded.best_value
    (['COMPLETE'], 0.5)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from search._engine import SQLITE_LOCK_TIMEOUT_SECONDS, is_sqlite, sqlite_file, use_fast_sqlite_commits
from search._optuna_storage import BatchedRDBStorage
from workers import Direction, TrialStatus

optuna.logging.set_verbosity(optuna.logging.WARNING)

_STATES: dict[TrialStatus, TrialState] = {
    TrialStatus.OK: TrialState.COMPLETE,
    TrialStatus.PRUNED: TrialState.PRUNED,
    TrialStatus.DIVERGED: TrialState.FAIL,
    TrialStatus.FAILED: TrialState.FAIL,
    TrialStatus.INTERRUPTED: TrialState.FAIL,
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


PrunerKind = Literal["none", "median", "hyperband", "successive_halving"]
"""The pruners a job may pick for the trials inside one (cell, task) study."""


def make_pruner(kind: PrunerKind) -> optuna.pruners.BasePruner:
    """The Optuna pruner of a study. ``successive_halving`` is Optuna's asynchronous
    successive halving (ASHA) over the intermediate values a trial reports every ``eval_every``
    steps; ``hyperband`` runs several such brackets."""
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def open_storage(url: str) -> BatchedRDBStorage:
    """Optuna's storage on the results database; SQLite gets the results store's settings
    (WAL, ``synchronous=NORMAL``, a long lock timeout) so the two engines share the file well."""
    sqlite = is_sqlite(url)
    engine_kwargs: dict[str, Any] = (
        {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_SECONDS}} if sqlite else {"pool_pre_ping": True}
    )
    backend = RDBStorage(url, engine_kwargs=engine_kwargs)
    if sqlite_file(url) is not None:
        use_fast_sqlite_commits(backend.engine)
    return BatchedRDBStorage(backend)


@dataclass
class AskedTrial:
    """A trial handed out by :meth:`TunedStudy.ask`: its number and sampled parameters."""

    number: int
    params: dict[str, Any]
    trial: optuna.Trial = field(repr=False)
    reported_steps: set[int] = field(repr=False, default_factory=set)


class TunedStudy:
    """One study: an ``optuna.Study`` asked and told by the driver, stored as it goes."""

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
        try:
            study_id: int | None = self._storage.get_study_id_from_name(name)
        except KeyError:
            study_id = None
        self._sampler_kind, self._seed = book.sampler, seed
        # Reseeded before every ask (see ask_many); this one only serves Optuna's own calls.
        sampler = make_sampler(book.sampler, seed)
        pruner = make_pruner(book.pruner)
        if study_id is None:
            self._study = optuna.create_study(
                study_name=name,
                storage=self._storage,
                direction=Direction(direction).value,
                sampler=sampler,
                pruner=pruner,
            )
        else:
            self._fail_left_running(study_id, keep=book.keep_running.get(name, set()))
            self._study = optuna.load_study(
                study_name=name, storage=self._storage, sampler=sampler, pruner=pruner
            )
        self.study_id = self._storage.get_study_id_from_name(name) if study_id is None else study_id
        self._open: dict[int, AskedTrial] = {}

    def _fail_left_running(self, study_id: int, keep: set[int]) -> None:
        """Trials a crash left ``RUNNING`` never finished: mark them ``FAIL``, except those a
        resumed job runs again (``keep``: their numbers), which keep their number and parameters."""
        with self._storage.batch():
            for trial in self._storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
                if trial.number in keep:
                    continue
                trial_id = self._storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
                self._storage.set_trial_state_values(trial_id, TrialState.FAIL)

    @property
    def num_trials(self) -> int:
        """Trials in the study, any state."""
        return len(self._study.get_trials(deepcopy=False))

    def enqueue(self, params: dict[str, Any], repeat: int = 1) -> bool:
        """Make ``params`` the next trial (a child inheriting its parent's best), or the next
        ``repeat`` trials (a final round's seeds); the parameters outside this study's space are
        dropped, ``False`` when none is left or one is out of range."""
        kept = {k: v for k, v in params.items() if k in self.space}
        if not kept or any(
            not self.space[k]._contains(self.space[k].to_internal_repr(v)) for k, v in kept.items()
        ):
            return False
        for _ in range(repeat):
            self._study.enqueue_trial(kept, skip_if_exists=repeat == 1)
        return True

    def ask(self) -> AskedTrial:
        """Sample a trial and record it ``RUNNING`` in the database."""
        return self.ask_many(1)[0]

    def ask_many(self, count: int, ordinals: Sequence[int] | None = None) -> list[AskedTrial]:
        """Sample ``count`` trials (a population's members) and record them ``RUNNING`` in one
        transaction. ``ordinals``: the trials' places in the study's sequence of asks; each is
        sampled by a sampler seeded from the study's seed and its ordinal, so a trial's parameters
        depend on what the study has been told, never on when it is asked (a resumed job asks
        again what its interrupted run asked)."""
        if ordinals is None:
            first = self.num_trials
            ordinals = list(range(first, first + count))
        if len(ordinals) != count:
            raise ValueError(f"ordinals: {len(ordinals)} given for {count} trials")
        trials = []
        with self._storage.batch():
            for ordinal in ordinals:
                self._study.sampler = make_sampler(self._sampler_kind, derived_seed(self._seed, ordinal))
                trials.append(self._study.ask(self.space))
        asked = [AskedTrial(t.number, dict(t.params), t) for t in trials]
        self._open.update((a.number, a) for a in asked)
        return asked

    def adopt(self, number: int) -> AskedTrial:
        """Take back a trial an earlier run of the job asked (a resumed job runs it again, or
        tells its stored result): open again, with its parameters."""
        trial_id = self._storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        frozen = self._storage.get_trial(trial_id)
        asked = AskedTrial(number, dict(frozen.params), optuna.Trial(self._study, trial_id))
        self._open[number] = asked
        return asked

    def report(self, number: int, step: int, value: float) -> bool:
        """Record an intermediate value; True when the pruner says stop."""
        asked = self._open.get(number)
        if asked is None or not math.isfinite(value):
            return False
        if step not in asked.reported_steps:
            asked.reported_steps.add(step)
            asked.trial.report(value, step)
        return bool(asked.trial.should_prune())

    def tell(self, number: int, status: TrialStatus, value: float | None) -> None:
        """Finish a trial: ``ok`` is COMPLETE with ``value``, ``pruned`` PRUNED, anything else FAIL."""
        self.tell_many([(number, status, value)])

    def tell_many(self, outcomes: Sequence[tuple[int, TrialStatus, float | None]]) -> None:
        """:meth:`tell` for several ``(number, status, value)`` in one transaction; numbers that
        are not open (told already, or never asked) are skipped."""
        with self._storage.batch():
            for number, status, value in outcomes:
                asked = self._open.pop(number, None)
                if asked is None:
                    continue
                state = _STATES[status]
                if state == TrialState.COMPLETE and (value is None or not math.isfinite(value)):
                    state = TrialState.FAIL
                values = [float(value)] if state == TrialState.COMPLETE and value is not None else None
                self._study.tell(asked.trial, values, state=state, skip_if_finished=True)

    def abandon_open(self) -> None:
        """Mark every asked trial that was not told FAIL (the job stops with them unfinished)."""
        for number in list(self._open):
            self.tell(number, TrialStatus.INTERRUPTED, None)


class StudyBook:
    """The studies of one job run: one storage (one engine), studies cached by name."""

    def __init__(
        self,
        url: str,
        sampler: Literal["random", "tpe"] = "random",
        pruner: PrunerKind = "none",
        seed: int = 0,
    ) -> None:
        self.storage = open_storage(url)
        self.sampler = sampler
        self.pruner = pruner
        self.seed = seed
        self._studies: dict[str, TunedStudy] = {}
        self.keep_running: dict[str, set[int]] = {}
        """Study name -> numbers of ``RUNNING`` trials a resumed job runs again (not failed on load)."""

    def study(
        self,
        name: str,
        direction: Direction,
        space: dict[str, BaseDistribution],
        pairing: str | None = None,
    ) -> TunedStudy:
        """The study called ``name``, created (or loaded from the database) on first use.

        ``pairing`` (the driver passes the task's id): studies that share it share their seed, so
        their ``k``-th asks draw the same parameters from the same space, a paired design across
        the cells of a task (see :meth:`TunedStudy.ask_many`); without it the seed comes from the
        name. With ``tpe`` only the random start-up trials (before the study has
        ``n_startup_trials`` finished ones) are paired: later draws follow each cell's own results.
        """
        if name not in self._studies:
            seed = (
                derived_seed(self.seed, name) if pairing is None else derived_seed(self.seed, "pair", pairing)
            )
            self._studies[name] = TunedStudy(self, name, direction, space, seed)
        return self._studies[name]

    def cached(self, name: str) -> TunedStudy | None:
        return self._studies.get(name)

    def forget(self, name: str) -> None:
        """Drop a study from the cache (its architecture is done); it is loaded again if needed.
        Keeps the driver's memory flat over thousands of architectures."""
        study = self._studies.get(name)
        if study is not None and not study._open:
            del self._studies[name]
            self.storage.release(study.study_id)

    def abandon_open(self) -> None:
        for study in self._studies.values():
            study.abandon_open()

    def close(self) -> None:
        self.storage.backend.engine.dispose()
