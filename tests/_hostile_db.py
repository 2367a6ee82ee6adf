"""A real results database for the hostile-input corpus, written by a small real job.

``cellsearch launch`` (a subprocess: it starts a local Ray) runs a ``fixed`` job of one library
cell and its baseline on one task, one trial each, a handful of steps, without MLflow. The
cases that point a command at an existing database get a copy of this folder; the commands
must leave its bytes (and its ``-wal``/``-shm`` state) and its row counts as they were.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

JOB = """\
name: hostile-db
strategy: {kind: fixed, cells: [tanh]}
seed_cells: []
baselines: [gru]
tasks:
  - name: memorize
    settings: {min_length: 2, max_length: 3, symbols: 4, valid_size: 16, test_size: 16}
    budget: {max_steps: 6, eval_every: 3, eval_batch_size: 16}
hparams: {hidden_size: 8, num_layers: 1, batch_size: 8}
trials_per_task: 1
resources: {cpus: 1}
device: cpu
seed: 0
"""

DB_NAME = "results.db"


def build_results_db(folder: Path) -> Path:
    """Run the small job into ``folder/results.db`` and return the folder holding only it."""
    work = folder / "job"
    work.mkdir(parents=True)
    (work / "job.yaml").write_text(JOB)
    db_dir = folder / "db"
    db_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop("CELLSEARCH_DB_URL", None)
    command = [
        sys.executable,
        "-m",
        "cellsearch",
        "launch",
        "job.yaml",
        "--no-mlflow",
        "--db",
        f"sqlite:///{db_dir / DB_NAME}",
    ]
    proc = subprocess.run(
        command, cwd=work, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the small job failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return db_dir
