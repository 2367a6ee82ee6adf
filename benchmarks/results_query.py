"""How fast ``cellsearch results top`` and ``results show`` answer at the paper's scale, and
what MLflow tracking costs the driver per architecture.

Fills a results database through the real schema with synthetic rows (bulk inserts):
10,000 architectures in one job, lineages hundreds of generations deep, a memorization
filter on every one, three search tasks on the 1,000 that pass it, 230,000 trials. Then
times the query functions in-process (the 0.5 s target) and the CLI commands (which also
pay Python's start-up and imports; ``cellsearch --help`` is timed as the reference).

    python benchmarks/results_query.py                        # SQLite file in a temp folder
    python benchmarks/results_query.py --postgres             # a fresh database on 127.0.0.1:5432
    python benchmarks/results_query.py --scale 0.1            # a tenth of the rows
    python benchmarks/results_query.py --tracking             # also the tracker's cost per architecture

Figures are wall-clock medians of several calls; on a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cells import library, to_equations  # noqa: E402
from dashboards import describe_architecture, ensure_views, top_architectures  # noqa: E402
from search import EvaluationStatus, JobState, ResultStore  # noqa: E402
from search._jobspec import JobSpec  # noqa: E402
from search._schema import Architecture, Evaluation, JobArchitecture, Trial  # noqa: E402

TARGET_SECONDS = 0.5
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"

JOB = {
    "name": "paper-scale",
    "strategy": {"kind": "jozefowicz", "top_k": 100},
    "tasks": [
        {"name": "memorize", "role": "filter", "threshold": 0.9, "trials": 3},
        {"name": "arith", "role": "search"},
        {"name": "xml", "role": "search"},
        {"name": "text", "label": "ptb", "role": "search", "settings": {"preset": "ptb"}},
    ],
    "budget": {"max_architectures": 10000},
}


def fill(store: ResultStore, architectures: int, trials_total: int, seed: int = 0) -> dict[str, Any]:
    """Insert one job's worth of synthetic rows; returns ids worth querying."""
    rng = random.Random(seed)
    spec = JobSpec.from_dict(JOB)
    job_id = store.create_job(spec)
    store.set_job_state(job_id, JobState.FINISHED)
    now = datetime.now(UTC)
    first_id = _next_id(store, Architecture.id)
    arch_rows = _architecture_rows(rng, job_id, first_id, architectures, now)
    passing = set(rng.sample(range(architectures), k=max(1, architectures // 10)))
    per_pass = max(1, (trials_total - 3 * architectures) // (3 * len(passing)))
    eval_id, trial_id = _next_id(store, Evaluation.id), _next_id(store, Trial.id)
    evaluations: list[dict[str, Any]] = []
    trials: list[dict[str, Any]] = []
    member_rows = []
    for i in range(architectures):
        tasks = spec.tasks if i in passing else spec.tasks[:1]
        relatives = []
        for task in tasks:
            n = 3 if task.role == "filter" else per_pass
            values = [rng.random() for _ in range(n)]
            relative = None if task.role == "filter" else rng.uniform(0.5, 1.2)
            if relative is not None:
                relatives.append(relative)
            evaluations.append(
                _evaluation_row(eval_id, job_id, first_id + i, task, values, relative, trial_id, now)
            )
            trials += _trial_rows(trial_id, eval_id, job_id, first_id + i, task.name, values, now)
            trial_id += n
            eval_id += 1
        member_rows.append(
            dict(
                job_id=job_id,
                architecture_id=first_id + i,
                generation=0,
                score=min(relatives) if relatives else None,
                filter_passed=i in passing,
                evaluated=i in passing,
                listed=False,
                duplicate=False,
                proposed_at=now,
            )
        )
    _insert(
        store,
        [
            (Architecture, arch_rows),
            (JobArchitecture, member_rows),
            (Evaluation, evaluations),
            (Trial, trials),
        ],
    )
    return {
        "job_id": job_id,
        "deep_arch": first_id + architectures - 1,
        "passing_arch": first_id + min(passing),
        "trials": len(trials),
    }


def _next_id(store: ResultStore, column: Any) -> int:
    with store.engine.connect() as conn:
        return 1 + (conn.execute(sa.select(sa.func.max(column))).scalar() or 0)


def _architecture_rows(
    rng: random.Random, job_id: int, first_id: int, architectures: int, now: datetime
) -> list[dict[str, Any]]:
    """Library cells in turn, each but the first three a child of one of the 50 before it."""
    graphs = [library.get(n) for n in ("gru", "lstm", "tanh", "mut1", "mut2", "mut3", "cifg")]
    shapes = [
        (g.model_dump(mode="json"), to_equations(g), g.num_states, len(g.nodes), dict(g.op_counts()))
        for g in graphs
    ]
    rows = []
    for i in range(architectures):
        arch_id = first_id + i
        graph, equations, states, nodes, ops = shapes[i % len(shapes)]
        parent = None if i < 3 else first_id + rng.randrange(max(0, i - 50), i)
        rows.append(
            dict(
                id=arch_id,
                canonical_hash=f"{arch_id:016x}",
                graph=graph,
                equations=equations,
                num_states=states,
                num_nodes=nodes,
                op_counts=ops,
                requires_input_equals_hidden=False,
                parent_id=parent,
                mutation=None if parent is None else f"replaced node 'n{i}' by tanh",
                generation=0,
                library_name=None,
                first_job_id=job_id,
                created_at=now,
            )
        )
    return rows


def _evaluation_row(
    eval_id: int,
    job_id: int,
    arch_id: int,
    task: Any,
    values: list[float],
    relative: float | None,
    best_trial_id: int,
    now: datetime,
) -> dict[str, Any]:
    return dict(
        id=eval_id,
        job_id=job_id,
        architecture_id=arch_id,
        task=task.name,
        task_label=task.id,
        task_key=task.key,
        task_settings={},
        metric=task.metric,
        direction=task.direction,
        status=EvaluationStatus.DONE,
        best_value=max(values) if task.direction == "maximize" else min(values),
        relative_score=relative,
        best_trial_id=best_trial_id,
        trials_completed=len(values),
        trials_pruned=0,
        trials_failed=0,
        trials_diverged=0,
        reused_from_id=None,
        created_at=now,
        updated_at=now,
    )


def _trial_rows(
    first_id: int, eval_id: int, job_id: int, arch_id: int, task: str, values: list[float], now: datetime
) -> list[dict[str, Any]]:
    return [
        dict(
            id=first_id + k,
            job_id=job_id,
            architecture_id=arch_id,
            evaluation_id=eval_id,
            task=task,
            study_name=None,
            optuna_trial_number=k,
            hparams={"learning_rate": value / 100, "hidden_size": 128},
            status="ok",
            value=value,
            metrics=None,
            curve=None,
            num_params=10_000,
            steps=100,
            seconds=1.0,
            device="cpu",
            worker_node=None,
            worker_host=None,
            worker_pid=None,
            error=None,
            attempt=1,
            started_at=now - timedelta(seconds=1),
            finished_at=now,
        )
        for k, value in enumerate(values)
    ]


def _insert(store: ResultStore, tables: list[tuple[Any, list[dict[str, Any]]]]) -> None:
    with store.engine.begin() as conn:
        for table, rows in tables:
            for start in range(0, len(rows), 5000):
                conn.execute(sa.insert(table), rows[start : start + 5000])


def median_seconds(fn: Callable[[], Any], repeats: int = 5) -> float:
    fn()  # warm caches (connection pool, compiled SQL)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cli_seconds(
    args: list[str], db_url: str, repeats: int = 3, code: str = "from cellsearch._cli import main; main()"
) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                *args,
                *(["--db", db_url] if db_url else []),
            ],
            check=True,
            capture_output=True,
            env=env,
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextmanager
def database(postgres: bool):  # type: ignore[no-untyped-def]
    if not postgres:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    admin = sa.create_engine(f"{PG_SERVER}/test", isolation_level="AUTOCOMMIT")
    name = f"cellsearch_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def tracking_cost(architectures: int = 100) -> None:
    """The driver's side of tracking: what an ``architecture`` event costs with a tracker
    subscribed to the progress feed (while its thread logs to a SQLite MLflow store), against
    the same event with no subscriber; and how fast the thread logs."""
    import numpy as np

    from cells import random_cell
    from dashboards import Tracker
    from search._progress import ProgressFeed
    from workers import TrialResult

    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{Path(tmp) / 'results.db'}"
        spec = JobSpec.from_dict(
            {
                "name": "tracking",
                "strategy": {"kind": "fixed", "cells": ["gru"]},
                "tasks": [{"name": "memorize"}],
            }
        )
        rng = np.random.default_rng(0)
        with ResultStore.open(db_url) as store:
            job_id = store.create_job(spec)
            ids = []
            for _ in range(architectures):
                arch_id, _ = store.add_architecture(random_cell(rng), job_id=job_id)
                evaluation = store.get_or_create_evaluation(job_id, arch_id, spec.tasks[0])
                trial = store.start_trial(evaluation.id, hparams={"learning_rate": 0.01})
                store.finish_trial(
                    trial,
                    TrialResult(
                        status="ok", task="memorize", metric="accuracy", direction="maximize", value=0.5
                    ),
                )
                store.set_evaluation(evaluation.id, status=EvaluationStatus.DONE, relative_score=1.0)
                store.update_job_architecture(job_id, arch_id, score=1.0, evaluated=True)
                ids.append(arch_id)

        plain = ProgressFeed(job_id=job_id)
        bare_calls, start = [], time.perf_counter()
        for arch_id in ids:
            tick = time.perf_counter()
            plain.architecture_done(arch_id, "evaluated", 1.0)
            bare_calls.append(time.perf_counter() - tick)
            time.sleep(0.005)
        bare_loop = (time.perf_counter() - start) / architectures
        bare = statistics.median(bare_calls)

        feed = ProgressFeed(job_id=job_id)
        tracker = Tracker(f"sqlite:///{Path(tmp) / 'mlflow.db'}", db_url, progress_interval=3600)
        tracker.follow(feed)
        while tracker.job_run_id is None:  # MLflow imported and the job's run created
            time.sleep(0.1)
        calls, start = [], time.perf_counter()
        for arch_id in ids:
            tick = time.perf_counter()
            feed.architecture_done(arch_id, "evaluated", 1.0)
            calls.append(time.perf_counter() - tick)
            time.sleep(0.005)  # the driver does other work between architectures; the thread logs meanwhile
        loop = (time.perf_counter() - start) / architectures
        drain_start = time.perf_counter()
        assert tracker.close(timeout=600)
        logged = tracker.logged_architectures
        background = (time.perf_counter() - start) / max(1, logged)
        backlog = time.perf_counter() - drain_start
        print(
            f"tracking, {architectures} architectures: the event costs the driver "
            f"{1000 * statistics.median(calls):.3f} ms (median; worst {1000 * max(calls):.2f} ms; "
            f"{1000 * bare:.3f} ms without a tracker; target under 20 ms); a driver loop of 5 ms sleeps took "
            f"{1000 * loop:.2f} ms per step while the thread logged ({1000 * bare_loop:.2f} ms without). "
            f"The thread logged {logged} runs, {1000 * background:.0f} ms each ({backlog:.1f} s of "
            "backlog after the last event)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", action="store_true", help="use a fresh PostgreSQL database")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the paper's row counts")
    parser.add_argument("--no-cli", action="store_true", help="skip the command-line timings")
    parser.add_argument("--tracking", action="store_true", help="also time the tracker's cost on the driver")
    args = parser.parse_args()

    architectures = max(10, int(10_000 * args.scale))
    trials = max(100, int(230_000 * args.scale))
    with database(args.postgres) as url:
        store = ResultStore.open(url)
        start = time.perf_counter()
        ids = fill(store, architectures, trials)
        ensure_views(store.engine)
        gc.collect()  # the inserted rows are garbage now; a command-line call starts without them
        gc.freeze()
        print(
            f"{store.engine.dialect.name}: {architectures} architectures, {ids['trials']} trials "
            f"inserted in {time.perf_counter() - start:.1f} s"
        )
        job = ids["job_id"]
        figures = {
            "results top (score)": median_seconds(lambda: top_architectures(store, job, limit=10)),
            "results top -n 100": median_seconds(lambda: top_architectures(store, job, limit=100)),
            "results top --task ptb": median_seconds(lambda: top_architectures(store, job, task="ptb")),
            "results show (deepest lineage)": median_seconds(
                lambda: describe_architecture(store, ids["deep_arch"])
            ),
            "results show (4 tasks)": median_seconds(
                lambda: describe_architecture(store, ids["passing_arch"])
            ),
        }
        depth = len(describe_architecture(store, ids["deep_arch"]).lineage)
        print(f"in-process, median of 5 (target under {TARGET_SECONDS} s); deepest lineage {depth} steps")
        for name, seconds in figures.items():
            verdict = "ok" if seconds < TARGET_SECONDS else "SLOW"
            print(
                f"  {name:32s} {1000 * seconds:8.1f} ms  {seconds / TARGET_SECONDS:6.3f} of target  {verdict}"
            )
        if not args.no_cli:
            bare = cli_seconds([], "", code="pass")
            reference = cli_seconds(["--help"], "")
            print(
                f"command line, median of 3 (reference: `cellsearch --help` {reference:.2f} s, "
                f"which is start-up and imports; bare `python` start-up {bare:.2f} s)"
            )
            for label, cli_args in (
                ("cellsearch results top", ["results", "top", "--job", str(job)]),
                ("cellsearch results show", ["results", "show", str(ids["deep_arch"])]),
            ):
                seconds = cli_seconds(cli_args, url)
                print(
                    f"  {label:32s} {seconds:6.2f} s  {seconds / reference:5.2f}x --help  "
                    f"(+{seconds - reference:.2f} s over start-up)"
                )
        store.close()
    if args.tracking:
        tracking_cost()


if __name__ == "__main__":
    main()
