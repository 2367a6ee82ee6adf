"""Fixtures shared by the end-to-end tests: a local Ray instance and a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _postgres import postgres_database


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
