"""Successive halving across architectures (the job's ``halving`` section).

The rung logic is tested alone (no Ray); the driver tests run real jobs on a local Ray
instance with a synthetic instant evaluator: its value is a known function of the cell (a
checksum of its graph) plus a term of the budget, and it reports as many steps as its budget
has, so what the ladder costs is counted from the trial rows.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest

from search import ResultStore
from search._job_errors import JobError
from search._jobspec import JobSpec
from search._settings import resolve_settings
from search._strategies import (
    HalvingSection,
    Ladder,
    Outcome,
    Refine,
    RegularizedEvolution,
    Stages,
    StageStatus,
    ladder_tasks,
)
from search._strategies._halving import top_share
from search._tuning import make_pruner
from workers import Budget, Direction

MEMORIZE = {"min_length": 3, "max_length": 4, "symbols": 4, "valid_size": 32, "test_size": 32}


def _spec(**overrides: Any) -> JobSpec:
    data: dict[str, Any] = {
        "name": "halving-test",
        "strategy": {"kind": "random"},
        "baselines": ["gru"],
        "tasks": [
            {"name": "memorize", "role": "filter", "threshold": 0.2, "trials": 1, "settings": MEMORIZE},
            {"name": "arith", "budget": {"max_steps": 90, "eval_every": 50}},
        ],
        "trials_per_task": 2,
        "halving": {"eta": 3, "rungs": 3},
        "budget": {"max_architectures": 15},
        "resources": {"cpus": 1, "max_in_flight": 1},
        "device": "cpu",
        "seed": 5,
    }
    data.update(overrides)
    return JobSpec.from_dict(data)


def cell_part(graph: dict[str, Any]) -> float:
    """The evaluator's part of the value fixed by the cell: a checksum of its nodes, in [0, 1)."""
    nodes = json.dumps(graph["nodes"], sort_keys=True)
    return (zlib.crc32(nodes.encode()) % 1000) / 1000


# -- the rung logic, alone -------------------------------------------------------------------


def test_rung_budgets_divide_the_task_budget_by_eta_per_rung() -> None:
    section = HalvingSection(eta=3, rungs=3)
    spec = _spec()
    tasks = ladder_tasks(spec.tasks, section)
    assert [(t.id, t.role, t.budget.max_steps, t.budget.eval_every) for t in tasks] == [
        ("memorize", "filter", 200, 50),  # the filter task is not laddered
        ("arith.r0", "search", 10, 10),  # eval_every no longer than the rung
        ("arith.r1", "search", 30, 30),
        ("arith", "search", 90, 50),  # the task's own budget is the top rung
    ]
    assert len({t.key for t in tasks}) == 4  # each rung its own evaluation
    assert [HalvingSection(eta=2, rungs=5).steps(1000, r) for r in range(5)] == [62, 125, 250, 500, 1000]
    halved = HalvingSection(eta=4, rungs=2).budget(Budget(max_steps=400, max_seconds=80.0), 0)
    assert (halved.max_steps, halved.max_seconds) == (100, 20.0)
    with pytest.raises(ValueError):
        section.steps(90, 3)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"eta": 1}, "halving.eta"),
        ({"eta": 11}, "halving.eta"),
        ({"rungs": 1}, "halving.rungs"),
        ({"rungs": 7}, "halving.rungs"),
        ({"eta": 3.0}, "halving.eta"),
        (
            {"eta": 10, "rungs": 3},
            "tasks.1.budget.max_steps: eta 10 and 3 rungs need max_steps of at least 100",
        ),
    ],
)
def test_halving_numbers_are_bounded(section: dict[str, Any], message: str) -> None:
    with pytest.raises(JobError, match=message.replace(".", r"\.")):
        _spec(halving=section)


def test_halving_refuses_the_fixed_strategy_and_a_label_its_rungs_take() -> None:
    with pytest.raises(JobError, match="halving: the fixed strategy"):
        _spec(strategy={"kind": "fixed", "cells": ["tanh"]})
    tasks = [
        {"name": "arith", "budget": {"max_steps": 90}},
        {"name": "arith", "label": "arith.r1", "role": "report-only"},
    ]
    with pytest.raises(JobError, match=r"tasks\.0: halving names this task's rungs arith\.r1"):
        _spec(tasks=tasks)


def test_the_best_share_goes_up_as_soon_as_it_is_in_the_top() -> None:
    """ASHA's rule: after each result, the best floor(n/eta) of the n finished are promoted; a
    candidate parked low is promoted later once enough worse ones have finished."""
    section = HalvingSection(eta=2, rungs=2)
    ladder = Ladder(_spec(halving={"eta": 2, "rungs": 2}).tasks, section)
    arrivals = [("a", 0.4), ("b", 0.9), ("c", 0.1), ("d", 0.5), ("e", 0.3), ("f", None), ("g", 0.95)]
    promoted = [ladder.record(h, "arith.r0", v) for h, v in arrivals]
    # n=1: none; n=2: the best (b); n=3: still 1; n=4: 2 -> d (0.5) beats a; n=6: 3 -> a; n=7: g
    assert promoted == [[], ["b"], [], ["d"], [], ["a"], ["g"]]
    assert ladder.counts() == {"arith.r0": (7, 4)}
    assert [ladder.verdict(h, "arith.r0") for h in "abcdefgz"] == [
        True,
        True,
        False,
        True,
        False,
        False,
        True,
        None,
    ]
    assert ladder.record("a", "arith.r0", 0.0) == []  # a second result of one candidate is ignored
    assert top_share([("x", 5.0), ("y", 1.0), ("z", 3.0)], 2, Direction.MINIMIZE) == ["y"]


def test_a_stopped_rung_is_scored_there_and_a_promotion_brings_it_back() -> None:
    spec = _spec(tasks=[{"name": "arith", "budget": {"max_steps": 90}}], trials_per_task=1)
    ladder = Ladder(spec.tasks, spec.halving)  # type: ignore[arg-type]
    stages = {
        h: Stages(
            spec.stage_tasks,
            {t.id: 1 for t in spec.stage_tasks},
            True,
            spec.rungs,
            lambda t, h=h: ladder.verdict(h, t),
        )
        for h in "abc"
    }
    baselines = {"arith.r0": 0.5, "arith.r1": 0.5, "arith": 0.5}
    for h, value in (("a", 0.6), ("b", 0.4)):
        assert stages[h].advance(baselines) == [("arith.r0", 1)]
        stages[h].started("arith.r0")
        stages[h].finished("arith.r0", value)
        assert stages[h].advance(baselines) == []  # waits for the ladder to rank it
        assert ladder.record(h, "arith.r0", value) == []
        stages[h].update(baselines)
        assert (stages[h].status, stages[h].stopped_at) == (StageStatus.STOPPED, "arith.r0")
    assert stages["a"].scored() == ["arith.r0"] and stages["a"].score(baselines) == pytest.approx(1.2)
    stages["c"].started("arith.r0")
    stages["c"].finished("arith.r0", 0.1)
    assert ladder.record("c", "arith.r0", 0.1) == ["a"]  # three finished: the best goes up
    assert stages["a"].promote()
    assert stages["b"].promote() and stages["b"].advance(baselines) == []  # its gate still says no
    assert (stages["b"].status, stages["b"].stopped_at) == (StageStatus.STOPPED, "arith.r0")
    assert stages["a"].advance(baselines) == [("arith.r1", 1)]
    stages["a"].started("arith.r1")
    stages["a"].finished("arith.r1", 0.8)
    assert stages["a"].scored() == ["arith.r1"] and stages["a"].score(baselines) == pytest.approx(1.6)


def test_a_threshold_applies_at_the_top_rung() -> None:
    spec = _spec(
        tasks=[{"name": "arith", "threshold": 1.5, "budget": {"max_steps": 90}}], halving={"rungs": 2}
    )
    assert [t.threshold for t in spec.stage_tasks] == [None, 1.5]
    stages = Stages(spec.stage_tasks, {"arith.r0": 1, "arith": 1}, True, spec.rungs, lambda t: True)
    baselines = {"arith.r0": 0.5, "arith": 0.5}
    stages.started("arith.r0")
    stages.finished("arith.r0", 0.55)  # 1.1 of the baseline: below the threshold, promoted anyway
    assert stages.advance(baselines) == [("arith", 1)]
    stages.started("arith")
    stages.finished("arith", 0.6)
    stages.update(baselines)
    assert (stages.status, stages.stopped_at) == (StageStatus.STOPPED, "arith")


def test_evolution_learns_the_score_of_a_promoted_candidates_higher_rung() -> None:
    evolution = {"kind": "regularized_evolution", "population_size": 4, "sample_size": 2}
    spec = _spec(strategy=evolution, budget={"max_architectures": 5})
    strategy = RegularizedEvolution.from_config(spec.strategy, spec.seed_graphs, spec.seed, None)
    first = strategy.ask()
    assert first is not None and not isinstance(first, Refine)
    strategy.tell(Outcome(first.hash, 0.8, False))  # stopped at a lower rung
    strategy.tell(Outcome(first.hash, 1.3, True))  # promoted later, through the top rung
    assert [m["score"] for m in strategy.state_dict()["population"]] == [1.3]


def test_the_docs_example_is_a_valid_halving_job() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "halving.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    spec = JobSpec.from_yaml_text(block)
    assert [(t.id, t.budget.max_steps) for t in spec.stage_tasks] == [
        ("memorize", 200),
        ("arith.r0", 100),
        ("arith.r1", 300),
        ("arith", 900),
    ]


def test_the_successive_halving_pruner_is_selectable() -> None:
    import optuna

    assert _spec(pruner="successive_halving").pruner == "successive_halving"
    assert isinstance(make_pruner("successive_halving"), optuna.pruners.SuccessiveHalvingPruner)


# -- real jobs -------------------------------------------------------------------------------


def _instant_evaluator() -> Any:
    """A stand-in for training: memorize gives the cell's part, arith the cell's part plus a
    term that grows with the budget (the same for every cell at a rung, so it keeps the order)."""
    from workers import TrialResult

    def instant(cell: Any, task: Any, hparams: Any, budget: Any, report: Any, device: str) -> TrialResult:
        part = (
            zlib.crc32(json.dumps(cell.model_dump(mode="json")["nodes"], sort_keys=True).encode()) % 1000
        ) / 1000
        value = part if task.name == "memorize" else 0.3 + 0.4 * part + 0.1 * budget.max_steps / 90
        return TrialResult(
            status="ok",
            task=task.name,
            metric="accuracy",
            direction="maximize",
            value=value,
            curve=[(budget.max_steps, value)],
            steps=budget.max_steps,
        )

    return instant


def _run(spec: JobSpec, tmp_path: Path, name: str) -> tuple[ResultStore, int]:
    from search._driver import run_job

    url = f"sqlite:///{tmp_path / name}"
    job_id = run_job(spec, resolve_settings(db_url=url, env={}), evaluate=_instant_evaluator())
    return ResultStore.open(url), job_id


def _rungs_reached(store: ResultStore, job_id: int) -> dict[str, set[int]]:
    """Task label -> the architectures with a finished evaluation on it."""
    reached: dict[str, set[int]] = {}
    for evaluation in store.evaluations(job_id):
        if evaluation.trials_completed:
            reached.setdefault(evaluation.task_label, set()).add(evaluation.architecture_id)
    return reached


def test_halving_promotes_the_best_and_spends_the_ladders_steps(ray_instance: None, tmp_path: Path) -> None:
    spec = _spec()
    store, job_id = _run(spec, tmp_path, "halving.db")
    reached = _rungs_reached(store, job_id)
    gru = store.find_architecture(spec.baseline_graphs[0][1])
    truth = {a: cell_part(store.get_architecture(a).graph) for a in reached["memorize"] if a != gru}
    passed = {a for a, v in truth.items() if v >= 0.2}
    rung0, rung1, top = (reached[label] - {gru} for label in ("arith.r0", "arith.r1", "arith"))
    assert gru in reached["arith.r0"] and gru in reached["arith.r1"] and gru in reached["arith"]
    assert rung0 == passed and len(rung0) >= 9  # the ladder starts after the filter
    # Every candidate in the final best third of a rung went up (ASHA promotes the top share
    # each time a result comes), and nothing else reached a higher rung than its quota allows.
    by_truth = sorted(rung0, key=lambda a: -truth[a])
    assert set(by_truth[: len(rung0) // 3]) <= rung1 <= rung0 and len(rung1) < len(rung0)
    assert set(sorted(rung1, key=lambda a: -truth[a])[: len(rung1) // 3]) <= top <= rung1
    best = max(rung0, key=lambda a: truth[a])
    assert best in top
    ranked = sorted(store.job_architectures(job_id), key=lambda r: -(r.score or -1.0))
    assert ranked[0].architecture_id == best and ranked[0].evaluated
    stopped = store.job_architecture(job_id, min(rung0 - rung1, key=lambda a: truth[a]))
    assert stopped is not None and stopped.score == pytest.approx(
        (0.3 + 0.4 * truth[stopped.architecture_id] + 0.1 * 10 / 90)
        / (0.3 + 0.4 * cell_part(store.get_architecture(gru).graph) + 0.1 * 10 / 90)
    )  # scored at its rung, relative to the baseline at the same budget

    trials = store.trials(job_id=job_id)
    steps = {"memorize": 200, "arith.r0": 10, "arith.r1": 30, "arith": 90}
    trials_of = {"memorize": 1, "arith.r0": 2, "arith.r1": 2, "arith": 2}
    ladder = sum(len(reached[label]) * trials_of[label] * steps[label] for label in steps)
    assert sum(t.steps or 0 for t in trials) == ladder
    full = (len(reached["memorize"])) * 200 + (len(passed) + 1) * 2 * 90
    assert ladder < full
    print(f"steps: ladder {ladder}, full budget {full}; per rung {[len(reached[x]) for x in steps]}")
    # The rungs hold exactly whom ASHA's rule promotes, replayed here from the trial rows in the
    # order the book learned each rung's result (its last trial's launch).
    assert _asha_promoted(store, job_id, "arith.r0", gru) == rung1
    assert _asha_promoted(store, job_id, "arith.r1", gru) == top


def _asha_promoted(
    store: ResultStore, job_id: int, label: str, baseline: int | None, eta: int = 3
) -> set[int]:
    """Every candidate that was in the best floor(n/eta) of the n finished on ``label`` at some point."""
    finished = []
    for evaluation in store.evaluations(job_id):
        if evaluation.task_label == label and evaluation.architecture_id != baseline:
            learned = max(t.launch or 0 for t in store.trials(evaluation_id=evaluation.id))
            finished.append((learned, evaluation.architecture_id, evaluation.best_value or 0.0))
    finished.sort()
    promoted: set[int] = set()
    for n in range(1, len(finished) + 1):
        best_first = sorted(finished[:n], key=lambda f: (-f[2], f[0]))
        promoted |= {arch for _, arch, _ in best_first[: n // eta]}
    return promoted


def test_a_halving_job_replays_its_promotions(ray_instance: None, tmp_path: Path) -> None:
    """Regularized evolution (its mutants depend on the scores it is told), four trials in
    flight on 2 CPUs: the promotions depend on the results in launch order only."""
    strategy = {"kind": "regularized_evolution", "population_size": 4, "sample_size": 2}
    spec = _spec(strategy=strategy, resources={"cpus": 0.5}, budget={"max_architectures": 10})
    outcomes = []
    for name in ("first.db", "second.db"):
        store, job_id = _run(spec, tmp_path, name)
        hashes = {
            a.architecture_id: store.get_architecture(a.architecture_id).canonical_hash
            for a in store.job_architectures(job_id)
        }
        reached = {
            label: sorted(hashes[a] for a in archs) for label, archs in _rungs_reached(store, job_id).items()
        }
        scores = sorted((hashes[a.architecture_id], a.score) for a in store.job_architectures(job_id))
        outcomes.append((reached, scores))
    assert outcomes[0] == outcomes[1]
    assert len(outcomes[0][0]["arith.r1"]) < len(outcomes[0][0]["arith.r0"])
