"""Results databases for the dashboards tests: a small hand-made one with known answers,
built through the real store API, a fresh PostgreSQL database, and one real job (run once
per test session, shared by the test files that read a real job's results).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cells import library
from search._jobspec import JobSpec
from search._store import ResultStore
from workers import TrialResult

REPO = Path(__file__).resolve().parents[1]
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"

SEARCH_JOB = {
    "name": "synthetic",
    "strategy": {"kind": "jozefowicz", "top_k": 5},
    "seed_cells": ["lstm", "gru"],
    "baselines": ["gru"],
    "tasks": [
        {"name": "memorize", "role": "filter", "threshold": 0.5},
        {"name": "arith", "role": "search"},
        {"name": "xml", "label": "xml-small", "role": "search"},
    ],
    "budget": {"max_architectures": 10},
}
FIXED_JOB = {
    "name": "table",
    "strategy": {"kind": "fixed", "cells": ["gru", "lstm"]},
    "seed_cells": [],
    "baselines": ["gru"],
    "tasks": [{"name": "memorize"}],
}


@dataclass
class Synthetic:
    """What the hand-made database holds (ids and the answers the queries must give)."""

    url: str
    search_job: int = 0
    fixed_job: int = 0
    ids: dict[str, int] = field(default_factory=dict)
    """Architecture name -> id."""
    scores: dict[str, float | None] = field(default_factory=dict)
    """Score in the search job (None: not scored)."""


# name: (graph, parent name, mutation, generation, {task label: [(status, value, lr)]}, relative, score)
_ARCHS: list[
    tuple[
        str,
        str,
        str | None,
        str | None,
        int,
        dict[str, list[tuple[str, float | None, float]]],
        dict[str, float],
        float | None,
    ]
] = [
    (
        "gru",
        "gru",
        None,
        None,
        0,
        {
            "memorize": [("ok", 0.9, 0.01)],
            "arith": [("ok", 0.8, 0.02), ("ok", 0.6, 0.03)],
            "xml-small": [("ok", 0.7, 0.04)],
        },
        {"arith": 1.0, "xml-small": 1.0},
        1.0,
    ),
    (
        "lstm",
        "lstm",
        None,
        None,
        0,
        {"memorize": [("ok", 0.95, 0.01)], "arith": [("ok", 0.72, 0.02)], "xml-small": [("ok", 0.77, 0.04)]},
        {"arith": 0.9, "xml-small": 1.1},
        0.9,
    ),
    (
        "child",
        "cifg",
        "lstm",
        "replaced node 'f' = sigmoid(...) by one_minus(i)",
        1,
        {
            "memorize": [("ok", 0.96, 0.01)],
            "arith": [("ok", 0.88, 0.0123), ("pruned", 0.1, 0.5)],
            "xml-small": [("ok", 0.84, 0.04)],
        },
        {"arith": 1.1, "xml-small": 1.2},
        1.1,
    ),
    (
        "grandchild",
        "mut1",
        "child",
        "rewired node 'r' input 0 to x",
        2,
        {"memorize": [("ok", 0.97, 0.01)], "arith": [("ok", 0.84, 0.02)], "xml-small": [("ok", 0.735, 0.04)]},
        {"arith": 1.05, "xml-small": 1.05},
        1.05,
    ),
    (
        "filtered",
        "mut2",
        "child",
        "removed node 'z'",
        2,
        {"memorize": [("ok", 0.2, 0.01), ("failed", None, 0.9)]},
        {},
        None,
    ),
    (
        "tie",
        "mut3",
        "gru",
        "inserted node 'n1' = tanh(h_prev_0)",
        1,
        {
            "memorize": [("ok", 0.91, 0.01)],
            "arith": [("ok", 0.84, 0.02)],
            "xml-small": [("diverged", None, 3.0), ("ok", 0.8, 0.04)],
        },
        {"arith": 1.05, "xml-small": 1.142857},
        1.05,
    ),
    (
        "stopped",
        "tanh",
        "gru",
        "replaced the cell by a plain tanh RNN",
        1,
        {"memorize": [("ok", 0.6, 0.01)], "arith": [("ok", 0.4, 0.02)]},
        {"arith": 0.5},
        0.5,
    ),
]


def build_synthetic(url: str) -> Synthetic:
    """Two jobs: a search (7 architectures, 3 tasks, lineage 3 deep) and a fixed table (2 cells)."""
    data = Synthetic(url=url)
    store = ResultStore.open(url)
    try:
        spec = JobSpec.from_dict(SEARCH_JOB)
        tasks = {t.id: t for t in spec.tasks}
        job = data.search_job = store.create_job(spec)
        store.set_job_state(job, "running")
        for name, graph_name, parent, mutation, generation, trials, relative, score in _ARCHS:
            arch, _ = store.add_architecture(
                library.get(graph_name),
                job_id=job,
                parent_id=data.ids.get(parent or ""),
                mutation=mutation,
                generation=generation,
                library_name=graph_name if mutation is None else None,
            )
            data.ids[name] = arch
            data.scores[name] = score
            for label, runs in trials.items():
                evaluation = store.get_or_create_evaluation(job, arch, tasks[label])
                for status, value, lr in runs:
                    trial = store.start_trial(evaluation.id, hparams={"learning_rate": lr, "hidden_size": 16})
                    store.finish_trial(trial, _result(status, value, tasks[label].name, lr))
                filtered = label == "memorize" and name == "filtered"
                store.set_evaluation(
                    evaluation.id,
                    status="filtered-out" if filtered else "done",
                    relative_score=relative.get(label),
                )
            store.update_job_architecture(
                job,
                arch,
                score=score,
                filter_passed=name != "filtered",
                evaluated=name != "filtered",
                listed=score is not None and score >= 1.0,
            )
        store.set_job_state(job, "finished")

        fixed = JobSpec.from_dict(FIXED_JOB)
        job2 = data.fixed_job = store.create_job(fixed)
        for name, value, rel in (("gru", 0.9, 1.0), ("lstm", 0.99, 1.1)):
            arch, _ = store.add_architecture(library.get(name), job_id=job2, library_name=name)
            evaluation = store.get_or_create_evaluation(job2, arch, fixed.tasks[0])
            trial = store.start_trial(evaluation.id, hparams={"learning_rate": 0.01})
            store.finish_trial(trial, _result("ok", value, "memorize", 0.01))
            store.set_evaluation(evaluation.id, status="done", relative_score=rel)
            store.update_job_architecture(job2, arch, score=rel, evaluated=True)
        store.set_job_state(job2, "finished")
    finally:
        store.close()
    return data


def _result(status: str, value: float | None, task: str, lr: float) -> TrialResult:
    direction = "minimize" if task == "text" else "maximize"
    metric = "accuracy"
    return TrialResult(
        status=status,  # type: ignore[arg-type]
        task=task,
        metric=metric,
        direction=direction,
        value=value,
        num_params=1000 + int(lr * 1000),
        seconds=1.5,
        error="boom" if status == "failed" else None,
    )


# -- PostgreSQL ------------------------------------------------------------------------------


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards; skips the test when the server is down."""
    admin = sa.create_engine(
        f"{PG_SERVER}/test", isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    name = f"cellsearch_dash_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 (user postgres, db test) is unreachable: {exc.orig}")
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


# -- a real job ------------------------------------------------------------------------------


def data_dir() -> Path:
    return REPO.parent / "shared" / "data"


REAL_JOB_YAML = """
name: dash-real
strategy: {kind: jozefowicz, top_k: 4, p_refine: 0.0}
seed_cells: [gru, tanh]
baselines: [gru]
tasks:
  - name: memorize
    role: search
    settings: {min_length: 3, max_length: 4, symbols: 4, valid_size: 20, test_size: 20}
    budget: {max_steps: 20, eval_every: 20}
hparams: {num_layers: 1, hidden_size: 16, dropout: 0.0}
trials_per_task: 1
budget: {max_architectures: 2}
resources: {cpus: 1, gpus: 0}
device: cpu
seed: 0
"""
"""A jozefowicz search small enough for CPU tests: baseline GRU, seed tanh, two mutants."""

FIXED_JOB_YAML = """
name: dash-table
strategy: {kind: fixed, cells: [gru, tanh, mut1]}
seed_cells: []
baselines: [gru]
tasks:
  - name: memorize
    settings: {min_length: 3, max_length: 4, symbols: 4, valid_size: 20, test_size: 20}
    budget: {max_steps: 20, eval_every: 20}
hparams: {num_layers: 1, hidden_size: 16, dropout: 0.0}
trials_per_task: 1
resources: {cpus: 1, gpus: 0}
device: cpu
seed: 0
"""
"""The paper-table shape (fixed strategy), three cells on one task."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_http(url: str, timeout: float = 120.0, process: subprocess.Popen[Any] | None = None) -> None:
    """Wait until ``url`` answers (any HTTP status), or fail with the server's output."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout:.0f} s")


def cellsearch_command(*args: str) -> list[str]:
    """The ``cellsearch`` program, run with this interpreter (so the tests need no PATH)."""
    return [sys.executable, "-c", "from search._cli import main; main()", *args]


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


@dataclass
class RealJob:
    """A job run for real (Ray, training, the driver) and tracked to a SQLite MLflow store."""

    folder: Path
    db_url: str
    mlflow_uri: str
    job_id: int
    logged_architectures: int
    dropped: list[str]


_REAL_JOBS: dict[str, RealJob] = {}


def real_search_job(base: Path) -> RealJob:
    """:data:`REAL_JOB_YAML` run once per test session (under ``base``) with a tracker
    following its progress feed; later calls return the same job."""
    from dashboards import track_job
    from search._driver import run_job
    from search._progress import ProgressFeed
    from search._settings import resolve_settings

    key = str(base)
    if key not in _REAL_JOBS:
        folder = base / "real-search-job"
        folder.mkdir(parents=True, exist_ok=True)
        settings = resolve_settings(
            db_url=f"sqlite:///{folder / 'results.db'}",
            mlflow_uri=f"sqlite:///{folder / 'mlflow.db'}",
            env={},
        )
        feed = ProgressFeed()
        with track_job(settings, feed, progress_interval=0.5, flush_timeout=180) as tracker:
            job_id = run_job(JobSpec.from_yaml_text(REAL_JOB_YAML), settings, progress=feed)
        assert tracker.pending == 0, "the tracker did not catch up within its flush timeout"
        _REAL_JOBS[key] = RealJob(
            folder,
            settings.db_url,
            settings.mlflow_uri,
            job_id,
            tracker.logged_architectures,
            tracker.dropped,
        )
    return _REAL_JOBS[key]
