"""A job the cluster cannot run is refused before anything is written; a job that ran but scored
nothing ends failed, with one line saying why, in its exit code and in ``status``."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cellsearch._cli import app
from search import JobSpec, ProgressFeed, ResultStore, resolve_settings
from search._cluster_fit import FitWatch, fit_problem
from search._job_limits import Resources

MEMORIZE = {"min_length": 3, "max_length": 5, "symbols": 4, "valid_size": 16, "test_size": 16}
BUDGET = {"max_steps": 4, "eval_every": 2, "eval_batch_size": 16}
HPARAMS = {"hidden_size": 8, "num_layers": 1, "batch_size": 8}


def _job(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "endings",
        "strategy": {"kind": "fixed", "cells": ["tanh"]},
        "seed_cells": [],
        "baselines": ["gru"],
        "tasks": [{"name": "memorize", "settings": MEMORIZE, "budget": BUDGET}],
        "trials_per_task": 1,
        "hparams": HPARAMS,
        "device": "cpu",
        "resources": {"cpus": 1, "max_in_flight": 2},
    }
    data.update(overrides)
    return data


def _write_job(folder: Path, **overrides: Any) -> Path:
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(_job(**overrides)))
    return path


# -- what fits the cluster (no Ray) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("resources", "nodes", "problem"),
    [
        ({"cpus": 1}, [{"CPU": 2.0}], None),
        ({"cpus": 2}, [{"CPU": 1.0}, {"CPU": 2.0}], None),
        ({"cpus": 1, "gpus": 0.5}, [{"CPU": 4.0, "GPU": 1.0}], None),
        ({"cpus": 1, "custom": {"slot": 1}}, [{"CPU": 1.0, "slot": 2.0}], None),
        (
            {"cpus": 1000},
            [{"CPU": 2.0}],
            "resources.cpus: a trial asks for 1000 CPUs, but no node of the cluster has that much "
            "(the largest node has 2 CPUs and no GPU)",
        ),
        (
            {"cpus": 1, "gpus": 1},
            [{"CPU": 16.0}],
            "resources.gpus: a trial asks for 1 CPU and 1 GPU, but no node of the cluster has that much "
            "(the largest node has 16 CPUs and no GPU)",
        ),
        (
            # Enough of each in the cluster, but not on one node: a trial runs on one node.
            {"cpus": 4, "gpus": 1},
            [{"CPU": 8.0}, {"CPU": 1.0, "GPU": 1.0}],
            "resources.cpus, resources.gpus: a trial asks for 4 CPUs and 1 GPU, "
            "but no node of the cluster has that much "
            "(the largest node has 1 CPU and 1 GPU)",
        ),
        (
            {"cpus": 1, "custom": {"slot": 1}},
            [{"CPU": 2.0}],
            "resources.custom.slot: a trial asks for 1 CPU and 1 slot, "
            "but no node of the cluster has that much "
            "(the largest node has 2 CPUs, no GPU and no slot)",
        ),
        (
            {"cpus": 1},
            [],
            "resources.cpus: a trial asks for 1 CPU, but no node of the cluster has that much "
            "(the cluster has no alive node)",
        ),
    ],
)
def test_a_trial_fits_when_one_node_has_everything_it_asks_for(
    resources: dict[str, Any], nodes: list[dict[str, float]], problem: str | None
) -> None:
    found = fit_problem(Resources(**resources), nodes)
    assert found == problem


def test_a_job_that_loses_its_last_fitting_node_gives_up_after_the_patience() -> None:
    """Fake nodes and clock: losing a cluster's GPU node cannot be caused on this machine."""
    now = [0.0]
    nodes: list[list[dict[str, float]]] = [[{"CPU": 4.0, "GPU": 1.0}]]
    watch = FitWatch(
        Resources(cpus=1, gpus=1), patience=60, interval=5, nodes=lambda: nodes[0], clock=lambda: now[0]
    )
    assert watch.lost() is None
    nodes[0] = [{"CPU": 4.0}]  # the GPU node is gone
    for t in (1.0, 5.0, 30.0, 64.0):
        now[0] = t
        assert watch.lost() is None, t  # checked at 5 s (unfit from then), not yet 60 s later
    now[0] = 65.0
    lost = watch.lost()
    assert (
        lost is not None
        and lost.startswith("a trial asks for 1 CPU and 1 GPU")
        and lost.endswith("waited 60 s for one")
    )
    nodes[0] = [{"CPU": 4.0, "GPU": 1.0}]  # it came back
    now[0] = 70.0
    assert watch.lost() is None


# -- on a local Ray --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resources", "asked"),
    [
        ({"cpus": 1, "gpus": 1}, "resources.gpus: a trial asks for 1 CPU and 1 GPU"),
        ({"cpus": 1000}, "resources.cpus: a trial asks for 1000 CPUs"),
        (
            {"cpus": 1, "custom": {"tpu_slot": 1}},
            "resources.custom.tpu_slot: a trial asks for 1 CPU and 1 tpu_slot",
        ),
    ],
    ids=["gpu", "cpus", "custom"],
)
def test_launch_refuses_a_job_no_node_can_run_before_writing_anything(
    ray_instance: None, tmp_path: Path, resources: dict[str, Any], asked: str
) -> None:
    job = _write_job(tmp_path, resources=resources)
    result = CliRunner().invoke(
        app, ["launch", str(job), "--db", f"sqlite:///{tmp_path}/r.db", "--no-mlflow"]
    )
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    expected = f"error: {asked}, but no node of the cluster has that much (the largest node has 2 CPUs"
    assert lines[0].startswith(expected), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml"]  # no database, not even a schema


def test_a_search_whose_every_candidate_fails_the_filter_exits_1_and_says_so(
    ray_instance: None, tmp_path: Path
) -> None:
    """Real training, too short for any cell to memorize perfectly: no random cell passes the
    filter (the baseline, ungated, is scored, but it is the yardstick, not a finding)."""
    url = f"sqlite:///{tmp_path}/r.db"
    tasks = [
        {"name": "memorize", "role": "filter", "threshold": 1.0, "settings": MEMORIZE, "budget": BUDGET},
        {"name": "memorize", "label": "scored", "settings": {**MEMORIZE, "valid_size": 24}, "budget": BUDGET},
    ]
    job = _write_job(tmp_path, tasks=tasks, strategy={"kind": "random"}, budget={"max_architectures": 2})
    result = CliRunner().invoke(app, ["launch", str(job), "--db", url, "--no-mlflow"])
    reason = "nothing was scored: every candidate failed the filter memorize (threshold 1)"
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert f"error: job 1 ended failed: {reason}" in lines
    # the baseline failed the filter too: said once, as soon as its trials were in, not at the end
    warned = "warning: tasks.0.threshold: no baseline reaches the filter (accuracy 1; the best baseline got "
    (at,) = [i for i, line in enumerate(lines) if line.startswith(warned)]
    assert at < lines.index(f"error: job 1 ended failed: {reason}")
    status = CliRunner().invoke(app, ["status", "--db", url, "--format", "json"])
    summary = json.loads(status.output)
    assert (summary["state"], summary["error"]) == ("failed", reason)
    assert summary["architecture_stages"]["passed_filter"] == 0


def test_a_job_whose_every_trial_fails_ends_failed_with_the_most_common_error(
    ray_instance: None, tmp_path: Path
) -> None:
    """Every trial's worker is killed as it starts (a real SIGKILL), with no retries."""
    from search._driver import run_job

    url = f"sqlite:///{tmp_path}/r.db"
    slow = {**BUDGET, "max_steps": 100000, "max_seconds": 5.0}
    spec = JobSpec.from_dict(_job(tasks=[{"name": "memorize", "settings": MEMORIZE, "budget": slow}]))
    feed = ProgressFeed()

    def kill(event: str, data: dict[str, Any]) -> None:
        if event == "trial_started":
            os.kill(data["worker"]["pid"], signal.SIGKILL)

    feed.subscribe(kill)
    job_id = run_job(spec, resolve_settings(db_url=url, env={}), progress=feed, max_retries=0)
    with ResultStore.open(url) as store:
        job = store.get_job(job_id)
        trials = store.trials(job_id=job_id)
    assert [t.status for t in trials] == ["failed", "failed"]
    assert job.state == "failed"
    assert job.error is not None and job.error.startswith("nothing was scored: all 2 trials failed (")
    assert trials[0].error.split(" (after")[0] in job.error
