"""The zero-cost pre-filter inside the search: strategies drop the worst-scoring mutants of each
batch before they train, and the driver records them as filtered out.

The strategy tests score real cells with the real proxy (no Ray, no database); one job runs
on a real local Ray instance with a real SQLite store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from search._job_strategy import make_prefilter, make_strategy
from search._jobspec import JobSpec
from search._strategies import Candidate, Outcome
from workers import make_task
from workers._prefilter import rank_candidates

MEMORIZE = {"min_length": 3, "max_length": 5, "symbols": 4, "valid_size": 32, "test_size": 32}
PREFILTER = {
    "proxy": "grad_norm",
    "fraction": 0.5,
    "batch": 4,
    "hidden_size": 8,
    "batches": 1,
    "batch_size": 4,
}


def _spec(
    strategy: dict[str, Any], prefilter: dict[str, Any] | None = PREFILTER, **overrides: Any
) -> JobSpec:
    data: dict[str, Any] = {
        "name": "prefilter-test",
        "strategy": strategy,
        "seed_cells": ["gru"],
        "baselines": ["gru"],
        "tasks": [
            {
                "name": "memorize",
                "settings": MEMORIZE,
                "budget": {"max_steps": 10, "eval_every": 10, "eval_batch_size": 32},
            }
        ],
        "trials_per_task": 1,
        "hparams": {"hidden_size": 8, "num_layers": 1, "batch_size": 8},
        "device": "cpu",
        "budget": {"max_architectures": 2},
        "resources": {"cpus": 1, "max_in_flight": 1},
        "prefilter": prefilter,
    }
    data.update(overrides)
    return JobSpec.from_dict(data)


def _lowest(graphs: list[Any], drop: int) -> set[int]:
    """Indices of the ``drop`` lowest-scoring cells, by the proxy the job names."""
    task = make_task("memorize", **MEMORIZE)
    ranked = rank_candidates(graphs, task, proxy="grad_norm", hidden_size=8, batches=1, batch_size=4)
    return {index for index, _ in ranked[len(graphs) - drop :]}


def test_prefilter_is_off_unless_the_job_asks_for_it() -> None:
    kind = {"kind": "jozefowicz"}
    assert make_strategy(_spec(kind, prefilter=None)).prefilter is None
    assert make_prefilter(_spec(kind, prefilter={"enabled": False, "fraction": 0.25})) is None
    prefilter = make_prefilter(_spec(kind))
    assert prefilter is not None and prefilter.batch == 4 and "grad_norm" in prefilter.reason
    with pytest.raises(ValueError, match=r"prefilter\.batch"):
        make_prefilter(_spec(kind, prefilter={"batch": 1}))
    with pytest.raises(ValueError, match="fraction"):
        make_prefilter(_spec(kind, prefilter={"fraction": 1.5}))


def test_jozefowicz_drops_the_worst_half_of_each_batch_of_mutants_never_seeds() -> None:
    strategy = make_strategy(_spec({"kind": "jozefowicz", "p_refine": 0.0}))
    seed = strategy.ask()
    assert isinstance(seed, Candidate) and seed.origin == "seed"
    assert strategy.take_prefiltered() == []  # seed cells are never screened

    first = strategy.ask()
    dropped = strategy.take_prefiltered()
    assert isinstance(first, Candidate) and first.origin == "mutation"
    assert len(dropped) == 2 and all(c.origin == "mutation" for c in dropped)
    second = strategy.ask()  # the batch's other survivor: nothing new screened
    assert isinstance(second, Candidate) and strategy.take_prefiltered() == []
    batch = [first, second, *dropped]
    assert len({c.hash for c in batch}) == 4
    assert all(strategy.is_known(c.hash) for c in dropped)  # never drawn again
    assert not any(strategy.awaiting(c.hash) for c in dropped)  # no outcome expected
    # The dropped two are the two lowest proxy scores of the four.
    graphs = [c.graph for c in batch]
    assert _lowest(graphs, 2) == {2, 3}

    state = json.loads(json.dumps(strategy.state_dict()))  # as the database stores it
    third = strategy.ask()
    third_dropped = strategy.take_prefiltered()
    assert isinstance(third, Candidate) and len(third_dropped) == 2
    resumed = make_strategy(_spec({"kind": "jozefowicz", "p_refine": 0.0}))
    resumed.load_state_dict(state)
    again = resumed.ask()
    assert isinstance(again, Candidate) and again.hash == third.hash
    assert [c.hash for c in resumed.take_prefiltered()] == [c.hash for c in third_dropped]


def test_evolution_screens_only_the_mutants_after_the_first_population() -> None:
    evolution = {"kind": "regularized_evolution", "population_size": 2, "sample_size": 2}
    strategy = make_strategy(_spec(evolution, budget={"max_architectures": 3}))
    initial = [strategy.ask(), strategy.ask()]
    assert [c.origin for c in initial if isinstance(c, Candidate)] == ["seed", "random"]
    assert strategy.take_prefiltered() == []
    for score, candidate in zip((1.0, 0.5), initial, strict=True):
        assert isinstance(candidate, Candidate)
        strategy.tell(Outcome(candidate.hash, score, True))
    proposals = [strategy.ask(), strategy.ask()]
    dropped = strategy.take_prefiltered()
    assert all(isinstance(c, Candidate) and c.origin == "mutation" for c in proposals)
    assert len(dropped) == 2
    assert {c.hash for c in dropped}.isdisjoint(c.hash for c in proposals if isinstance(c, Candidate))
    strategy.ask()
    assert len(strategy.take_prefiltered()) == 2  # a second batch of four, two dropped


def test_a_job_records_the_dropped_mutants_as_filtered_out_untrained(
    ray_instance: None, tmp_path: Path
) -> None:
    from search import ResultStore
    from search._driver import run_job
    from search._settings import resolve_settings

    url = f"sqlite:///{tmp_path / 'results.db'}"
    spec = _spec({"kind": "jozefowicz", "p_refine": 0.0}, seed_cells=[], budget={"max_architectures": 2})
    job_id = run_job(spec, resolve_settings(db_url=url, env={}))
    with ResultStore.open(url) as store:
        assert store.get_job(job_id).state == "finished"
        members = store.job_architectures(job_id)
        trained = {t.architecture_id for t in store.trials(job_id=job_id)}
        records = {m.architecture_id: store.get_architecture(m.architecture_id) for m in members}
    untrained = [m for m in members if m.architecture_id not in trained]
    # gru (baseline) and the two survivors of one batch of four train; the other two do not.
    assert len(trained) == 3 and len(untrained) == 2
    assert all(m.filter_passed is False and not m.evaluated for m in untrained)
    gru = next(a for a in records.values() if a.library_name == "gru")
    assert all(records[m.architecture_id].parent_id == gru.id for m in untrained)
