"""A paper-scale search: 10,000 architectures and about 230,000 trials of the ``jozefowicz``
strategy through real Ray, Optuna, the results database (an SQLite file) and MLflow tracking.

Jozefowicz et al. (2015) evaluated about 10,000 architectures; here each goes through a
``memorize`` filter (3 trials) and an ``arith`` search task (20 trials): 23 trials each, so
about 230,000 in all. Every evaluation returns at once from a deterministic function of the
cell and its learning rate (a stand-in passed to ``run_job(evaluate=...)``: the benchmark's
only fake), so what is measured is everything around the training: the strategy, the
stages, Optuna's ask/tell and storage, the store's writes, Ray's round trips (populations
included: trials of one shape go out as one Ray task), the pruning relay and MLflow.

Printed: wall time, driver time per trial, peak driver memory, database size, and how long
``results top`` (the leaderboard query) takes at the end. ``--scale`` runs a fraction of
the architectures (0.05: 500 architectures, about 11,500 trials); the full run takes long:
run it on a machine of its own.

    python benchmarks/paper_scale.py --scale 0.02 [--population auto] [--in-flight 8] [--no-mlflow]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import ray

from search import ResultStore
from search._driver import run_job
from search._jobspec import JobSpec
from search._progress import ProgressFeed
from search._settings import resolve_settings
from workers import TrialResult

ARCHITECTURES = 10_000
FILTER_TRIALS = 3
SEARCH_TRIALS = 20


def instant(cell: Any, task: Any, hparams: Any, budget: Any, report: Any, device: str) -> TrialResult:
    """No training: a value fixed by the cell (a checksum of its graph) and the learning rate."""
    graph = json.dumps(cell.model_dump(mode="json")["nodes"], sort_keys=True)
    cell_part = (zlib.crc32(graph.encode()) % 1000) / 1000
    lr_part = 1.0 / (1.0 + 100 * abs(float(hparams.get("learning_rate", 0.01)) - 0.01))
    value = 0.3 + 0.4 * cell_part + 0.2 * lr_part
    if report is not None:
        report(1, value)
    return TrialResult(
        status="ok", task=task.name, metric="accuracy", direction="maximize", value=value, curve=[(1, value)]
    )


def job_spec(architectures: int, population: str | int, in_flight: int) -> JobSpec:
    return JobSpec.from_dict(
        {
            "name": "paper-scale",
            "strategy": {"kind": "jozefowicz", "top_k": 100, "p_refine": 0.0},
            "seed_cells": ["lstm", "gru", "tanh"],
            "baselines": ["gru"],
            "tasks": [
                {"name": "memorize", "role": "filter", "threshold": 0.0, "trials": FILTER_TRIALS},
                {"name": "arith", "trials": SEARCH_TRIALS},
            ],
            # One model shape per task (the search tunes learning rate, init scale, clipping
            # and dropout), so a cell's trials on a task can train as one population.
            "hparams": {"num_layers": 1, "hidden_size": 128},
            "population": population,
            "budget": {"max_architectures": architectures},
            "resources": {"cpus": 2 / in_flight, "max_in_flight": in_flight},
            "device": "cpu",
        }
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="share of the 10,000 architectures")
    parser.add_argument("--population", default="auto", help="auto, off or a size")
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--no-mlflow", action="store_true")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    architectures = max(1, round(ARCHITECTURES * args.scale))
    population: str | int = int(args.population) if args.population.isdigit() else args.population
    spec = job_spec(architectures, population, args.in_flight)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    feed = ProgressFeed(job_name=spec.name)
    # Printed inside the folder's block, so that nothing of a long run is lost to its cleanup
    # (which ignores files a lingering connection may still be writing).
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as folder:
        db_path = Path(folder) / "results.db"
        settings = resolve_settings(
            db_url=f"sqlite:///{db_path}", mlflow_uri=f"sqlite:///{Path(folder) / 'mlflow.db'}", env={}
        )
        tracked = "off (--no-mlflow)"
        started, cpu_started = time.perf_counter(), time.process_time()
        if args.no_mlflow:
            job_id = run_job(spec, settings, progress=feed, evaluate=instant)
        else:
            from dashboards import track_job

            # The clock stops once MLflow has everything: the tracker's backlog is waited for.
            with track_job(settings, feed, flush_timeout=3 * 3600) as tracker:
                job_id = run_job(spec, settings, progress=feed, evaluate=instant)
                job_seconds = time.perf_counter() - started
            flushed = "all logged" if tracker.pending == 0 else f"{tracker.pending} operations NOT logged"
            tracked = (
                f"on ({Path(settings.mlflow_uri).name}): {tracker.logged_architectures} architecture runs, "
                f"{flushed}; the job's trials were done at {job_seconds:.1f} s, the rest of the wall time "
                "is MLflow catching up"
            )
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        ray.shutdown()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        db_bytes = sum(p.stat().st_size for p in Path(folder).glob("results.db*"))

        from dashboards._queries import top_architectures

        with ResultStore.open(settings.db_url) as store:
            state = store.get_job(job_id).state
            trials = store.job_summary(job_id).trials
            top_started = time.perf_counter()
            top = top_architectures(store, job_id, limit=10)
            top_seconds = time.perf_counter() - top_started

        done = feed.trials_done
        expected = (architectures + 1) * (FILTER_TRIALS + SEARCH_TRIALS)
        print(
            f"paper-scale job: scale {args.scale:g}, {architectures} architectures asked, "
            f"{feed.architectures_proposed} proposed, job {state}"
        )
        print(
            f"trials: {done} done (about {expected} expected: {FILTER_TRIALS} filter + "
            f"{SEARCH_TRIALS} search per architecture and baseline); completed {trials.completed}, "
            f"pruned {trials.pruned}, failed {trials.failed}"
        )
        print(
            f"population: {args.population}; in flight: {args.in_flight} Ray tasks; "
            f"MLflow tracking: {tracked}"
        )
        print(f"wall time: {seconds:.1f} s")
        print(
            f"driver: {1000 * seconds / done:.2f} ms wall per trial ({done / seconds:.0f} trials/s), "
            f"{1000 * cpu_seconds / done:.2f} ms driver CPU per trial"
        )
        print(f"peak driver resident memory: {peak:.0f} MiB")
        print(f"results database: {db_bytes / 2**20:.1f} MiB ({db_bytes / done:.0f} bytes per trial)")
        print(f"results top ({len(top)} rows): {1000 * top_seconds:.1f} ms")
        if args.scale < 1:
            full = ARCHITECTURES / architectures
            print(
                f"linear extrapolation to 10,000 architectures: ~{seconds * full / 60:.0f} min wall, "
                f"~{db_bytes * full / 2**20:.0f} MiB database (memory and the leaderboard query grow "
                "with the job: measure them at a larger --scale before trusting a straight line)"
            )


if __name__ == "__main__":
    main()
