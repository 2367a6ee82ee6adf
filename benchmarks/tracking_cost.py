"""MLflow tracking's cost per architecture: on the driver's thread, and on the tracker's.

The same job of instant trials (a stand-in passed to ``run_job(evaluate=...)``, each with a
learning curve of ``--curve-points`` points) runs twice in one process on one Ray instance:
without tracking, then followed by a tracker logging into a fresh SQLite MLflow store. The
driver's thread CPU time (``time.thread_time`` around ``run_job``) of the two runs differ by
what tracking costs the driver (the feed's callbacks only put records on a queue); the
writer's time is measured around each operation its thread applies (reading the results
database, the store's calls, drawing the diagram, uploading artifacts), in CPU and wall time.

    python benchmarks/tracking_cost.py [--architectures 40] [--curve-points 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import ray

from dashboards import Tracker
from search._driver import run_job
from search._jobspec import JobSpec
from search._progress import ProgressFeed
from search._settings import resolve_settings
from workers import TrialResult

CURVE_POINTS = 10


def instant(cell: Any, task: Any, hparams: Any, budget: Any, report: Any, device: str) -> TrialResult:
    """A trial that trains nothing; its value depends on the learning rate, its curve rises to it."""
    value = 1.0 / (1.0 + abs(float(hparams.get("learning_rate", 0.01)) - 0.01))
    curve = [(100 * (k + 1), value * (k + 1) / CURVE_POINTS) for k in range(CURVE_POINTS)]
    return TrialResult(
        status="ok", task=task.name, metric="accuracy", direction="maximize", value=value, curve=curve
    )


def job(architectures: int) -> JobSpec:
    return JobSpec.from_dict(
        {
            "name": "tracking-cost",
            "strategy": {"kind": "jozefowicz", "p_refine": 0.0},
            "seed_cells": ["lstm", "gru", "tanh"],
            "baselines": ["gru"],
            "tasks": [{"name": "arith"}, {"name": "xml"}],
            "trials_per_task": 2,
            "budget": {"max_architectures": architectures},
            "resources": {"cpus": 0.25, "max_in_flight": 8},
        }
    )


def run(folder: Path, architectures: int, tracked: bool) -> dict[str, float]:
    """One job; the driver thread's CPU seconds, and with tracking the writer's seconds."""
    settings = resolve_settings(
        db_url=f"sqlite:///{folder / 'results.db'}", mlflow_uri=f"sqlite:///{folder / 'mlflow.db'}", env={}
    )
    feed = ProgressFeed()
    tracker = None
    writer = {"cpu": 0.0, "wall": 0.0}
    if tracked:
        tracker = Tracker(settings.mlflow_uri, settings.db_url, progress_interval=1.0, flush_timeout=600)
        apply = tracker._writer.apply

        def timed(op: Any) -> None:  # runs on the tracker's thread
            cpu, wall = time.thread_time(), time.perf_counter()
            try:
                apply(op)
            finally:
                writer["cpu"] += time.thread_time() - cpu
                writer["wall"] += time.perf_counter() - wall

        tracker._writer.apply = timed  # type: ignore[method-assign]
        tracker.follow(feed)
    cpu, wall = time.thread_time(), time.perf_counter()
    run_job(job(architectures), settings, progress=feed, evaluate=instant)
    out = {"driver_cpu": time.thread_time() - cpu, "driver_wall": time.perf_counter() - wall}
    if tracker is not None:
        assert tracker.close(), "the tracker did not catch up"
        out |= {
            "writer_cpu": writer["cpu"],
            "writer_wall": writer["wall"],
            "runs": tracker.logged_architectures,
        }
    out["architectures"] = feed.architectures_proposed
    return out


def main() -> None:
    global CURVE_POINTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", type=int, default=40)
    parser.add_argument("--curve-points", type=int, default=CURVE_POINTS)
    args = parser.parse_args()
    CURVE_POINTS = args.curve_points

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as warm:
        run(Path(warm), 4, tracked=False)  # Ray workers, imports and caches warm for both runs
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        bare = run(Path(a), args.architectures, tracked=False)
        tracked = run(Path(b), args.architectures, tracked=True)
    ray.shutdown()

    runs = tracked["runs"]
    print(
        f"job: {args.architectures} architectures, 2 tasks x 2 trials each, {CURVE_POINTS} curve points a "
        f"trial; {runs:.0f} architecture runs logged"
    )
    for name, result in (("without tracking", bare), ("with tracking", tracked)):
        print(
            f"driver thread {name}: {1000 * result['driver_cpu'] / result['architectures']:.2f} ms CPU per "
            f"architecture ({result['driver_wall']:.1f} s wall for the job)"
        )
    extra = tracked["driver_cpu"] / tracked["architectures"] - bare["driver_cpu"] / bare["architectures"]
    print(f"tracking's cost on the driver thread: {1000 * extra:+.2f} ms CPU per architecture")
    print(
        f"writer thread: {1000 * tracked['writer_cpu'] / runs:.1f} ms CPU, "
        f"{1000 * tracked['writer_wall'] / runs:.1f} ms wall per architecture run (off the driver's thread)"
    )


if __name__ == "__main__":
    main()
