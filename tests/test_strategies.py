"""Search strategies and task stages as pure logic: no Ray, no database."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cells import CellGraph, canonical_hash, library
from search._jobspec import TaskEntry
from search._strategies import (
    Candidate,
    FixedCells,
    JozefowiczSearch,
    Outcome,
    RandomSearch,
    Refine,
    RegularizedEvolution,
    Stages,
    relative_value,
    worst_task_score,
)

SEEDS = [("lstm", library.get("lstm")), ("gru", library.get("gru")), ("tanh", library.get("tanh"))]


def _round_trip(state: dict) -> dict:
    """Through JSON text, as the database stores it."""
    return json.loads(json.dumps(state))


def _describe(proposal: Candidate | Refine | None) -> tuple:
    if proposal is None:
        return ("none",)
    if isinstance(proposal, Refine):
        return ("refine", proposal.hash, proposal.trials)
    return ("candidate", proposal.hash, proposal.origin, proposal.parent_hash, proposal.mutation)


# -- scoring ---------------------------------------------------------------------------------


def test_relative_value_is_above_one_when_better_in_either_direction() -> None:
    assert relative_value(0.9, 0.6, "maximize") == pytest.approx(1.5)
    assert relative_value(0.3, 0.6, "maximize") == pytest.approx(0.5)
    assert relative_value(80.0, 100.0, "minimize") == pytest.approx(1.25)  # lower perplexity is better
    assert relative_value(200.0, 100.0, "minimize") == pytest.approx(0.5)
    assert relative_value(None, 0.6, "maximize") == 0.0  # every trial failed: the worst score
    assert relative_value(0.5, None, "maximize") is None  # no yardstick
    assert relative_value(0.5, 0.0, "maximize") is None


def test_score_is_the_worst_task_relative_to_the_best_baseline() -> None:
    tasks = [
        TaskEntry(name="memorize", role="filter", threshold=0.1),
        TaskEntry(name="arith"),  # maximize accuracy
        TaskEntry(name="text", settings={"preset": "ptb"}),  # minimize perplexity
        TaskEntry(name="xml", role="report-only"),
    ]
    assert tasks[2].direction == "minimize" and tasks[1].direction == "maximize"
    stages = Stages(tasks, {t.id: 1 for t in tasks}, gated=False)
    for task, value in (("memorize", 0.9), ("arith", 0.8), ("text", 150.0), ("xml", 0.1)):
        stages.started(task)
        stages.finished(task, value)
    # Best baseline values: arith 0.4 (candidate 2x better), text 100 (candidate 1.5x worse).
    baselines = {"arith": 0.4, "text": 100.0, "xml": 0.5}
    assert stages.advance(baselines) == [] and stages.status == "done"
    relative = stages.relative(baselines)
    assert relative["arith"] == pytest.approx(2.0)
    assert relative["text"] == pytest.approx(100 / 150)
    assert relative["xml"] == pytest.approx(0.2)  # reported, not scored
    assert "memorize" not in relative
    assert stages.score(baselines) == pytest.approx(100 / 150)
    assert worst_task_score({"a": 1.2, "b": None}) == 1.2
    assert worst_task_score({}) is None


@given(st.lists(st.floats(0.01, 100), min_size=1, max_size=5), st.floats(0.01, 100))
@settings(max_examples=50, deadline=None)
def test_worst_task_is_never_above_any_task(values: list[float], baseline: float) -> None:
    relative = {str(i): relative_value(v, baseline, "maximize") for i, v in enumerate(values)}
    score = worst_task_score(relative)
    assert score is not None and all(score <= r for r in relative.values() if r is not None)
    assert score == pytest.approx(min(values) / baseline)


# -- stages ----------------------------------------------------------------------------------


def _staged() -> Stages:
    tasks = [
        TaskEntry(name="memorize", role="filter", threshold=0.5),
        TaskEntry(name="arith", threshold=0.9),
        TaskEntry(name="xml"),
    ]
    return Stages(tasks, {"memorize": 2, "arith": 3, "xml": 1}, gated=True)


def _run(stages: Stages, task: str, values: list[float | None]) -> None:
    for value in values:
        stages.started(task)
        stages.finished(task, value)


def test_stages_filter_stops_a_candidate_below_the_threshold() -> None:
    stages = _staged()
    assert stages.advance({}) == [("memorize", 2)]
    _run(stages, "memorize", [0.2, 0.4])
    assert stages.advance({}) == [] and stages.status == "filtered" and stages.stopped_at == "memorize"
    assert stages.score({"arith": 0.5, "xml": 0.5}) is None


def test_stages_wait_for_the_baseline_then_stop_below_the_relative_threshold() -> None:
    stages = _staged()
    _run(stages, "memorize", [0.9, 0.1])
    assert stages.advance({}) == [("arith", 3)]
    _run(stages, "arith", [0.3, 0.4, None])
    assert stages.advance({}) == [] and stages.status == "running"  # the baseline is not done yet
    assert stages.advance({"arith": 0.5}) == [] and stages.status == "stopped"  # 0.4/0.5 < 0.9
    assert stages.score({"arith": 0.5, "xml": 0.5}) == pytest.approx(0.8)  # the stages it reached


def test_stages_go_on_when_close_enough_and_refine_adds_trials() -> None:
    stages = _staged()
    _run(stages, "memorize", [0.9, 0.9])
    _run(stages, "arith", [0.46, 0.1, 0.2])
    assert stages.advance({"arith": 0.5}) == [("xml", 1)]  # 0.46/0.5 >= 0.9
    _run(stages, "xml", [0.3])
    assert stages.advance({"arith": 0.5, "xml": 0.2}) == [] and stages.complete
    assert stages.score({"arith": 0.5, "xml": 0.2}) == pytest.approx(0.92)
    assert stages.refine(2)
    assert stages.status == "running"
    assert stages.advance({"arith": 0.5, "xml": 0.2}) == [("arith", 2)]  # search tasks only, in order
    _run(stages, "arith", [0.6, 0.1])
    assert stages.advance({"arith": 0.5, "xml": 0.2}) == [("xml", 2)]
    _run(stages, "xml", [0.1, 0.1])
    assert stages.advance({"arith": 0.5, "xml": 0.2}) == []
    assert stages.complete and stages.score({"arith": 0.5, "xml": 0.2}) == pytest.approx(1.2)


def test_ungated_stages_run_every_task_at_once_and_interrupted_trials_run_again() -> None:
    stages = Stages(_staged().tasks, {"memorize": 2, "arith": 3, "xml": 1}, gated=False)
    assert stages.advance({}) == [("memorize", 2), ("arith", 3), ("xml", 1)]
    stages.started("arith")
    stages.finished("arith", None, counted=False)  # interrupted: not counted, asked again
    assert ("arith", 3) in stages.advance({})
    _run(stages, "memorize", [0.0, 0.0])  # no gate: a failed filter does not stop it
    assert stages.advance({}) == [("arith", 3), ("xml", 1)]


# -- jozefowicz ------------------------------------------------------------------------------


def _tell_all(strategy, scores: dict[str, float | None]) -> None:
    for cell_hash, score in scores.items():
        strategy.tell(Outcome(cell_hash, score, complete=score is not None))


def test_jozefowicz_keeps_the_top_k_and_mutates_listed_cells() -> None:
    search = JozefowiczSearch(SEEDS, top_k=2, p_refine=0.0, seed=1)
    seeds = [search.ask() for _ in range(3)]
    assert [s.library_name for s in seeds] == ["lstm", "gru", "tanh"]
    assert {h for h, _ in search.top} == {s.hash for s in seeds}  # listed while unscored
    child = search.ask()
    assert child.origin == "mutation" and child.parent_hash in {s.hash for s in seeds}
    assert child.generation == 1 and child.mutation
    _tell_all(search, {seeds[0].hash: 0.9, seeds[1].hash: 1.0, seeds[2].hash: None, child.hash: 1.3})
    # tanh was filtered out (no score): off the list; only the best two of the rest stay.
    assert search.top == [(child.hash, 1.3), (seeds[1].hash, 1.0)]
    assert search.listed() == [child.hash, seeds[1].hash]
    for _ in range(10):
        proposal = search.ask()
        assert isinstance(proposal, Candidate) and proposal.parent_hash in search.listed()
        search.tell(Outcome(proposal.hash, 0.1, complete=True))  # too weak to enter the list
    assert search.listed() == [child.hash, seeds[1].hash]


def test_jozefowicz_refines_scored_cells_but_never_baselines() -> None:
    search = JozefowiczSearch([("lstm", library.get("lstm"))], top_k=5, p_refine=1.0, refine_trials=3, seed=0)
    baseline = Candidate.of(library.get("gru"), "baseline", library_name="gru", gated=False)
    search.register(baseline)
    lstm = search.ask()
    assert lstm.library_name == "lstm"
    assert search.ask().origin == "mutation"  # nothing scored yet: nothing to refine
    search.tell(Outcome(baseline.hash, 1.0, complete=True, baseline=True))
    search.tell(Outcome(lstm.hash, 0.8, complete=True))
    refine = search.ask()
    assert refine == Refine(lstm.hash, 3)
    assert search.awaiting(lstm.hash)
    assert isinstance(search.ask(), Candidate)  # lstm is being refined, gru is a baseline
    search.tell(Outcome(lstm.hash, 1.1, complete=True))
    assert not search.awaiting(lstm.hash)
    assert search.top[0] == (lstm.hash, 1.1)


def test_no_cell_is_proposed_twice_and_equivalent_graphs_count_as_known() -> None:
    gru = library.get("gru")
    renamed = _renamed(gru)
    assert [n.name for n in renamed.nodes] != [n.name for n in gru.nodes]
    assert canonical_hash(renamed) == canonical_hash(gru)
    search = JozefowiczSearch(
        [("gru", gru), (None, renamed), ("lstm", library.get("lstm"))], p_refine=0.0, seed=3
    )
    proposals = []
    for _ in range(40):
        proposal = search.ask()
        assert isinstance(proposal, Candidate)
        proposals.append(proposal.hash)
        search.tell(Outcome(proposal.hash, 1.0, complete=True))
    assert len(proposals) == len(set(proposals))
    assert proposals[:2] == [
        canonical_hash(gru),
        canonical_hash(library.get("lstm")),
    ]  # the renamed gru skipped
    assert all(search.is_known(h) for h in proposals)


def _renamed(graph: CellGraph) -> CellGraph:
    """The same cell with every node renamed."""
    new = {n.name: f"renamed_{n.name}" for n in graph.nodes}
    data = graph.model_dump(mode="json")
    for node in data["nodes"]:
        node["name"] = new[node["name"]]
        node["inputs"] = [new.get(i, i) for i in node["inputs"]]
    data["outputs"] = [new.get(o, o) for o in data["outputs"]]
    return CellGraph.parse(data)


# -- regularized evolution -------------------------------------------------------------------


def test_regularized_evolution_ages_out_the_oldest_not_the_worst() -> None:
    evolution = RegularizedEvolution(SEEDS[:2], population_size=3, sample_size=2, seed=0)
    first = [evolution.ask() for _ in range(3)]
    assert [c.origin for c in first] == ["seed", "seed", "random"]
    assert evolution.ask() is None  # the population is not scored yet: wait
    scores = [5.0, 0.1, 0.2]  # the oldest is by far the best
    for candidate, score in zip(first, scores, strict=True):
        evolution.tell(Outcome(candidate.hash, score, complete=True))
    assert evolution.population == [(c.hash, s) for c, s in zip(first, scores, strict=True)]
    child = evolution.ask()
    assert child.origin == "mutation"
    evolution.tell(Outcome(child.hash, 0.05, complete=True))
    # The best member (oldest) died; the worse newcomers live on.
    assert [h for h, _ in evolution.population] == [first[1].hash, first[2].hash, child.hash]
    assert evolution.listed() == [first[1].hash, first[2].hash, child.hash]


def test_regularized_evolution_tournament_mutates_the_best_sampled() -> None:
    evolution = RegularizedEvolution(SEEDS, population_size=3, sample_size=3, seed=0)
    members = [evolution.ask() for _ in range(3)]
    for candidate, score in zip(members, [0.5, None, 2.0], strict=True):  # tanh filtered: -inf
        evolution.tell(Outcome(candidate.hash, score, complete=score is not None))
    for _ in range(3):  # the sample is the whole population: the best always wins
        child = evolution.ask()
        assert child.parent_hash == members[2].hash


# -- random and fixed ------------------------------------------------------------------------


def test_random_search_proposes_valid_new_cells() -> None:
    search = RandomSearch(num_states=2, max_nodes=10, seed=0)
    hashes = set()
    for _ in range(8):
        cell = search.ask()
        assert cell.origin == "random" and cell.graph.num_states == 2 and len(cell.graph.nodes) <= 10
        hashes.add(cell.hash)
    assert len(hashes) == 8


def test_fixed_covers_every_cell_on_every_task_without_gates() -> None:
    names = ["lstm", "gru", "mut1"]
    fixed = FixedCells([(n, library.get(n)) for n in names])
    cells = []
    while (proposal := fixed.ask()) is not None:
        cells.append(proposal)
    assert [c.library_name for c in cells] == names and fixed.finished
    tasks = [TaskEntry(name="memorize", role="report-only"), TaskEntry(name="arith", threshold=5.0)]
    for cell in cells:
        assert not cell.gated
        stages = Stages(tasks, {"memorize": 1, "arith": 1}, gated=cell.gated)
        assert stages.advance({}) == [("memorize", 1), ("arith", 1)]  # every task, no threshold


# -- state -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: JozefowiczSearch(SEEDS, top_k=3, p_refine=0.3, refine_trials=2, seed=7),
        lambda: RegularizedEvolution(SEEDS, population_size=4, sample_size=2, seed=7),
        lambda: RandomSearch(SEEDS[:1], num_states=1, max_nodes=8, seed=7),
        lambda: FixedCells(SEEDS),
    ],
    ids=["jozefowicz", "regularized_evolution", "random", "fixed"],
)
def test_state_round_trip_gives_the_same_next_proposals(make) -> None:
    original = make()
    baseline = Candidate.of(library.get("mut1"), "baseline", library_name="mut1", gated=False)
    original.register(baseline)
    score = 0.5
    for _ in range(6):  # a history of proposals and outcomes, some pending
        proposal = original.ask()
        if isinstance(proposal, Candidate | Refine):
            score += 0.1
            original.tell(Outcome(proposal.hash, score, complete=True))
    original.tell(Outcome(baseline.hash, 1.0, complete=True, baseline=True))
    pending = original.ask()

    restored = make()
    restored.load_state_dict(_round_trip(original.state_dict()))
    assert restored.state_dict() == original.state_dict()
    assert restored.awaiting(pending.hash) if pending is not None else True
    for _ in range(6):
        a, b = original.ask(), restored.ask()
        assert _describe(a) == _describe(b)
        if a is not None:
            original.tell(Outcome(a.hash, 0.7, complete=True))
            restored.tell(Outcome(b.hash, 0.7, complete=True))


def test_state_of_another_strategy_is_refused() -> None:
    state = RandomSearch(seed=0).state_dict()
    with pytest.raises(ValueError, match="strategy state is for 'random', not 'jozefowicz'"):
        JozefowiczSearch(SEEDS).load_state_dict(state)
