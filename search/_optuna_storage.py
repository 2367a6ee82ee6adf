"""An Optuna storage for studies one process writes: Optuna's RDB storage, mirrored and batched.

:class:`BatchedRDBStorage` implements Optuna's :class:`~optuna.storages.BaseStorage` over an
:class:`~optuna.storages.RDBStorage` (as Optuna's own cached storage does), so studies are
driven through ``optuna.Study`` and stored in Optuna's own tables, where
``optuna.load_study`` and Optuna's dashboards read them.

Two things make it fast for the driver, which alone writes the studies of its job:

- The trials of every study it touches are mirrored in memory and every read is served
  from the mirror. The RDB storage reads the trial and the earlier distributions of a
  parameter before each write, and the samplers and pruners list a study's trials for
  every decision; from the database that bounds the driver's trial rate.
- Inside :meth:`BatchedRDBStorage.batch` the writes share one transaction (a population's
  trials are asked, and told, in one), and rows of one kind go in as one statement.

The trial writes use the RDB storage's table definitions, as Optuna's own cached storage
uses the RDB storage's internals; Optuna's storage conformance tests run against this class
(``tests/test_optuna_storage.py``), so an Optuna change that breaks it fails a test.
Writes by another process to a study this storage mirrors are not seen.

Example:
    >>> import optuna, os, tempfile
    >>> from optuna.storages import RDBStorage
    >>> url = "sqlite:///" + os.path.join(tempfile.mkdtemp(), "studies.db")
    >>> storage = BatchedRDBStorage(RDBStorage(url))
    >>> study = optuna.create_study(study_name="demo", storage=storage, direction="maximize")
    >>> with storage.batch():
    ...     trials = [study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}) for _ in range(2)]
    >>> with storage.batch():
    ...     _ = [study.tell(t, 0.5 + t.number) for t in trials]
    >>> optuna.load_study(study_name="demo", storage=url).best_value
    1.5
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Container, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from optuna import distributions
from optuna._typing import JSONSerializable
from optuna.storages import BaseStorage, RDBStorage
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Connection, delete, insert

from search._optuna_rows import (
    INSERT_TRIAL,
    INTERMEDIATE,
    PARAMS,
    SET_INTERMEDIATE,
    SET_STATE,
    SYSTEM_ATTRS,
    USER_ATTRS,
    VALUES,
    PendingRows,
    intermediate_row,
    param_row,
    value_rows,
)


@dataclass
class _MirroredStudy:
    directions: list[StudyDirection]
    trials: list[FrozenTrial]
    """By number; a changed trial is replaced, never changed in place (lists handed out stay valid)."""
    distributions: dict[str, distributions.BaseDistribution] = field(default_factory=dict)


class BatchedRDBStorage(BaseStorage):
    """Optuna's RDB storage with the trials of the studies it writes mirrored in memory, and
    the writes of a :meth:`batch` in one transaction.

    Args:
        backend: the RDB storage to wrap; its study-level calls are used as they are.
    """

    def __init__(self, backend: RDBStorage) -> None:
        self._backend = backend
        self._studies: dict[int, _MirroredStudy] = {}
        self._trial_index: dict[int, tuple[int, int]] = {}
        """Trial id -> (study id, number), for mirrored trials."""
        self._lock = threading.RLock()
        self._connection: Connection | None = None
        self._pending = PendingRows()

    @property
    def backend(self) -> RDBStorage:
        return self._backend

    def __getstate__(self) -> dict[str, Any]:
        if self._connection is not None:
            raise RuntimeError("a storage cannot be pickled inside a batch")
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make every write inside the block one transaction, committed when the block ends."""
        with self._lock:
            if self._connection is not None:  # nested: part of the outer batch
                yield
                return
            self._begin()
            try:
                yield
            except BaseException:
                self._rollback()
                raise
            self._commit()

    def _begin(self) -> Connection:
        self._connection = self._backend.engine.connect()
        self._connection.begin()
        return self._connection

    def _commit(self) -> None:
        connection, self._connection = self._connection, None
        assert connection is not None
        try:
            self._write_pending(connection)
            connection.commit()
        except BaseException:
            connection.rollback()
            self._forget_mirrors()
            raise
        finally:
            connection.close()

    def _rollback(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.rollback()
            connection.close()
        self._pending = PendingRows()
        self._forget_mirrors()  # they hold writes that never reached the database

    def _forget_mirrors(self) -> None:
        self._studies.clear()
        self._trial_index.clear()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """The open batch's connection, or a transaction of its own."""
        if self._connection is not None:
            yield self._connection
            return
        connection = self._begin()
        try:
            yield connection
        except BaseException:
            self._rollback()
            raise
        self._commit()

    def _write_pending(self, connection: Connection) -> None:
        pending, self._pending = self._pending, PendingRows()
        for table, rows in ((PARAMS, pending.params), (VALUES, pending.values)):
            if rows:
                connection.execute(insert(table), rows)
        if pending.intermediate:
            connection.execute(insert(INTERMEDIATE), pending.intermediate)
        if pending.states:
            connection.execute(SET_STATE, list(pending.states.values()))

    @contextmanager
    def _backend_call(self) -> Iterator[None]:
        """Around a write through the RDB storage itself: what is pending goes first (its own
        transaction must not wait for ours)."""
        if self._connection is None:
            yield
            return
        self._commit()
        try:
            yield
        finally:
            self._begin()

    # -- studies: the RDB storage's own calls ----------------------------------------------

    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str | None = None) -> int:
        with self._lock, self._backend_call():
            study_id = self._backend.create_new_study(directions, study_name)
            self._studies[study_id] = _MirroredStudy(list(directions), [])
            return study_id

    def delete_study(self, study_id: int) -> None:
        with self._lock, self._backend_call():
            self._backend.delete_study(study_id)
            study = self._studies.pop(study_id, None)
            for trial in study.trials if study else []:
                self._trial_index.pop(trial._trial_id, None)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        with self._lock, self._backend_call():
            self._backend.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: JSONSerializable) -> None:
        with self._lock, self._backend_call():
            self._backend.set_study_system_attr(study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._backend.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._backend.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        with self._lock:
            return list(self._study(study_id).directions)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._backend.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._backend.get_study_system_attrs(study_id)

    def get_all_studies(self) -> list[FrozenStudy]:
        return self._backend.get_all_studies()

    def remove_session(self) -> None:
        self._backend.remove_session()

    # -- trials: written here, read from the mirror ----------------------------------------

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        with self._lock:
            study = self._study(study_id)
            if template_trial is not None:  # a trial given whole (enqueued, added)
                return self._create_from_template(study_id, study, template_trial)
            number, now = len(study.trials), datetime.now()
            row = {"number": number, "study_id": study_id, "state": TrialState.RUNNING, "datetime_start": now}
            with self._writing() as connection:
                trial_id = int(connection.execute(INSERT_TRIAL, row).scalar_one())
            trial = FrozenTrial(
                number=number,
                state=TrialState.RUNNING,
                value=None,
                datetime_start=now,
                datetime_complete=None,
                params={},
                distributions={},
                user_attrs={},
                system_attrs={},
                intermediate_values={},
                trial_id=trial_id,
            )
            self._add(study_id, study, trial)
            return trial_id

    def _create_from_template(self, study_id: int, study: _MirroredStudy, template: FrozenTrial) -> int:
        """A trial given whole, written as the RDB storage writes it (one row per value, param,
        attribute and intermediate value) in the open transaction."""
        for name, distribution in template.distributions.items():
            previous = study.distributions.get(name)
            if previous is not None:
                distributions.check_distribution_compatibility(previous, distribution)
        number = len(study.trials)
        row = {
            "number": number,
            "study_id": study_id,
            "state": template.state,
            "datetime_start": template.datetime_start,
            "datetime_complete": template.datetime_complete,
        }
        with self._writing() as connection:
            trial_id = int(connection.execute(INSERT_TRIAL, row).scalar_one())
            for table, attrs in ((USER_ATTRS, template.user_attrs), (SYSTEM_ATTRS, template.system_attrs)):
                if attrs:
                    rows = [
                        {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                        for k, v in attrs.items()
                    ]
                    connection.execute(insert(table), rows)
        self._pending.values += value_rows(trial_id, template.values or [])
        self._pending.params += [
            param_row(
                trial_id,
                name,
                template.distributions[name].to_internal_repr(value),
                template.distributions[name],
            )
            for name, value in template.params.items()
        ]
        self._pending.intermediate += [
            intermediate_row(trial_id, step, value) for step, value in template.intermediate_values.items()
        ]
        trial = copy.deepcopy(template)
        trial.number, trial._trial_id = number, trial_id
        self._add(study_id, study, trial)
        self._flush_unless_batched()
        return trial_id

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: distributions.BaseDistribution,
    ) -> None:
        with self._lock:
            study, trial = self._updatable(trial_id)
            previous = study.distributions.get(param_name)
            if previous is not None:
                distributions.check_distribution_compatibility(previous, distribution)
            study.distributions[param_name] = distribution
            self._pending.params.append(param_row(trial_id, param_name, param_value_internal, distribution))
            trial.params = {**trial.params, param_name: distribution.to_external_repr(param_value_internal)}
            trial.distributions = {**trial.distributions, param_name: distribution}
            self._replace(trial_id, trial)
            self._flush_unless_batched()

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        with self._lock:
            _, trial = self._updatable(trial_id)
            if state == TrialState.RUNNING and trial.state != TrialState.WAITING:
                return False
            if values is not None:
                if trial.values is not None:  # set before: replaced
                    self._pending.values = [r for r in self._pending.values if r["trial_id"] != trial_id]
                    with self._writing() as connection:
                        connection.execute(delete(VALUES).where(VALUES.c.trial_id == trial_id))
                self._pending.values += value_rows(trial_id, values)
                trial.values = list(values)
            trial.state = state
            if state == TrialState.RUNNING:
                trial.datetime_start = datetime.now()
            if state.is_finished():
                trial.datetime_complete = datetime.now()
            self._pending.states[trial_id] = {
                "_id": trial_id,
                "_state": state,
                "_start": trial.datetime_start,
                "_complete": trial.datetime_complete,
            }
            self._replace(trial_id, trial)
            self._flush_unless_batched()
            return True

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        with self._lock:
            _, trial = self._updatable(trial_id)
            row = intermediate_row(trial_id, step, intermediate_value)
            waiting = [
                i
                for i, r in enumerate(self._pending.intermediate)
                if r["trial_id"] == trial_id and r["step"] == step
            ]
            if waiting:  # reported again before its row was written
                self._pending.intermediate[waiting[0]] = row
            elif step in trial.intermediate_values:
                with self._writing() as connection:
                    connection.execute(
                        SET_INTERMEDIATE,
                        {
                            "_id": trial_id,
                            "_step": step,
                            "_value": row["intermediate_value"],
                            "_type": row["intermediate_value_type"],
                        },
                    )
            else:
                self._pending.intermediate.append(row)
            trial.intermediate_values = {**trial.intermediate_values, step: intermediate_value}
            self._replace(trial_id, trial)
            self._flush_unless_batched()

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        with self._lock:
            _, trial = self._updatable(trial_id)
            with self._backend_call():
                self._backend.set_trial_user_attr(trial_id, key, value)
            trial.user_attrs = {**trial.user_attrs, key: value}
            self._replace(trial_id, trial)

    def set_trial_system_attr(self, trial_id: int, key: str, value: JSONSerializable) -> None:
        with self._lock:
            _, trial = self._updatable(trial_id)
            with self._backend_call():
                self._backend.set_trial_system_attr(trial_id, key, value)
            trial.system_attrs = {**trial.system_attrs, key: value}
            self._replace(trial_id, trial)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            return self._mirrored(trial_id)

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        with self._lock:
            trials = self._study(study_id).trials
            chosen = [t for t in trials if t.state in states] if states is not None else list(trials)
            return copy.deepcopy(chosen) if deepcopy else chosen

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        with self._lock:
            trials = self._study(study_id).trials
            if not 0 <= trial_number < len(trials):
                raise KeyError(f"No trial with trial number {trial_number} exists in study {study_id}.")
            return trials[trial_number]._trial_id

    def release(self, study_id: int) -> None:
        """Drop the mirror of a study no longer used (it is read again if it is)."""
        with self._lock:
            if self._connection is not None:
                raise RuntimeError("a study cannot be released inside a batch")
            study = self._studies.pop(study_id, None)
            for trial in study.trials if study else []:
                self._trial_index.pop(trial._trial_id, None)

    # -- the mirror ------------------------------------------------------------------------

    def _study(self, study_id: int) -> _MirroredStudy:
        """The mirror of a study, read from the database on first use (raises ``KeyError``)."""
        study = self._studies.get(study_id)
        if study is None:
            directions = self._backend.get_study_directions(study_id)
            study = _MirroredStudy(directions, [])
            for trial in self._backend.get_all_trials(study_id, deepcopy=False):
                self._add(study_id, study, trial)
            self._studies[study_id] = study
        return study

    def _add(self, study_id: int, study: _MirroredStudy, trial: FrozenTrial) -> None:
        assert trial.number == len(study.trials), "the study was written by another process"
        study.trials.append(trial)
        study.distributions.update(trial.distributions)
        self._trial_index[trial._trial_id] = (study_id, trial.number)

    def _mirrored(self, trial_id: int) -> FrozenTrial:
        if trial_id not in self._trial_index:  # of a study not read yet, or no trial at all
            self._backend.get_trial(trial_id)  # raises KeyError for an unknown trial
            for study in self._backend.get_all_studies():
                self._study(study._study_id)
        study_id, number = self._trial_index[trial_id]
        return self._studies[study_id].trials[number]

    def _updatable(self, trial_id: int) -> tuple[_MirroredStudy, FrozenTrial]:
        """The trial's study and a copy of the trial to change; refuses a finished trial."""
        trial = self._mirrored(trial_id)
        self.check_trial_is_updatable(trial_id, trial.state)
        return self._studies[self._trial_index[trial_id][0]], copy.copy(trial)

    def _replace(self, trial_id: int, trial: FrozenTrial) -> None:
        study_id, number = self._trial_index[trial_id]
        self._studies[study_id].trials[number] = trial

    def _flush_unless_batched(self) -> None:
        if self._connection is None:
            with self._writing():
                pass
