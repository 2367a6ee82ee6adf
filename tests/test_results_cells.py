"""What ``results show`` and ``results top`` say about a job's cells: a random cell is named
as random and a library cell by its name, the states counted are those the cell reads, and
parameter counts are given at the job's own hidden size (the count a built layer has)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _cell_examples import WRITES_C
from typer.testing import CliRunner

from cells import CellGraph, build_layer, library
from cellsearch._cli import app
from search import ResultStore
from search._jobspec import JobSpec
from search._leaderboard import PARAMETER_COUNT_HIDDEN, job_hidden_size
from search._progress import ProgressFeed
from search._tuning import StudyBook

MEMORIZE = {"min_length": 3, "max_length": 5, "symbols": 4, "valid_size": 32, "test_size": 32}


def spec(**overrides: Any) -> JobSpec:
    data: dict[str, Any] = {
        "name": "cells-test",
        "strategy": {"kind": "random", "num_states": 2, "max_nodes": 8},
        "seed_cells": ["lstm"],
        "baselines": ["gru"],
        "tasks": [{"name": "memorize", "settings": MEMORIZE, "budget": {"max_steps": 30, "eval_every": 10}}],
        "trials_per_task": 1,
        "budget": {"max_architectures": 10},
        "hparams": {"hidden_size": 32, "num_layers": 1},
        "seed": 7,
        "device": "cpu",
    }
    data.update(overrides)
    return JobSpec.from_dict(data)


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout


def propose(url: str, job: JobSpec, count: int) -> tuple[int, list[int]]:
    """A job's first ``count`` proposals, recorded by the architecture book (no Ray, no training)."""
    from search._book import ArchitectureBook
    from search._job_budget import JobBudget
    from search._job_strategy import make_strategy

    with ResultStore.open(url) as store:
        job_id = store.create_job(job)
        studies = StudyBook(url, sampler=job.sampler, pruner=job.pruner, seed=job.seed)
        strategy, budget = make_strategy(job), JobBudget(job.budget)
        book = ArchitectureBook(job, job_id, store, studies, strategy, budget, ProgressFeed())
        book.start()
        for _ in range(count):
            book.propose()
        studies.close()
        return job_id, [arch.id for arch in book.archs.values() if not arch.baseline]


def built_parameters(graph: dict[str, Any], hidden: int) -> int:
    layer = build_layer(CellGraph.parse(graph), hidden, hidden, 1, 0.0)
    return sum(p.numel() for p in layer.parameters())


def test_random_cells_read_as_random_and_library_cells_by_name(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    job_id, [lstm, random_id] = propose(url, spec(), 2)
    code, out = cli("results", "show", str(random_id), "--db", url)
    assert code == 0
    assert f"  {random_id}, generation 0: random cell (job {job_id}, seed 7)" in out
    assert "seed cell" not in out
    code, out = cli("results", "show", str(lstm), "--db", url)
    assert f"  {lstm} (lstm), generation 0: library cell lstm" in out
    code, out = cli("results", "show", str(random_id), "-f", "json", "--db", url)
    [step] = json.loads(out)["lineage"]
    assert step["origin"] == f"random cell (job {job_id}, seed 7)" and step["mutation"] == step["origin"]


@pytest.mark.parametrize("hidden", [32, 20])
def test_parameters_are_counted_at_the_jobs_hidden_size(tmp_path: Path, hidden: int) -> None:
    """The count shown is the one torch finds in the built layer at the job's size, and says the size."""
    url = f"sqlite:///{tmp_path / 'results.db'}"
    _, [lstm, random_id] = propose(url, spec(hparams={"hidden_size": hidden, "num_layers": 1}), 2)
    with ResultStore.open(url) as store:
        graphs = {arch: store.get_architecture(arch).graph for arch in (lstm, random_id)}
    for arch, graph in graphs.items():
        code, out = cli("results", "show", str(arch), "-f", "json", "--db", url)
        data = json.loads(out)
        assert (
            data["parameter_count"] == built_parameters(graph, hidden) and data["parameter_hidden"] == hidden
        )
        code, out = cli("results", "show", str(arch), "--db", url)
        assert code == 0
        count = f"{built_parameters(graph, hidden):,}"
        assert f"{count} parameters per layer at input and hidden size {hidden}" in out
    assert built_parameters(graphs[lstm], hidden) == 4 * (2 * hidden * hidden + hidden)
    # Scored, the cells reach the leaderboard and the report with the same count and size.
    with ResultStore.open(url) as store:
        job_id = store.latest_job_id()
        assert job_id is not None
        for arch in graphs:
            store.update_job_architecture(job_id, arch, score=1.0, evaluated=True)
    code, out = cli("results", "top", "--db", url)
    assert code == 0 and f"at hidden {hidden}" in out
    assert all(f"{built_parameters(graph, hidden):,}" in out for graph in graphs.values())
    page = tmp_path / "report.html"
    code, _ = cli("report", str(job_id), "-o", str(page), "--db", url)
    assert code == 0
    html = page.read_text()
    for graph in graphs.values():
        count = f"{built_parameters(graph, hidden):,}"
        assert f"{count} parameters per layer at input and hidden size {hidden}" in html
    assert "W: weights on the input x" in html  # the equations' legend


def test_a_sampled_hidden_size_counts_at_the_reference_size_and_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    _, [lstm, _random] = propose(url, spec(hparams={"hidden_size": [32, 64]}), 2)
    code, out = cli("results", "show", str(lstm), "--db", url)
    assert code == 0
    count = f"{built_parameters(library.get('lstm').model_dump(mode='json'), PARAMETER_COUNT_HIDDEN):,}"
    assert f"{count} parameters per layer at input and hidden size {PARAMETER_COUNT_HIDDEN}" in out


def test_the_jobs_hidden_size_is_read_from_its_settings() -> None:
    tasks = [{"name": "a"}, {"name": "b"}]
    assert job_hidden_size({"hparams": {"hidden_size": 48}, "tasks": tasks}) == 48
    assert job_hidden_size({"hparams": {"hidden_size": [48]}, "tasks": tasks}) == 48
    assert job_hidden_size({"hparams": {"hidden_size": {"low": 32, "high": 64}}, "tasks": tasks}) is None
    assert job_hidden_size({"hparams": {"param_budget": 5000}, "tasks": tasks}) is None
    both = [{"name": "a"}, {"name": "b", "hparams": {"hidden_size": 64}}]
    assert job_hidden_size({"hparams": {"hidden_size": 48}, "tasks": both}) is None  # the tasks differ
    same = [{"name": "a", "hparams": {"hidden_size": 64}}, {"name": "b", "hparams": {"hidden_size": 64}}]
    assert job_hidden_size({"hparams": {"param_budget": 5000}, "tasks": same}) == 64


def test_a_state_the_cell_never_reads_is_not_counted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    writes_c = CellGraph.parse(WRITES_C)
    with ResultStore.open(url) as store:
        job_id = store.create_job(spec())
        arch, _ = store.add_architecture(writes_c, job_id=job_id)
        lstm, _ = store.add_architecture(library.get("lstm"), job_id=job_id, library_name="lstm")
    code, out = cli("results", "show", str(arch), "--db", url)
    assert code == 0 and "1 state(s), 3 nodes" in out and "generation 0: cell from a file" in out
    code, out = cli("results", "show", str(lstm), "--db", url)
    assert "2 state(s), 13 nodes" in out
