"""Fixtures shared by the tests: a local Ray instance, a fresh PostgreSQL database, and the
databases the store's tests run on (a SQLite file, a fresh PostgreSQL schema)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from _postgres import postgres_database

from search import ResultStore

# The fast tier (`python -m pytest -m "not slow"`) leaves out what starts Ray, a whole job, the
# MLflow server or a browser. Tests that use one of these fixtures, or live in one of these
# modules, are marked slow here, so a new test of that kind cannot forget the mark.
SLOW_FIXTURES = frozenset(
    {"ray_instance", "ray_head", "ray_head_node", "ray_cluster", "real"}
)  # real: a tracked job
SLOW_MODULES = frozenset(
    {
        "test_cluster.py",  # a two-node Ray cluster
        "test_dashboard_server.py",  # MLflow servers started and signalled
        "test_dashboard_ui.py",  # a finished job, the MLflow server and Chromium
        "test_fidelity_benchmark.py",  # the benchmark's quick mode trains cells
        "test_lm_fidelity_benchmark.py",  # so does this one's
        "test_hostile_input.py",  # the hostile corpus through the real command line
    }
)
SLOW_TESTS = frozenset(
    {
        "test_jobs_starting_together_on_a_fresh_store_all_get_working_tracking",
        "test_report_of_a_real_job",
        "test_the_fast_tier_selects_every_test_but_the_slow_ones",  # collects the whole suite again
    }
)


# The slow tier runs on both cores (`-m slow -n 2 --dist loadgroup`): every slow test but those
# of these modules, which start neither Ray nor a job, shares one xdist group, so the tests that
# start Ray run one after another on one worker (two local Ray instances at once on two cores
# slow each other past their timeouts) while these run beside them on the other, a group per
# module (so its module-scoped fixtures are built once).
RAY_FREE_SLOW_MODULES = frozenset(
    {
        "test_dashboard_server.py",  # MLflow servers on an empty store
        "test_fidelity_benchmark.py",  # training in the test's own process
        "test_lm_fidelity_benchmark.py",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        name = getattr(item, "originalname", item.name)
        if fixtures & SLOW_FIXTURES or item.path.name in SLOW_MODULES or name in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("slow"):
            ray_free = item.path.name in RAY_FREE_SLOW_MODULES
            item.add_marker(pytest.mark.xdist_group(item.path.stem if ray_free else "one-at-a-time"))


@pytest.fixture
def float64_one_thread() -> Iterator[None]:
    """Float64 by default and one thread, for exact comparisons of layers and populations.
    One thread: the suite shares two cores with other processes (OpenMP spin-waits would make it
    slow, not wrong)."""
    import torch

    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    """One small local Ray instance per test module (starting Ray costs seconds)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A new PostgreSQL database for one test, dropped afterwards."""
    with postgres_database() as url:
        yield url


# -- databases -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this module, dropped afterwards."""
    with postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database: a SQLite file, or a fresh schema in the PostgreSQL test database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.db'}"
    database = request.getfixturevalue("pg_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(database)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    return f"{database}?options=-csearch_path%3D{schema}"


@pytest.fixture
def store(db_url: str) -> Iterator[ResultStore]:
    with ResultStore.open(db_url) as opened:
        yield opened
