"""The driver's own cost per trial: a job of instant trials through real Ray, Optuna and SQLite.

Every trial's evaluation returns at once (a stand-in passed to ``run_job(evaluate=...)``;
the benchmark's only fake), so the time per trial is what the driver spends: asking
Optuna, recording the trial in the results store and in Optuna's storage (as it starts
and as it ends), submitting it to Ray and collecting its result, walking the stages and
the strategy. Target: at least 50 trials per second.

The reference, measured in the same process on the same Ray instance, is the bare Ray
round trip of the same instant task at the same concurrency: the floor the driver adds to.
The driver's resident memory is sampled as trials finish and should stay flat.

    python benchmarks/driver_overhead.py [--trials 2000] [--in-flight 8] [--sampler random]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import ray

from search._driver import run_job
from search._jobspec import JobSpec
from search._progress import ProgressFeed
from search._settings import resolve_settings
from workers import TrialResult
from workers._runner import TrialRequest, library_cell, trial_runner


def instant(cell: Any, task: Any, hparams: Any, budget: Any, report: Any, device: str) -> TrialResult:
    """A trial that trains nothing: its value depends on the learning rate, so studies have a best."""
    value = 1.0 / (1.0 + abs(float(hparams.get("learning_rate", 0.01)) - 0.01))
    return TrialResult(status="ok", task=task.name, metric="accuracy", direction="maximize", value=value)


def rss_mib() -> float:
    """The current resident set size (Linux), else the peak."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare_ray_rate(trials: int, in_flight: int) -> float:
    """Instant trials through Ray alone, ``in_flight`` at a time."""
    runner = trial_runner(instant).options(num_cpus=1 / in_flight)
    request = TrialRequest(
        key="bare", cell=library_cell("gru"), task="arith", hparams={"learning_rate": 0.01}
    )
    ray.get([runner.remote(request, None) for _ in range(in_flight)])  # warm the workers
    started = time.perf_counter()
    pending = [runner.remote(request, None) for _ in range(in_flight)]
    submitted = in_flight
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        ray.get(done)
        if submitted < trials:
            pending.append(runner.remote(request, None))
            submitted += 1
    return trials / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--sampler", choices=["random", "tpe"], default="random")
    args = parser.parse_args()

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    bare = bare_ray_rate(args.trials, args.in_flight)

    spec = JobSpec.from_dict(
        {
            "name": "driver-overhead",
            "strategy": {"kind": "jozefowicz", "p_refine": 0.2, "refine_trials": 5},
            "seed_cells": ["lstm", "gru", "tanh"],
            "tasks": [{"name": "arith"}],
            "trials_per_task": 20,
            "sampler": args.sampler,
            "budget": {"max_trials": args.trials},
            "resources": {"cpus": 2 / args.in_flight, "max_in_flight": args.in_flight},
        }
    )
    samples: list[tuple[int, float]] = []
    feed = ProgressFeed()

    def sample(event: str, data: dict[str, Any]) -> None:
        if event == "trial_finished" and feed.trials_done % (args.trials // 8 or 1) == 0:
            samples.append((feed.trials_done, rss_mib()))

    feed.subscribe(sample)
    with tempfile.TemporaryDirectory() as folder:
        settings = resolve_settings(db_url=f"sqlite:///{Path(folder) / 'bench.db'}", env={})
        started, cpu_started = time.perf_counter(), time.process_time()
        run_job(spec, settings, progress=feed, evaluate=instant)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    ray.shutdown()

    done = feed.trials_done
    rate = done / seconds
    print(
        f"trials: {done} through the driver in {seconds:.1f} s (Jozefowicz search, 20 trials per "
        f"cell and task, {args.sampler} sampler, {args.in_flight} in flight)"
    )
    print(f"driver: {rate:.1f} trials/s, {1000 / rate:.2f} ms per trial (target: >= 50 trials/s)")
    print(
        f"driver CPU time: {1000 * cpu_seconds / done:.2f} ms per trial, so one free core sustains "
        f"{done / cpu_seconds:.0f} trials/s (the wall-clock rate also waits on busy workers)"
    )
    print(f"bare Ray round trips: {bare:.1f} trials/s, {1000 / bare:.2f} ms per trial")
    print(
        f"driver overhead over bare Ray: {1000 / rate - 1000 / bare:.2f} ms per trial; "
        f"rate ratio {rate / bare:.3f}"
    )
    print(f"architectures proposed: {feed.architectures_proposed}")
    print("driver resident memory (MiB) by trials done: " + ", ".join(f"{n}: {m:.0f}" for n, m in samples))
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
