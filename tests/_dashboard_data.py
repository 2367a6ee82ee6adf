"""Results databases for the dashboards tests: a small hand-made one with known answers,
built through the real store API, a fresh PostgreSQL database, and one real job (run once
per test session, shared by the test files that read a real job's results).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cells import library
from search import ResultStore
from search._intervals import Interval
from search._jobspec import JobSpec
from workers import TrialResult

REPO = Path(__file__).resolve().parents[1]

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


CHILD_SCORE_INTERVAL = Interval(1.02, 1.16)
CHILD_INTERVALS: dict[str, tuple[Interval, Interval]] = {
    "arith": (Interval(0.85, 0.88), Interval(1.02, 1.16)),
    "xml-small": (Interval(0.80, 0.84), Interval(1.10, 1.30)),
}
"""The intervals the hand-made database gives architecture ``child`` (the others have none):
its best value's and relative score's per task, and its score's."""
FIXED_LSTM_INTERVALS = (Interval(0.97, 0.99), Interval(1.05, 1.15))
"""The fixed job's lstm: its best value's interval, and its relative score's (and score's)."""


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
                best, relative_iv = (CHILD_INTERVALS.get(label) if name == "child" else None) or (None, None)
                store.set_evaluation(
                    evaluation.id,
                    status="filtered-out" if filtered else "done",
                    relative_score=relative.get(label),
                    best_interval=best,
                    relative_interval=relative_iv,
                )
            store.update_job_architecture(
                job,
                arch,
                score=score,
                score_interval=CHILD_SCORE_INTERVAL if name == "child" else None,
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
            best, relative_iv = FIXED_LSTM_INTERVALS if name == "lstm" else (None, None)
            store.set_evaluation(
                evaluation.id,
                status="done",
                relative_score=rel,
                best_interval=best,
                relative_interval=relative_iv,
            )
            store.update_job_architecture(job2, arch, score=rel, score_interval=relative_iv, evaluated=True)
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


# -- a real job ------------------------------------------------------------------------------


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
    return [sys.executable, "-c", "from cellsearch._cli import main; main()", *args]


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


class Dashboard:
    """``cellsearch dashboard`` as a subprocess in its own process group (stopped by its id)."""

    def __init__(self, store_uri: str, port: int, log: Path) -> None:
        self.store_uri, self.port, self.log = store_uri, port, log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                cellsearch_command("dashboard", "--mlflow", self.store_uri, "--port", str(self.port)),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=subprocess_env(),
            )
        self.starts += 1
        wait_for_http(f"{self.url}/health", timeout=240, process=self.process)
        deadline = time.monotonic() + 30  # the command prints its URL once the server answers
        while self.log.read_text().count("MLflow UI at") < self.starts and time.monotonic() < deadline:
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # the command and the mlflow server it started
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@dataclass
class RealJob:
    """A job run for real (Ray, training, the driver), tracked through a real MLflow server
    (``cellsearch dashboard`` on a SQLite store) that was stopped while the job ran and
    started again after it ended; the server is left running for the session."""

    folder: Path
    db_url: str
    mlflow_store: str
    """The server's backend store (a SQLite file)."""
    server: Dashboard
    """The tracker logged to ``server.url``; artifacts are served by it (proxied)."""
    job_id: int
    logged_architectures: int
    dropped: list[str]
    warnings: list[str]
    """What the tracker logged at WARNING and above while the job ran and caught up."""
    stopped_mid_job: bool
    state_before_restart: str
    pending_before_restart: int


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


_REAL_JOBS: dict[str, RealJob] = {}


def real_job(tmp_path_factory: pytest.TempPathFactory, config: pytest.Config) -> RealJob:
    """:data:`REAL_JOB_YAML` run once per test session; later calls return the same job.

    The tracker follows the job's progress feed into the server. At the first finished trial
    (once the tracker has created the job's run) the server is stopped, so the rest of the
    job is tracked into the void; after the job ends the server is started again on the same
    port and store, and leaving ``track_job`` waits for the tracker to catch up.
    """
    from dashboards import track_job
    from dashboards._links import runs_of
    from search._driver import run_job
    from search._progress import ProgressFeed
    from search._settings import resolve_settings

    key = str(tmp_path_factory.getbasetemp())
    if key in _REAL_JOBS:
        return _REAL_JOBS[key]
    folder = tmp_path_factory.mktemp("real-job")
    store_uri = f"sqlite:///{folder / 'mlflow.db'}"
    server = Dashboard(store_uri, free_port(), folder / "dashboard.log")
    config.add_cleanup(server.stop)
    server.start()
    settings = resolve_settings(db_url=f"sqlite:///{folder / 'results.db'}", mlflow_uri=server.url, env={})
    feed = ProgressFeed()
    stopped: list[bool] = []

    def stop_server_after_first_trial(event: str, data: dict[str, Any]) -> None:
        """Runs on the driver's thread (holding up the job a moment, as a test may)."""
        if event != "trial_finished" or stopped:
            return
        engine = sa.create_engine(settings.db_url)
        deadline = time.monotonic() + 180
        while not runs_of(engine, job_id=feed.job_id or 0, tracking_uri=server.url):
            assert time.monotonic() < deadline, "the tracker never created the job's run"
            time.sleep(0.2)
        engine.dispose()
        server.stop()
        stopped.append(True)

    feed.subscribe(stop_server_after_first_trial)
    collect = _Collect()
    logging.getLogger("dashboards._tracking").addHandler(collect)
    try:
        with track_job(
            settings, feed, progress_interval=0.5, retry_initial=0.2, retry_max=1.0, flush_timeout=240
        ) as tracker:
            job_id = run_job(JobSpec.from_yaml_text(REAL_JOB_YAML), settings, progress=feed)
            with ResultStore.open(settings.db_url, upgrade=False, create=False) as store:
                state = store.get_job(job_id).state
            pending = tracker.pending
            server.start()  # same port, same store; leaving the block waits for the catch-up
    finally:
        logging.getLogger("dashboards._tracking").removeHandler(collect)
    assert tracker.pending == 0, "the tracker did not catch up within its flush timeout"
    _REAL_JOBS[key] = RealJob(
        folder=folder,
        db_url=settings.db_url,
        mlflow_store=store_uri,
        server=server,
        job_id=job_id,
        logged_architectures=tracker.logged_architectures,
        dropped=tracker.dropped,
        warnings=collect.messages,
        stopped_mid_job=bool(stopped),
        state_before_restart=state,
        pending_before_restart=pending,
    )
    return _REAL_JOBS[key]
