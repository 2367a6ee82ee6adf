"""The driver's Optuna storage against Optuna's own storage conformance tests.

:class:`search._optuna_storage.BatchedRDBStorage` writes Optuna's tables itself; Optuna's
suite of storage tests (``optuna.testing.pytest_storages``) runs against it, so a change of
Optuna that it does not follow fails here instead of corrupting or slowing the studies.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.storages import RDBStorage
from optuna.testing.pytest_storages import StorageTestCase
from optuna.trial import TrialState

from search._optuna_storage import BatchedRDBStorage
from workers import Direction, TrialStatus


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[BatchedRDBStorage]:
    backend = RDBStorage(
        f"sqlite:///{tmp_path / 'optuna.db'}", engine_kwargs={"connect_args": {"timeout": 60}}
    )
    yield BatchedRDBStorage(backend)
    backend.engine.dispose()


class TestBatchedRDBStorage(StorageTestCase):
    """Every test of Optuna's storage suite, against the batched storage."""


def test_a_batch_is_one_transaction_and_optuna_reads_it_back(storage: BatchedRDBStorage) -> None:
    url = str(storage.backend.engine.url)
    study = optuna.create_study(study_name="s", storage=storage, direction="minimize")
    space = {"x": FloatDistribution(0.0, 1.0)}
    with storage.batch():
        trials = [study.ask(space) for _ in range(3)]
        assert optuna.load_study(study_name="s", storage=url).trials == []  # not committed yet
    for trial in trials:
        trial.report(0.5, step=1)
    with storage.batch():
        for trial in trials:
            study.tell(trial, trial.params["x"])
    loaded = optuna.load_study(study_name="s", storage=url)
    assert [t.state for t in loaded.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert [t.params for t in loaded.trials] == [t.params for t in trials]
    assert [t.intermediate_values for t in loaded.trials] == [{1: 0.5}] * 3
    assert loaded.best_value == min(t.params["x"] for t in trials)


def test_a_failed_batch_writes_nothing(storage: BatchedRDBStorage) -> None:
    study = optuna.create_study(study_name="s", storage=storage)
    with pytest.raises(RuntimeError), storage.batch():
        study.ask({"x": FloatDistribution(0.0, 1.0)})
        raise RuntimeError("interrupted")
    assert storage.get_all_trials(study._study_id) == []
    assert optuna.load_study(study_name="s", storage=str(storage.backend.engine.url)).trials == []


def test_optuna_load_study_reads_a_study_the_driver_wrote(tmp_path: Path) -> None:
    from search._tuning import StudyBook

    url = f"sqlite:///{tmp_path / 'results.db'}"
    space = {"learning_rate": FloatDistribution(1e-4, 1e-1, log=True)}
    book = StudyBook(url, sampler="random", pruner="median", seed=3)
    study = book.study("job1-arch1-memorize", Direction.MAXIMIZE, space)
    population = study.ask_many(3)
    for member in population:
        study.report(member.number, 5, 0.1 * member.number)
    study.tell_many([(m.number, TrialStatus.OK, 0.5 + m.number) for m in population])
    lone = study.ask()
    book.close()

    loaded = optuna.load_study(study_name="job1-arch1-memorize", storage=url)
    assert loaded.direction == optuna.study.StudyDirection.MAXIMIZE
    assert [t.state for t in loaded.trials] == [TrialState.COMPLETE] * 3 + [TrialState.RUNNING]
    assert [t.params for t in loaded.trials] == [m.params for m in [*population, lone]]
    assert [t.intermediate_values for t in loaded.trials[:3]] == [{5: 0.0}, {5: 0.1}, {5: 0.2}]
    assert loaded.best_value == 2.5


def test_the_driver_samples_what_a_plain_optuna_study_samples(tmp_path: Path) -> None:
    """Mirroring and batching change where trials are stored, never which settings are drawn."""
    from search._tuning import StudyBook, derived_seed, make_sampler

    space = {"learning_rate": FloatDistribution(1e-4, 1e-1, log=True), "dropout": FloatDistribution(0, 0.5)}
    book = StudyBook(f"sqlite:///{tmp_path / 'results.db'}", sampler="tpe", pruner="none", seed=0)
    study = book.study("s", Direction.MINIMIZE, space)
    plain = optuna.create_study()
    for batch in range(6):
        members = study.ask_many(2)
        expected = []
        for ordinal in (2 * batch, 2 * batch + 1):  # each ask's sampler is seeded by its place
            plain.sampler = make_sampler("tpe", derived_seed(derived_seed(0, "s"), ordinal))
            expected.append(plain.ask(space))
        assert [m.params for m in members] == [t.params for t in expected]
        study.tell_many([(m.number, TrialStatus.OK, m.params["dropout"]) for m in members])
        for trial in expected:
            plain.tell(trial, trial.params["dropout"])
    book.close()
