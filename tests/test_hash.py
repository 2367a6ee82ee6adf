"""Canonical hash: invariant under renaming, reordering and commutative operand order;
different for different cells (operand order of sub and blend, ops, attributes, sharing)."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cells import OPS, CellGraph, CellGraphError, Node, canonical_form, canonical_hash, library
from cells._hash import _attrs, _labels

PROPERTY = settings(
    max_examples=100, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

UNARY = ("tanh", "sigmoid", "relu", "leaky_relu", "identity", "one_minus", "scale", "shift", "diag")
ATTR_VALUES = {
    "scale": ("alpha", (0.9, 1.1, -2.0)),
    "shift": ("beta", (0.5, -0.5)),
    "leaky_relu": ("negative_slope", (0.2, 0.5)),
}


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, Any]:
    """A random cell graph as a dict, over every op; unreachable nodes are pruned by parsing."""
    k = draw(st.integers(1, 3))
    sources = ["x", *(f"h_prev_{i}" for i in range(k))]
    nodes: list[dict[str, Any]] = []
    for j in range(draw(st.integers(1, 12))):
        op = draw(st.sampled_from(sorted(OPS)))
        pick = st.sampled_from(sources)
        if op == "linear":
            inputs = draw(st.lists(pick, min_size=1, max_size=3, unique=True))
        elif op in ("add", "mul"):
            inputs = draw(st.lists(pick, min_size=2, max_size=3))
        elif op == "sub":
            inputs = draw(st.lists(pick, min_size=2, max_size=2))
        elif op == "blend":
            inputs = draw(st.lists(pick, min_size=3, max_size=3))
        else:
            inputs = [draw(pick)]
        # Favour the newest node as an operand so that graphs are deep rather than pruned.
        if j > 0 and draw(st.booleans()) and f"v{j - 1}" not in inputs:
            inputs[0] = f"v{j - 1}"
        attrs: dict[str, float] = {}
        if op in ATTR_VALUES and draw(st.booleans()):
            key, values = ATTR_VALUES[op]
            attrs[key] = draw(st.sampled_from(values))
        if op == "linear" and draw(st.integers(0, 3)) == 0:
            attrs["bias_init"] = 1.0
        nodes.append({"name": f"v{j}", "op": op, "inputs": inputs, "attrs": attrs})
        sources.append(f"v{j}")
    outputs = [nodes[-1]["name"]] + [draw(st.sampled_from(sources)) for _ in range(k - 1)]
    graph = CellGraph.parse({"num_states": k, "nodes": nodes, "outputs": outputs})
    return graph.model_dump()


def hash_of(data: dict[str, Any]) -> str:
    return canonical_hash(CellGraph.parse(data))


def expression_keys(data: dict[str, Any]) -> dict[str, str]:
    """Each node's expression tree (commutative operands sorted), as a digest.

    Written independently of cells._hash. If two operands of a non-commutative op have
    different expression trees, swapping them changes the tree of every output that reads
    the op, so the two graphs cannot be the same cell.
    """
    keys = {name: name for name in CellGraph.parse(data).input_names}
    for node in CellGraph.parse(data).nodes:
        kids = [keys[i] for i in node.inputs]
        if OPS[node.op].commutative:
            kids.sort()
        attrs = sorted((k, v) for k, v in node.attrs.items() if OPS[node.op].attrs[k].default != v)
        keys[node.name] = hashlib.sha256(repr((node.op, attrs, kids)).encode()).hexdigest()
    return keys


@given(graphs(), st.randoms(use_true_random=False))
@PROPERTY
def test_hash_ignores_node_names(data: dict[str, Any], rnd: Any) -> None:
    names = [n["name"] for n in data["nodes"]]
    fresh = [f"node_{i}" for i in range(len(names))]
    rnd.shuffle(fresh)
    rename = dict(zip(names, fresh, strict=True))
    renamed = {
        **data,
        "nodes": [
            {**n, "name": rename[n["name"]], "inputs": [rename.get(i, i) for i in n["inputs"]]}
            for n in data["nodes"]
        ],
        "outputs": [rename.get(o, o) for o in data["outputs"]],
    }
    assert canonical_form(CellGraph.parse(renamed)) == canonical_form(CellGraph.parse(data))
    assert hash_of(renamed) == hash_of(data)


@given(graphs(), st.randoms(use_true_random=False))
@PROPERTY
def test_hash_ignores_node_order(data: dict[str, Any], rnd: Any) -> None:
    shuffled = {**data, "nodes": list(data["nodes"])}
    rnd.shuffle(shuffled["nodes"])
    assert hash_of(shuffled) == hash_of(data)


@given(graphs(), st.randoms(use_true_random=False))
@PROPERTY
def test_hash_ignores_operand_order_of_commutative_ops(data: dict[str, Any], rnd: Any) -> None:
    permuted = {**data, "nodes": []}
    for node in data["nodes"]:
        inputs = list(node["inputs"])
        if OPS[node["op"]].commutative:
            rnd.shuffle(inputs)
        permuted["nodes"].append({**node, "inputs": inputs})
    assert canonical_form(CellGraph.parse(permuted)) == canonical_form(CellGraph.parse(data))
    assert hash_of(permuted) == hash_of(data)


@given(graphs(), st.data())
@PROPERTY
def test_swapping_operands_of_sub_or_blend_changes_the_hash(
    data: dict[str, Any], draw: st.DataObject
) -> None:
    keys = expression_keys(data)
    candidates = [
        (i, a, b)
        for i, n in enumerate(data["nodes"])
        if n["op"] in ("sub", "blend")
        for a in range(len(n["inputs"]))
        for b in range(a + 1, len(n["inputs"]))
        if keys[n["inputs"][a]] != keys[n["inputs"][b]]
    ]
    assume(candidates)
    i, a, b = draw.draw(st.sampled_from(candidates))
    swapped = {**data, "nodes": list(data["nodes"])}
    inputs = list(data["nodes"][i]["inputs"])
    inputs[a], inputs[b] = inputs[b], inputs[a]
    swapped["nodes"][i] = {**data["nodes"][i], "inputs": inputs}
    assert hash_of(swapped) != hash_of(data)


@given(graphs(), st.data())
@PROPERTY
def test_changing_an_op_or_attribute_changes_the_hash(data: dict[str, Any], draw: st.DataObject) -> None:
    singles = [i for i, n in enumerate(data["nodes"]) if n["op"] in UNARY]
    assume(singles)
    i = draw.draw(st.sampled_from(singles))
    node = data["nodes"][i]
    changed = {**data, "nodes": list(data["nodes"])}
    if node["op"] in ATTR_VALUES and draw.draw(st.booleans()):
        key, values = ATTR_VALUES[node["op"]]
        current = node["attrs"].get(key, OPS[node["op"]].attrs[key].default)
        new_attrs = {key: draw.draw(st.sampled_from([v for v in values if v != current]))}
        changed["nodes"][i] = {**node, "attrs": new_attrs}
    else:
        op = draw.draw(st.sampled_from([u for u in UNARY if u != node["op"]]))
        changed["nodes"][i] = {**node, "op": op, "attrs": {}}
    assert hash_of(changed) != hash_of(data)


@given(graphs(), st.data())
@PROPERTY
def test_unsharing_a_node_changes_the_hash(data: dict[str, Any], draw: st.DataObject) -> None:
    """One node read twice and two identical copies read once each are different cells."""
    uses = [(i, slot) for i, n in enumerate(data["nodes"]) for slot, src in enumerate(n["inputs"])]
    shared = sorted(
        {src for i, slot in uses if (src := data["nodes"][i]["inputs"][slot]).startswith("v")}
        & {s for s in (data["nodes"][i]["inputs"][slot] for i, slot in uses) if s.startswith("v")}
    )
    shared = [s for s in shared if sum(src == s for n in data["nodes"] for src in n["inputs"]) >= 2]
    assume(shared)
    name = draw.draw(st.sampled_from(shared))
    copy = next(n for n in data["nodes"] if n["name"] == name)
    readers = [i for i, n in enumerate(data["nodes"]) if name in n["inputs"]]
    reader = draw.draw(st.sampled_from(readers))
    unshared = {**data, "nodes": [*data["nodes"], {**copy, "name": "copy"}]}
    node = data["nodes"][reader]
    slot = node["inputs"].index(name)
    unshared["nodes"][reader] = {
        **node,
        "inputs": [*node["inputs"][:slot], "copy", *node["inputs"][slot + 1 :]],
    }
    assert len(CellGraph.parse(unshared).nodes) == len(CellGraph.parse(data).nodes) + 1
    assert hash_of(unshared) != hash_of(data)


def test_shared_linear_versus_two_identical_linears() -> None:
    def cell(second: str) -> dict[str, Any]:
        return {
            "num_states": 1,
            "nodes": [
                {"name": "a", "op": "linear", "inputs": ["x", "h_prev_0"]},
                {"name": "b", "op": "linear", "inputs": ["x", "h_prev_0"]},
                {"name": "sa", "op": "sigmoid", "inputs": ["a"]},
                {"name": "ta", "op": "tanh", "inputs": [second]},
                {"name": "h", "op": "mul", "inputs": ["sa", "ta"]},
            ],
            "outputs": ["h"],
        }

    assert hash_of(cell("a")) != hash_of(cell("b"))


def test_lstm_gates_are_not_merged() -> None:
    """The LSTM's i, f, o gates are identical expressions with separate weights; making two
    of them share one linear is a different cell."""
    lstm = library.get("lstm").model_dump()
    merged = {**lstm, "nodes": [{**n, "inputs": ["f_lin"]} if n["name"] == "i" else n for n in lstm["nodes"]]}
    assert len(CellGraph.parse(merged).nodes) == len(lstm["nodes"]) - 1
    assert hash_of(merged) != hash_of(lstm)


def test_deep_ties_between_commutative_operands() -> None:
    """Two identical operands of an add whose uses differ only four levels up: the hash must
    not depend on the order the add lists them in (a fixed number of label refinement
    rounds got this wrong)."""

    def cell(order: list[str]) -> dict[str, Any]:
        chain = lambda prefix, start, last_op: [  # noqa: E731
            {
                "name": f"{prefix}{i}",
                "op": "tanh" if i < 5 else last_op,
                "inputs": [start if i == 1 else f"{prefix}{i - 1}"],
            }
            for i in range(1, 6)
        ]
        return {
            "num_states": 2,
            "nodes": [
                {"name": "A", "op": "linear", "inputs": ["x"]},
                {"name": "B", "op": "linear", "inputs": ["x"]},
                {"name": "N", "op": "add", "inputs": order},
                *chain("P", "A", "tanh"),
                *chain("Q", "B", "sigmoid"),
                {"name": "o0", "op": "sub", "inputs": ["N", "P5"]},
                {"name": "o1", "op": "sub", "inputs": ["N", "Q5"]},
            ],
            "outputs": ["o0", "o1"],
        }

    assert hash_of(cell(["A", "B"])) == hash_of(cell(["B", "A"]))


def test_default_attributes_do_not_change_the_hash() -> None:
    def cell(attrs: dict[str, float]) -> dict[str, Any]:
        return {
            "num_states": 1,
            "nodes": [
                {"name": "a", "op": "linear", "inputs": ["x", "h_prev_0"]},
                {"name": "h", "op": "scale", "inputs": ["a"], "attrs": attrs},
            ],
            "outputs": ["h"],
        }

    assert hash_of(cell({})) == hash_of(cell({"alpha": 1.0}))
    assert hash_of(cell({})) != hash_of(cell({"alpha": 1.0000001}))


def test_tags_and_names_do_not_change_the_hash() -> None:
    lstm = library.get("lstm").model_dump()
    untagged = {
        **lstm,
        "name": "other",
        "description": "x",
        "nodes": [{**n, "tag": None} for n in lstm["nodes"]],
    }
    assert hash_of(untagged) == hash_of(lstm)


def test_library_cells_all_hash_differently() -> None:
    hashes = {name: canonical_hash(library.get(name)) for name in library.names()}
    assert len(set(hashes.values())) == len(hashes) == 13
    assert hashes["lstm"] != hashes["lstm-b1"]  # only the forget gate's bias_init differs
    assert all(len(h) == 16 and int(h, 16) >= 0 for h in hashes.values())


@pytest.mark.parametrize("name", library.names())
def test_library_hash_is_stable_across_parses(name: str) -> None:
    g = library.get(name)
    assert canonical_hash(CellGraph.from_json(g.to_json())) == canonical_hash(g)


# --- the hash is what it was: the old recursive walks as an oracle ------------------------------


def old_topological_order(nodes: tuple[Node, ...], inputs: tuple[str, ...]) -> list[str]:
    """cells._graph._topological_order before it was made iterative (verbatim)."""
    by_name = {n.name: n for n in nodes}
    state: dict[str, int] = {}
    order: list[str] = []

    def visit(name: str, path: list[str]) -> None:
        if name in inputs or state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*path[path.index(name) :], name]
            raise CellGraphError(f"node {name!r}: cycle {' -> '.join(cycle)}")
        state[name] = 1
        for child in by_name[name].inputs:
            visit(child, [*path, name])
        state[name] = 2
        order.append(name)

    for node in nodes:
        visit(node.name, [])
    return order


def old_canonical_form(graph: CellGraph) -> str:
    """cells._hash.canonical_form before it was made iterative (verbatim)."""
    label = _labels(graph)
    ids: dict[str, str] = {name: name for name in graph.input_names}
    lines: list[str] = []

    def visit(name: str) -> str:
        if name in ids:
            return ids[name]
        node = graph.node_map[name]
        inputs = list(node.inputs)
        if OPS[node.op].commutative:
            inputs.sort(key=lambda i: label[i])
        ids[name] = "?"
        kid_ids = [visit(i) for i in inputs]
        if OPS[node.op].commutative:
            kid_ids_sorted = sorted(zip((label[i] for i in inputs), kid_ids, strict=True))
            kid_ids = [k for _, k in kid_ids_sorted]
        ids[name] = str(len(lines))
        attrs = _attrs(node)
        attr_text = "".join(f"[{k}={v!r}]" for k, v in attrs.items())
        lines.append(f"{ids[name]}={node.op}{attr_text}({','.join(kid_ids)})")
        return ids[name]

    outs = [visit(o) for o in graph.outputs]
    return ";".join(reversed(lines)) + ";out=" + ",".join(outs)


ARITY = {"linear": (1, 3), "add": (2, 3), "mul": (2, 3), "sub": (2, 2), "blend": (3, 3)}


@st.composite
def shuffled_graphs(draw: st.DrawFn) -> dict[str, Any]:
    """A random valid cell over every op, its nodes listed in a random order."""
    k = draw(st.integers(1, 3))
    sources = ["x", *(f"h_prev_{i}" for i in range(k))]
    nodes: list[dict[str, Any]] = []
    for j in range(draw(st.integers(1, 14))):
        op = draw(st.sampled_from(sorted(OPS)))
        low, high = ARITY.get(op, (1, 1))
        inputs = draw(st.lists(st.sampled_from(sources), min_size=low, max_size=high, unique=op == "linear"))
        if j > 0 and draw(st.booleans()) and f"v{j - 1}" not in inputs:
            inputs[0] = f"v{j - 1}"
        attrs = {"alpha": draw(st.sampled_from([1.0, -2.0, 0.5]))} if op == "scale" else {}
        nodes.append({"name": f"v{j}", "op": op, "inputs": inputs, "attrs": attrs})
        sources.append(f"v{j}")
    outputs = [nodes[-1]["name"]] + [draw(st.sampled_from(sources)) for _ in range(k - 1)]
    random.Random(draw(st.integers(0, 2**32))).shuffle(nodes)
    return {"num_states": k, "nodes": nodes, "outputs": outputs}


@PROPERTY
@given(shuffled_graphs())
def test_order_and_hash_are_those_of_the_recursive_walks(data: dict[str, Any]) -> None:
    graph = CellGraph.parse(data)
    listed = tuple(Node.model_validate(n) for n in data["nodes"])
    live = {n.name for n in graph.nodes}
    old_order = [name for name in old_topological_order(listed, graph.input_names) if name in live]
    assert [n.name for n in graph.nodes] == old_order
    assert canonical_form(graph) == old_canonical_form(graph)


def test_library_hashes_are_those_of_the_recursive_walk() -> None:
    for name in library.names():
        graph = library.get(name)
        assert canonical_form(graph) == old_canonical_form(graph), name


def test_cycles_are_named_as_before() -> None:
    data = {
        "num_states": 1,
        "nodes": [
            {"name": "a", "op": "tanh", "inputs": ["c"]},
            {"name": "b", "op": "tanh", "inputs": ["a"]},
            {"name": "c", "op": "add", "inputs": ["b", "x"]},
        ],
        "outputs": ["c"],
    }
    with pytest.raises(CellGraphError, match=r"^node 'a': cycle a -> c -> b -> a$"):
        CellGraph.parse(data)
    listed = tuple(Node.model_validate(n) for n in data["nodes"])
    with pytest.raises(CellGraphError, match=r"^node 'a': cycle a -> c -> b -> a$"):
        old_topological_order(listed, ("x", "h_prev_0"))
