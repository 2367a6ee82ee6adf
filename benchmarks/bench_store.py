"""How many trials per second the results store records on SQLite (the driver needs >= 50/s).

Each trial is what the driver writes: ``start_trial`` (one transaction) and ``finish_trial``
(one transaction updating the trial and its evaluation). The reference, measured in the
same process on the same disk, is raw ``sqlite3`` doing one insert and one update per
trial with a commit after each, under the same pragmas: the floor any ORM layer pays.

    python benchmarks/bench_store.py [--trials 2000]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from cells import library
from search import ResultStore
from search._jobspec import JobSpec
from workers import TrialResult


def store_rate(path: Path, trials: int) -> float:
    spec = JobSpec.from_dict(
        {
            "name": "bench",
            "strategy": {"kind": "random"},
            "tasks": [{"name": "arith"}],
            "budget": {"max_trials": 1},
        }
    )
    with ResultStore.open(f"sqlite:///{path}") as store:
        job_id = store.create_job(spec)
        arch_id, _ = store.add_architecture(library.get("gru"), job_id=job_id)
        evaluation = store.get_or_create_evaluation(job_id, arch_id, spec.tasks[0])
        curve = [(step, 0.5) for step in range(0, 200, 50)]
        started = time.perf_counter()
        for i in range(trials):
            trial_id = store.start_trial(evaluation.id, hparams={"learning_rate": 1e-3, "i": i})
            result = TrialResult(
                status="ok",
                task="arith",
                metric="char_accuracy",
                direction="maximize",
                value=i / trials,
                curve=curve,
            )
            store.finish_trial(trial_id, result)
        return trials / (time.perf_counter() - started)


def raw_rate(path: Path, trials: int) -> float:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, status TEXT, value REAL, hparams TEXT, curve TEXT)")
    started = time.perf_counter()
    for i in range(trials):
        cursor = conn.execute("INSERT INTO t (status, hparams) VALUES ('running', '{}')")
        conn.commit()
        conn.execute(
            "UPDATE t SET status='ok', value=?, curve='[]' WHERE id=?", (i / trials, cursor.lastrowid)
        )
        conn.commit()
    rate = trials / (time.perf_counter() - started)
    conn.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        raw = raw_rate(Path(folder) / "raw.db", args.trials)
        store = store_rate(Path(folder) / "store.db", args.trials)
    print(f"raw sqlite3: {raw:8.0f} trials/s")
    print(f"ResultStore: {store:8.0f} trials/s  ({store / raw:.2f} of raw sqlite3; the driver needs 50/s)")


if __name__ == "__main__":
    main()
