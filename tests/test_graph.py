"""The cell graph model: validation messages, pruning, JSON round trips and the library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _cell_examples import WRITES_C
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cells import CellGraph, CellGraphError, canonical_hash, library, mutate, random_cell

LIBRARY_NAMES = (
    "cifg",
    "gru",
    "gru-cho",
    "lstm",
    "lstm-b1",
    "lstm-nofg",
    "lstm-noig",
    "lstm-noog",
    "lstm-peephole",
    "mut1",
    "mut2",
    "mut3",
    "tanh",
)
"""The library's names are part of the CLI contract."""


def tanh_rnn(**changes: Any) -> dict[str, Any]:
    """A valid tanh RNN as a dict; tests break one thing at a time."""
    data: dict[str, Any] = {
        "name": "t",
        "num_states": 1,
        "nodes": [
            {"name": "a", "op": "linear", "inputs": ["x", "h_prev_0"]},
            {"name": "h", "op": "tanh", "inputs": ["a"]},
        ],
        "outputs": ["h"],
    }
    data.update(changes)
    return data


def with_node(node: dict[str, Any], output: str | None = None) -> dict[str, Any]:
    """The tanh RNN plus ``node``, which becomes the output unless ``output`` says otherwise."""
    base = tanh_rnn()
    return tanh_rnn(nodes=[*base["nodes"], node], outputs=[output or node["name"]])


def refused(data: Any) -> str:
    with pytest.raises(CellGraphError) as info:
        CellGraph.parse(data)
    return str(info.value)


def test_a_valid_graph_parses() -> None:
    g = CellGraph.parse(tanh_rnn())
    assert [n.name for n in g.nodes] == ["a", "h"]
    assert g.input_names == ("x", "h_prev_0")
    assert g.op_counts() == {"linear": 1, "tanh": 1}


def test_malformed_json_is_refused() -> None:
    with pytest.raises(CellGraphError, match="cell JSON: not valid JSON"):
        CellGraph.from_json('{"name": "t", "nodes": [')


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(tanh_rnn(outputs=["nowhere"])))
    with pytest.raises(
        CellGraphError, match=r"bad\.json: output h_new_0: refers to undefined node 'nowhere'"
    ):
        CellGraph.load(path)


def test_cycle_is_refused_naming_the_nodes() -> None:
    message = refused(
        tanh_rnn(
            nodes=[
                {"name": "a", "op": "linear", "inputs": ["x", "h"]},
                {"name": "h", "op": "tanh", "inputs": ["a"]},
            ]
        )
    )
    assert "cycle" in message
    assert "'a'" in message or "'h'" in message
    assert "a -> h -> a" in message or "h -> a -> h" in message


def test_self_loop_is_refused() -> None:
    assert "node 'h2': cycle h2 -> h2" in refused(with_node({"name": "h2", "op": "tanh", "inputs": ["h2"]}))


def test_unknown_op_is_refused() -> None:
    message = refused(with_node({"name": "q", "op": "softmax", "inputs": ["h"]}))
    assert "node 'q': unknown op 'softmax'" in message
    assert "tanh" in message  # the known ops are listed


@pytest.mark.parametrize(
    ("op", "inputs", "want"),
    [
        ("tanh", ["a", "h"], "exactly 1"),
        ("sub", ["a"], "exactly 2"),
        ("blend", ["a", "h"], "exactly 3"),
        ("add", ["a"], "at least 2"),
        ("mul", ["a"], "at least 2"),
        ("linear", [], "at least 1"),
        ("diag", ["a", "h"], "exactly 1"),
    ],
)
def test_wrong_arity_is_refused(op: str, inputs: list[str], want: str) -> None:
    message = refused(with_node({"name": "q", "op": op, "inputs": inputs}))
    assert f"node 'q': op '{op}' takes {want} inputs, got {len(inputs)}" in message


def test_undefined_input_is_refused() -> None:
    assert "node 'q': input 'nope' is not defined" in refused(
        with_node({"name": "q", "op": "add", "inputs": ["h", "nope"]})
    )


def test_state_beyond_num_states_is_undefined() -> None:
    assert "node 'q': input 'h_prev_1' is not defined" in refused(
        with_node({"name": "q", "op": "tanh", "inputs": ["h_prev_1"]})
    )


def test_linear_reading_an_input_twice_is_refused() -> None:
    assert "node 'q': linear reads the same input twice" in refused(
        with_node({"name": "q", "op": "linear", "inputs": ["x", "x"]})
    )


def test_missing_outputs_are_refused() -> None:
    assert "outputs: expected 2" in refused(tanh_rnn(num_states=2))
    assert "outputs" in refused({k: v for k, v in tanh_rnn().items() if k != "outputs"})


def test_too_many_outputs_are_refused() -> None:
    assert "outputs: expected 1" in refused(tanh_rnn(outputs=["h", "a"]))


def test_undefined_output_is_refused() -> None:
    assert "output h_new_0: refers to undefined node 'gone'" in refused(tanh_rnn(outputs=["gone"]))


@pytest.mark.parametrize("num_states", [0, 4])
def test_num_states_out_of_range_is_refused(num_states: int) -> None:
    assert "num_states" in refused(tanh_rnn(num_states=num_states))


@pytest.mark.parametrize(
    ("op", "attrs"),
    [
        ("scale", {"alpha": 11.0}),
        ("shift", {"beta": -10.5}),
        ("leaky_relu", {"negative_slope": 1.5}),
        ("scale", {"alpha": float("nan")}),
    ],
)
def test_attribute_out_of_range_is_refused(op: str, attrs: dict[str, float]) -> None:
    message = refused(with_node({"name": "q", "op": op, "inputs": ["h"], "attrs": attrs}))
    key = next(iter(attrs))
    assert f"node 'q': attribute {key}=" in message
    assert "out of range" in message


def test_linear_bias_init_out_of_range_is_refused() -> None:
    data = tanh_rnn()
    data["nodes"][0]["attrs"] = {"bias_init": 100.0}
    assert "node 'a': attribute bias_init=100.0 out of range [-10.0, 10.0]" in refused(data)


def test_unknown_attribute_is_refused() -> None:
    assert "node 'q': op 'tanh' has no attribute 'alpha'" in refused(
        with_node({"name": "q", "op": "tanh", "inputs": ["h"], "attrs": {"alpha": 2.0}})
    )


def test_duplicate_name_is_refused() -> None:
    assert "node 'h': name used twice" in refused(with_node({"name": "h", "op": "tanh", "inputs": ["a"]}))


@pytest.mark.parametrize("name", ["x", "h_prev_0", "h_prev_7"])
def test_reserved_name_is_refused(name: str) -> None:
    assert f"node {name!r}: name is reserved for an input" in refused(
        with_node({"name": name, "op": "tanh", "inputs": ["h"]}, output="h")
    )


@pytest.mark.parametrize("name", ["a.b", "1a", "a b", "a__b", "ä"])
def test_names_that_cannot_be_parameter_names_are_refused(name: str) -> None:
    assert f"node {name!r}: name must be" in refused(with_node({"name": name, "op": "tanh", "inputs": ["h"]}))


def test_field_errors_name_the_node() -> None:
    message = refused(with_node({"name": "q", "op": "tanh"}))
    assert message.startswith("node 'q' (nodes.2).inputs: Field required")
    message = refused(with_node({"name": "q", "op": "scale", "inputs": ["h"], "attrs": {"alpha": "big"}}))
    assert "node 'q' (nodes.2).attrs.alpha" in message
    assert "extra" in refused(with_node({"name": "q", "op": "tanh", "input": ["h"]})).lower()


def test_unreachable_nodes_are_pruned() -> None:
    data = tanh_rnn()
    data["nodes"] += [
        {"name": "dead", "op": "sigmoid", "inputs": ["a"]},
        {"name": "dead2", "op": "mul", "inputs": ["dead", "h"]},
    ]
    g = CellGraph.parse(data)
    assert [n.name for n in g.nodes] == ["a", "h"]
    assert canonical_hash(g) == canonical_hash(CellGraph.parse(tanh_rnn()))


def test_nodes_are_sorted_topologically() -> None:
    data = tanh_rnn(nodes=list(reversed(tanh_rnn()["nodes"])))
    assert [n.name for n in CellGraph.parse(data).nodes] == ["a", "h"]


def test_requires_input_equals_hidden() -> None:
    assert library.get("mut1").requires_input_equals_hidden  # tanh(x)
    assert library.get("mut2").requires_input_equals_hidden  # x + W h
    assert not library.get("lstm").requires_input_equals_hidden
    assert not library.get("mut3").requires_input_equals_hidden
    assert CellGraph.parse(tanh_rnn(outputs=["x"])).requires_input_equals_hidden
    assert CellGraph.parse(
        with_node({"name": "q", "op": "add", "inputs": ["h", "x"]})
    ).requires_input_equals_hidden


def test_library_has_exactly_the_documented_cells() -> None:
    assert library.names() == LIBRARY_NAMES


@pytest.mark.parametrize("name", LIBRARY_NAMES)
def test_library_cell_json_round_trip(name: str) -> None:
    g = library.get(name)
    assert g.name == name
    again = CellGraph.from_json(g.to_json())
    assert again == g
    assert canonical_hash(again) == canonical_hash(g)
    assert CellGraph.parse(json.loads(g.to_json(indent=None))) == g


def test_library_get_unknown_name() -> None:
    with pytest.raises(KeyError, match=r"unknown library cell 'lstmm' \(known: cifg, gru"):
        library.get("lstmm")


def test_resolve_by_name_or_file(tmp_path: Path) -> None:
    assert library.resolve("gru") == library.get("gru")
    path = tmp_path / "cell.json"
    path.write_text(library.get("tanh").to_json())
    assert library.resolve(path) == library.get("tanh")
    with pytest.raises(CellGraphError, match="neither a library cell"):
        library.resolve(tmp_path / "missing.json")


@pytest.mark.parametrize("name", ["lstm", "lstm-b1", "lstm-noig", "lstm-noog", "lstm-peephole", "cifg"])
def test_library_lstms_tag_their_forget_gate(name: str) -> None:
    gates = [n for n in library.get(name).nodes if n.tag == "forget_gate"]
    assert len(gates) == 1
    assert gates[0].op == "linear"
    assert gates[0].attrs.get("bias_init") == (1.0 if name == "lstm-b1" else None)


def test_lstm_without_forget_gate_has_no_tag() -> None:
    assert all(n.tag is None for n in library.get("lstm-nofg").nodes)


# --- the states a cell reads ----------------------------------------------------------------


def unread_cell_state() -> CellGraph:
    """Two states declared, ``c`` written (from ``x``) but never read: one state is carried."""
    return CellGraph.parse(WRITES_C)


def test_a_state_written_but_never_read_is_not_counted() -> None:
    graph = unread_cell_state()
    assert (graph.num_states, graph.states_read) == (2, (0,))
    assert library.get("lstm").states_read == (0, 1)
    # An output passing a state on to another state reads it; passing it to itself does not.
    moved = CellGraph.parse({**tanh_rnn(), "num_states": 2, "outputs": ["h", "h_prev_1"]})
    assert moved.states_read == (0,)
    swapped = CellGraph.parse({**tanh_rnn(), "num_states": 2, "outputs": ["h_prev_1", "h"]})
    assert swapped.states_read == (0, 1)


OPS_FOR_STATES = ("linear", "tanh", "mul", "add", "identity")


@st.composite
def small_graphs(draw: st.DrawFn) -> CellGraph:
    """Graphs over a few ops whose outputs may be states (passed on, or kept in place)."""
    k = draw(st.integers(1, 3))
    available = ["x", *(f"h_prev_{i}" for i in range(k))]
    nodes = []
    for n in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(OPS_FOR_STATES))
        arity = 1 if op in ("tanh", "identity") else draw(st.integers(1 if op == "linear" else 2, 3))
        arity = min(arity, len(available)) if op == "linear" else arity
        inputs = draw(
            st.lists(st.sampled_from(available), min_size=arity, max_size=arity, unique=op == "linear")
        )
        nodes.append({"name": f"n{n}", "op": op, "inputs": inputs})
        available.append(f"n{n}")
    outputs = [nodes[-1]["name"], *(draw(st.sampled_from(available)) for _ in range(k - 1))]
    return CellGraph.parse({"num_states": k, "nodes": nodes, "outputs": outputs})


@settings(max_examples=200, deadline=None)
@given(small_graphs())
def test_the_count_is_the_distinct_states_the_nodes_read(graph: CellGraph) -> None:
    """Without outputs that pass a state on, the states read are those the nodes reference."""
    assume(all(out == f"h_prev_{i}" or not out.startswith("h_prev_") for i, out in enumerate(graph.outputs)))
    referenced = {src for node in graph.nodes for src in node.inputs if src.startswith("h_prev_")}
    assert len(graph.states_read) == len(referenced)


@settings(max_examples=100, deadline=None)
@given(small_graphs(), st.integers(0, 2**32 - 1))
def test_a_state_not_read_changes_no_other_output(graph: CellGraph, seed: int) -> None:
    """What ``states_read`` leaves out is really not read: another start value of such a state
    changes no new state but its own (kept in place)."""
    import torch

    from cells._reference import ReferenceCell

    torch.manual_seed(seed)
    layer = ReferenceCell(graph, 3, 3).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    state = [torch.randn(2, 3, dtype=torch.float64) for _ in range(graph.num_states)]
    before = layer(x, tuple(state))
    for j in set(range(graph.num_states)) - set(graph.states_read):
        changed = list(state)
        changed[j] = changed[j] + 1.0
        after = layer(x, tuple(changed))
        for i in range(graph.num_states):
            if graph.outputs[i] != f"h_prev_{j}":
                assert torch.equal(before[i], after[i]), (i, j)


def test_mutants_count_the_states_they_read() -> None:
    rng = np.random.default_rng(0)
    graph = random_cell(rng, num_states=3)
    for _ in range(40):
        graph, _ = mutate(graph, rng)
        referenced = {src for node in graph.nodes for src in node.inputs}
        referenced |= {out for i, out in enumerate(graph.outputs) if out != f"h_prev_{i}"}
        assert graph.states_read == tuple(i for i in range(3) if f"h_prev_{i}" in referenced)
