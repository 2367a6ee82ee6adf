"""Mutation and random cells: long mutation chains from every library cell stay valid and
trainable-looking (finite forward and backward at init); random cells meet their promises.

Every test is deterministic: numpy generators with fixed seeds, hypothesis derandomized.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import cells
from cells import CellGraph, canonical_hash, library, mutate, random_cell
from cells._mutation import DEFAULT_MAX_NODES

CHAINS_PER_CELL = 80
CHAIN_LENGTH = 20
COMPILED_PER_CELL = 4
QUOTED = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)'")


def ancestors(graph: CellGraph, name: str) -> set[str]:
    """Everything ``name`` depends on, inputs included."""
    seen: set[str] = set()
    stack = [name]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n in graph.node_map:
            stack.extend(graph.node_map[n].inputs)
    return seen


def check_child(parent: CellGraph, child: CellGraph, what: str) -> None:
    assert child.num_states == parent.num_states
    assert canonical_hash(child) != canonical_hash(parent), what
    assert len(child.nodes) <= max(DEFAULT_MAX_NODES, len(parent.nodes))
    assert len(child.outputs) == child.num_states
    assert all(o in child.node_map or o in child.input_names for o in child.outputs)
    assert child.outputs[0] in child.node_map, what
    if "x" in ancestors(parent, parent.outputs[0]):
        assert "x" in ancestors(child, child.outputs[0]), what
    assert child.name == f"mutant-{canonical_hash(child)[:8]}"
    # The description names at least one node of the parent or the child.
    assert what.strip()
    names = set(QUOTED.findall(what))
    assert names & (set(parent.node_map) | set(child.node_map)), what


def run_chain(start: CellGraph, seed: int, length: int = CHAIN_LENGTH) -> list[tuple[CellGraph, str]]:
    rng = np.random.default_rng(seed)
    chain = []
    graph = start
    for _ in range(length):
        graph, what = mutate(graph, rng)
        chain.append((graph, what))
    return chain


@cache
def chains(name: str) -> tuple[tuple[tuple[CellGraph, str], ...], ...]:
    """The mutation chains from one library cell, shared by the tests below."""
    return tuple(tuple(run_chain(library.get(name), seed)) for seed in range(CHAINS_PER_CELL))


def runs_finite(graph: CellGraph, hidden: int = 8, steps: int = 5, batch: int = 3) -> None:
    torch.manual_seed(0)
    layer = cells.build_layer(graph, input_size=hidden, hidden_size=hidden)
    x = torch.randn(steps, batch, hidden)
    out, state = layer(x)
    assert out.shape == (steps, batch, hidden)
    assert len(state) == graph.num_states
    assert torch.isfinite(out).all(), graph.to_json()
    (out.sum() + sum(s.sum() for s in state)).backward()
    grads = [p.grad for p in layer.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads), graph.to_json()


@pytest.mark.parametrize("name", library.names())
def test_mutation_chains_stay_valid(name: str) -> None:
    for chain in chains(name):
        parent = library.get(name)
        for step, (child, what) in enumerate(chain):
            check_child(parent, child, what)
            if step % 5 == 0:  # a full round trip through JSON is the strictest validity check
                assert CellGraph.from_json(child.to_json()) == child
            parent = child


@pytest.mark.parametrize("name", library.names())
def test_mutants_run_forward_and_backward(name: str) -> None:
    sample = [chain[step][0] for chain in chains(name)[:COMPILED_PER_CELL] for step in (0, CHAIN_LENGTH - 1)]
    for graph in sample:
        runs_finite(graph)


def test_all_edit_kinds_occur() -> None:
    kinds: Counter[str] = Counter()
    ops: set[tuple[str, tuple[tuple[str, float], ...]]] = set()
    for name in library.names():
        for chain in chains(name)[:20]:
            for graph, what in chain:
                for edit in what.split("; "):
                    kinds[edit_kind(edit)] += 1
                ops |= {(n.op, tuple(sorted(n.attrs.items()))) for n in graph.nodes}
    for kind in (
        "activation swap",
        "binary swap",
        "random replacement",
        "rewire",
        "insertion",
        "removal",
        "term added",
        "term dropped",
    ):
        assert kinds[kind] > 0, kinds
    assert kinds["other"] == 0, kinds
    for op in (
        "tanh",
        "sigmoid",
        "relu",
        "leaky_relu",
        "identity",
        "one_minus",
        "add",
        "sub",
        "mul",
        "blend",
        "diag",
    ):
        assert any(o == op for o, _ in ops), op
    assert ("scale", (("alpha", 0.9),)) in ops
    assert ("scale", (("alpha", 1.1),)) in ops


def edit_kind(edit: str) -> str:
    if m := re.fullmatch(r"replaced node '\w+' \((\w+)\S*\) by (\w+)(\[.*\])?(\(.*\))?", edit):
        if m.group(4):
            return "random replacement"
        return "binary swap" if m.group(1) in ("add", "sub", "mul") else "activation swap"
    patterns = {
        "rewire": r"rewired '\w+' input \d+ from '\w+' to '\w+'",
        "insertion": r"inserted node 'n\d+' = .* (as '\w+' input \d+|after '\w+'|as output h_new_\d)",
        "removal": r"removed node '\w+' \(.*\), its users now read '\w+'",
        "term added": r"added term '\w+' to linear '\w+'",
        "term dropped": r"dropped term '\w+' from linear '\w+'",
    }
    return next((kind for kind, pattern in patterns.items() if re.fullmatch(pattern, edit)), "other")


def test_rewire_description_names_the_slot() -> None:
    """E.g. "rewired 'ig' input 2 from 'g' to 'h_prev_0'": the slot is counted from 1."""
    lstm = library.get("lstm")
    for seed in range(200):
        child, what = mutate(lstm, np.random.default_rng(seed), p=0.0)
        if m := re.fullmatch(r"rewired '(\w+)' input (\d+) from '(\w+)' to '(\w+)'", what):
            node, slot, old, new = m.group(1), int(m.group(2)), m.group(3), m.group(4)
            assert lstm.node_map[node].inputs[slot - 1] == old
            assert child.node_map[node].inputs[slot - 1] == new
            return
    pytest.fail("no rewire in 200 single-edit mutations")


def test_same_seed_same_chain() -> None:
    for name in ("lstm", "gru", "mut2"):
        first = run_chain(library.get(name), seed=7, length=15)
        again = run_chain(library.get(name), seed=7, length=15)
        assert [(canonical_hash(g), w) for g, w in first] == [(canonical_hash(g), w) for g, w in again]
        assert [g.to_json() for g, _ in first] == [g.to_json() for g, _ in again]
        other = run_chain(library.get(name), seed=8, length=15)
        assert [w for _, w in other] != [w for _, w in first]


@given(
    name=st.sampled_from(library.names()),
    seed=st.integers(0, 2**32 - 1),
    p=st.none() | st.floats(0.0, 1.0),
    max_nodes=st.integers(4, 40),
)
@settings(max_examples=200, derandomize=True, deadline=None)
def test_mutate_property(name: str, seed: int, p: float | None, max_nodes: int) -> None:
    parent = library.get(name)
    rng = np.random.default_rng(seed)
    child, what = mutate(parent, rng, p=p, max_nodes=max_nodes)
    check_child(parent, child, what)
    assert len(child.nodes) <= max(max_nodes, len(parent.nodes))
    if p == 0.0:
        assert what.count("; ") == 0  # exactly one node edited
    grandchild, _ = mutate(child, rng, p=p, max_nodes=max_nodes)
    check_child(child, grandchild, _)


def test_small_max_nodes_bounds_the_chain() -> None:
    graph = library.get("tanh")
    rng = np.random.default_rng(3)
    sizes = []
    for _ in range(100):
        graph, _ = mutate(graph, rng, max_nodes=4)
        sizes.append(len(graph.nodes))
    assert max(sizes) == 4


def test_single_edits_keep_untouched_forget_gate() -> None:
    """Edits elsewhere leave the forget gate's tag and bias alone (the workers rely on it)."""
    kept = 0
    for seed in range(60):
        child, what = mutate(library.get("lstm-b1"), np.random.default_rng(seed), p=0.0)
        if "f_lin" not in what and "f_lin" in child.node_map:
            gate = child.node_map["f_lin"]
            assert (gate.tag, gate.attrs) == ("forget_gate", {"bias_init": 1.0})
            kept += 1
    assert kept > 30


def test_mutate_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"p: must lie in \[0, 1\], got 1.5"):
        mutate(library.get("gru"), np.random.default_rng(0), p=1.5)
    with pytest.raises(ValueError, match="max_nodes"):
        mutate(library.get("gru"), np.random.default_rng(0), max_nodes=0)


def test_a_bare_input_cell_can_be_mutated() -> None:
    """A cell with no nodes at all (h' = h) still gets a node."""
    bare = CellGraph.parse({"num_states": 1, "nodes": [], "outputs": ["h_prev_0"]})
    child, what = mutate(bare, np.random.default_rng(0))
    assert child.nodes and "inserted node 'n0'" in what


# --- Random cells ---------------------------------------------------------------------


def check_random_cell(cell: CellGraph) -> None:
    assert cell.name == f"random-{canonical_hash(cell)[:8]}"
    assert CellGraph.from_json(cell.to_json()) == cell
    assert all(o in cell.node_map for o in cell.outputs)
    assert "x" in ancestors(cell, cell.outputs[0])
    states = {f"h_prev_{i}" for i in range(cell.num_states)}
    for out in cell.outputs:
        assert ancestors(cell, out) & states, f"{out} ignores every previous state"
    read = {i for n in cell.nodes for i in n.inputs}
    assert states <= read


@given(
    seed=st.integers(0, 2**32 - 1),
    num_states=st.none() | st.integers(1, 3),
    num_nodes=st.none() | st.integers(4, 20),
)
@settings(max_examples=200, derandomize=True, deadline=None)
def test_random_cell_property(seed: int, num_states: int | None, num_nodes: int | None) -> None:
    cell = random_cell(np.random.default_rng(seed), num_states=num_states, num_nodes=num_nodes)
    check_random_cell(cell)
    if num_states is not None:
        assert cell.num_states == num_states
    if num_nodes is not None:
        assert len(cell.nodes) == num_nodes
    assert len(cell.nodes) <= DEFAULT_MAX_NODES
    child, what = mutate(cell, np.random.default_rng(seed))
    check_child(cell, child, what)


def test_random_cells_vary_and_run() -> None:
    made = [random_cell(np.random.default_rng(seed)) for seed in range(40)]
    assert len({canonical_hash(c) for c in made}) == 40
    assert {c.num_states for c in made} == {1, 2, 3}
    for cell in made[:20]:
        runs_finite(cell)


def test_random_cell_is_deterministic() -> None:
    a = random_cell(np.random.default_rng(11), num_states=2, num_nodes=9)
    b = random_cell(np.random.default_rng(11), num_states=2, num_nodes=9)
    assert a.to_json() == b.to_json()


def test_random_cell_smallest_sizes() -> None:
    assert len(random_cell(np.random.default_rng(0), num_states=1, num_nodes=1).nodes) == 1
    assert len(random_cell(np.random.default_rng(0), num_states=3, num_nodes=3).nodes) == 3


def test_random_cell_rejects_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="num_states: must be 1 to 3, got 4"):
        random_cell(rng, num_states=4)
    with pytest.raises(ValueError, match="num_nodes: must be 1 to max_nodes=30, got 31"):
        random_cell(rng, num_nodes=31)
