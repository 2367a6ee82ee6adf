"""NAS-Bench-NLP recipe import and export, on the real example recipe file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from _test_data import TEST_DATA, require_test_data
from hypothesis import given, settings
from hypothesis import strategies as st

from cells import CellGraph, CellGraphError, canonical_hash, from_nasbench_recipe, library, to_nasbench_recipe
from cells._nasbench import NASBENCH_TO_OP, dump_nasbench_recipes, load_nasbench_recipes
from cells._reference import ReferenceCell

RECIPES = TEST_DATA / "nasbench-nlp" / "recipes_example.json"

TANH_RECIPE = {
    "node_0": {"op": "linear", "input": ["x", "h_prev_0"]},
    "h_new_0": {"op": "activation_tanh", "input": ["node_0"]},
}


@pytest.fixture(scope="module")
def recipes() -> list[dict[str, Any]]:
    require_test_data("nasbench-nlp/recipes_example.json")
    return json.loads(RECIPES.read_text())


def cell(nodes: list[dict[str, Any]], outputs: list[str], num_states: int = 1) -> CellGraph:
    return CellGraph.parse({"name": "t", "num_states": num_states, "nodes": nodes, "outputs": outputs})


# --- import -----------------------------------------------------------------------------------------


def test_example_file_imports(recipes: list[dict[str, Any]]) -> None:
    graphs = load_nasbench_recipes(RECIPES)
    assert [g.name for g in graphs] == [f"recipe-{i:03d}" for i in range(len(recipes))]
    assert len(graphs) == 10
    assert graphs[3].description == "NAS-Bench-NLP recipe 3 of recipes_example.json."
    # The LSTM-like recipe keeps its cell state in h_new_1, so it has two states.
    assert [g.num_states for g in graphs] == [1, 2, 1, 1, 1, 1, 1, 1, 1, 1]
    assert graphs[1].outputs == ("h_new_0", "h_new_1")
    # Known cells among them: the Elman RNN (twice, operands in another order) and Cho's GRU.
    tanh, gru_cho = canonical_hash(library.get("tanh")), canonical_hash(library.get("gru-cho"))
    assert canonical_hash(graphs[0]) == canonical_hash(graphs[3]) == tanh
    assert canonical_hash(graphs[2]) == gru_cho
    # Op mapping: every node keeps its name and maps its op.
    for graph, recipe in zip(graphs, recipes, strict=True):
        for node in graph.nodes:
            assert node.op == NASBENCH_TO_OP[recipe[node.name]["op"]]
            assert list(node.inputs) == recipe[node.name]["input"]


def test_recipe_two_is_an_lstm_with_a_tanh_output_gate(recipes: list[dict[str, Any]]) -> None:
    graph = from_nasbench_recipe(recipes[1], name="nb-lstm")
    assert graph.name == "nb-lstm"
    assert graph.op_counts() == {"add": 1, "linear": 4, "mul": 3, "sigmoid": 2, "tanh": 3}
    assert canonical_hash(graph) != canonical_hash(library.get("lstm"))  # its "o" is tanh, not sigmoid


@pytest.mark.parametrize("index", range(10))
def test_round_trip_on_example_file(recipes: list[dict[str, Any]], index: int) -> None:
    recipe = recipes[index]
    graph = from_nasbench_recipe(recipe)
    exported = to_nasbench_recipe(graph)
    # Export gives back the recipe, less any node that reaches no output.
    assert set(exported) <= set(recipe)
    assert {k: recipe[k] for k in exported} == exported
    assert canonical_hash(from_nasbench_recipe(exported)) == canonical_hash(graph)


def test_unreachable_recipe_nodes_are_pruned() -> None:
    recipe = {**TANH_RECIPE, "dead": {"op": "activation_sigm", "input": ["x"]}}
    graph = from_nasbench_recipe(recipe)
    assert [n.name for n in graph.nodes] == ["node_0", "h_new_0"]
    assert to_nasbench_recipe(graph) == TANH_RECIPE


def test_imported_recipe_computes_nasbench_semantics() -> None:
    """blend(z, a, b) = z*a + (1-z)*b and a multi-input sum, checked against a hand computation."""
    recipe = {
        "l": {"op": "linear", "input": ["x", "h_prev_0"]},
        "z": {"op": "activation_sigm", "input": ["l"]},
        "s": {"op": "elementwise_sum", "input": ["x", "h_prev_0", "l"]},
        "h_new_0": {"op": "blend", "input": ["z", "s", "h_prev_0"]},
    }
    graph = from_nasbench_recipe(recipe)
    ref = ReferenceCell(graph, 3, 3)
    x, h = torch.randn(2, 3), torch.randn(2, 3)
    p = ref.node_parameters()
    lin = x @ p["l.weight.x"].t() + h @ p["l.weight.h_prev_0"].t() + p["l.bias"]
    z = torch.sigmoid(lin)
    expected = z * (x + h + lin) + (1 - z) * h
    (out,) = ref(x, (h,))
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        (
            {"a": {"op": "conv", "input": ["x"]}, "h_new_0": {"op": "activation_tanh", "input": ["a"]}},
            "node 'a': unknown NAS-Bench-NLP op 'conv'",
        ),
        (
            {"h_new_0": {"op": "blend", "input": ["x", "h_prev_0"]}},
            "node 'h_new_0': op 'blend' takes exactly 3 inputs, got 2",
        ),
        (
            {"h_new_0": {"op": "elementwise_sum", "input": ["x"]}},
            "node 'h_new_0': op 'add' takes at least 2 inputs, got 1",
        ),
        (
            {"h_new_0": {"op": "activation_tanh", "input": ["x", "h_prev_0"]}},
            "node 'h_new_0': op 'tanh' takes exactly 1 inputs, got 2",
        ),
        (
            {"h_new_0": {"op": "activation_tanh", "input": ["ghost"]}},
            "node 'h_new_0': input 'ghost' is not defined",
        ),
        (
            {"h_new_0": {"op": "activation_tanh", "input": ["h_prev_1"]}},
            "node 'h_new_0': input 'h_prev_1' is not defined",
        ),
        (
            {
                "a": {"op": "activation_tanh", "input": ["b"]},
                "b": {"op": "activation_tanh", "input": ["a"]},
                "h_new_0": {"op": "linear", "input": ["a"]},
            },
            "cycle",
        ),
        (
            {"h_new_0": {"op": "linear", "input": ["x", "x"]}},
            "node 'h_new_0': linear reads the same input twice",
        ),
        (
            {"h_new_0": {"op": "linear", "input": "x"}},
            "node 'h_new_0': input: expected a list of node names, got a string",
        ),
        ({"h_new_0": {"op": "linear", "input": ["x"], "bias": 1}}, "node 'h_new_0': unknown field(s) 'bias'"),
        ({"h_new_0": ["linear", ["x"]]}, "node 'h_new_0': expected an object"),
        ({"a": {"op": "linear", "input": ["x"]}}, "no output node 'h_new_0'"),
        ({"h_new_1": {"op": "linear", "input": ["x"]}}, "has 'h_new_1' but no 'h_new_0'"),
        (
            {f"h_new_{i}": {"op": "linear", "input": ["x"]} for i in range(4)},
            "node 'h_new_3': at most 3 states",
        ),
        (
            {"x": {"op": "linear", "input": ["h_prev_0"]}, "h_new_0": {"op": "linear", "input": ["x"]}},
            "node 'x': name is reserved",
        ),
        (["not", "a", "recipe"], "recipe: expected a JSON object"),
    ],
)
def test_bad_recipes_name_the_node(recipe: Any, message: str) -> None:
    with pytest.raises(CellGraphError) as info:
        from_nasbench_recipe(recipe)
    text = str(info.value)
    assert message in text
    if message == "cycle":
        assert "node 'a': cycle a -> b -> a" in text or "node 'b': cycle b -> a -> b" in text


def test_bad_recipe_files(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("{not json")
    with pytest.raises(CellGraphError, match=r"r\.json: not valid JSON"):
        load_nasbench_recipes(path)
    path.write_text(json.dumps(TANH_RECIPE))
    with pytest.raises(CellGraphError, match="expected a JSON list of recipes, got an object"):
        load_nasbench_recipes(path)
    path.write_text(json.dumps([TANH_RECIPE, TANH_RECIPE, {"h_new_0": {"op": "relu", "input": ["x"]}}]))
    with pytest.raises(
        CellGraphError, match=r"r\.json: recipe 2: node 'h_new_0': unknown NAS-Bench-NLP op 'relu'"
    ):
        load_nasbench_recipes(path)
    with pytest.raises(CellGraphError, match="cannot read"):
        load_nasbench_recipes(tmp_path / "missing.json")


# --- export -----------------------------------------------------------------------------------------

EXPORTABLE = [
    "cifg",
    "gru",
    "gru-cho",
    "lstm",
    "lstm-nofg",
    "lstm-noig",
    "lstm-noog",
    "mut1",
    "mut2",
    "mut3",
    "tanh",
]


@pytest.mark.parametrize("name", EXPORTABLE)
def test_library_cells_round_trip(name: str) -> None:
    graph = library.get(name)
    recipe = to_nasbench_recipe(graph)
    assert {k for k in recipe if k.startswith("h_new_")} == {f"h_new_{i}" for i in range(graph.num_states)}
    assert all(spec["op"] in NASBENCH_TO_OP for spec in recipe.values())
    assert canonical_hash(from_nasbench_recipe(json.loads(json.dumps(recipe)))) == canonical_hash(graph)


def test_lstm_export_names_outputs_h_new() -> None:
    recipe = to_nasbench_recipe(library.get("lstm"))
    assert recipe["h_new_1"] == {"op": "elementwise_sum", "input": ["fc", "ig"]}
    assert recipe["h_new_0"] == {"op": "elementwise_prod", "input": ["o", "c_act"]}
    assert recipe["c_act"] == {"op": "activation_tanh", "input": ["h_new_1"]}
    assert recipe["f_lin"] == {"op": "linear", "input": ["x", "h_prev_0"]}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("lstm-b1", "node 'f_lin': linear with bias_init=1 has no NAS-Bench-NLP equivalent"),
        ("lstm-peephole", "node 'i_peep': op 'diag' has no NAS-Bench-NLP equivalent"),
    ],
)
def test_library_cells_without_equivalent_are_refused(name: str, message: str) -> None:
    with pytest.raises(CellGraphError, match=message):
        to_nasbench_recipe(library.get(name))


@pytest.mark.parametrize(
    ("op", "attrs"),
    [
        ("sub", {}),
        ("diag", {}),
        ("relu", {}),
        ("identity", {}),
        ("one_minus", {}),
        ("scale", {"alpha": 0.9}),
        ("shift", {"beta": 0.5}),
    ],
)
def test_ops_without_equivalent_are_refused(op: str, attrs: dict[str, float]) -> None:
    inputs = ["x", "h_prev_0"] if op == "sub" else ["h_prev_0"]
    graph = cell(
        [
            {"name": "odd", "op": op, "inputs": inputs, "attrs": attrs},
            {"name": "out", "op": "tanh", "inputs": ["odd"]},
        ],
        ["out"],
    )
    with pytest.raises(CellGraphError, match=f"node 'odd': op '{op}' has no NAS-Bench-NLP equivalent"):
        to_nasbench_recipe(graph)


def test_leaky_relu_exports_only_with_torchs_default_slope() -> None:
    node = {"name": "a", "op": "leaky_relu", "inputs": ["h_prev_0"]}
    assert to_nasbench_recipe(cell([node], ["a"])) == {
        "h_new_0": {"op": "activation_leaky_relu", "input": ["h_prev_0"]}
    }
    default_slope = to_nasbench_recipe(cell([{**node, "attrs": {"negative_slope": 0.01}}], ["a"]))
    assert default_slope["h_new_0"]["op"] == "activation_leaky_relu"
    with pytest.raises(CellGraphError, match=r"node 'a': leaky_relu with negative_slope=0\.2"):
        to_nasbench_recipe(cell([{**node, "attrs": {"negative_slope": 0.2}}], ["a"]))


def test_outputs_that_cannot_be_recipe_nodes_are_refused() -> None:
    a = {"name": "a", "op": "tanh", "inputs": ["h_prev_0"]}
    with pytest.raises(CellGraphError, match="output h_new_1: is the input 'h_prev_1'"):
        to_nasbench_recipe(cell([a], ["a", "h_prev_1"], num_states=2))
    with pytest.raises(CellGraphError, match="output h_new_1: node 'a' is already h_new_0"):
        to_nasbench_recipe(cell([a], ["a", "a"], num_states=2))


def test_clashing_names_are_renamed() -> None:
    graph = cell(
        [
            {"name": "h_new_0", "op": "linear", "inputs": ["x", "h_prev_0"]},
            {"name": "h_new_0_n1", "op": "sigmoid", "inputs": ["h_new_0"]},
            {"name": "out", "op": "mul", "inputs": ["h_new_0", "h_new_0_n1"]},
        ],
        ["out"],
    )
    recipe = to_nasbench_recipe(graph)
    # Names already in use are kept; only the node that looks like a new state is renamed.
    assert recipe == {
        "h_new_0_n2": {"op": "linear", "input": ["x", "h_prev_0"]},
        "h_new_0_n1": {"op": "activation_sigm", "input": ["h_new_0_n2"]},
        "h_new_0": {"op": "elementwise_prod", "input": ["h_new_0_n2", "h_new_0_n1"]},
    }
    assert canonical_hash(from_nasbench_recipe(recipe)) == canonical_hash(graph)


def test_dump_and_load_recipe_file(tmp_path: Path) -> None:
    graphs = [library.get(name) for name in EXPORTABLE]
    path = tmp_path / "out.json"
    dump_nasbench_recipes(graphs, path)
    data = json.loads(path.read_text())
    assert isinstance(data, list) and len(data) == len(graphs)
    loaded = load_nasbench_recipes(path)
    assert [canonical_hash(g) for g in loaded] == [canonical_hash(g) for g in graphs]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_dump_writes_nothing_when_a_cell_cannot_be_exported(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    with pytest.raises(CellGraphError, match="node 'i_peep': op 'diag'"):
        dump_nasbench_recipes([library.get("lstm"), library.get("lstm-peephole")], path)
    assert list(tmp_path.iterdir()) == []


# --- property ---------------------------------------------------------------------------------------

NB_OPS = [
    "linear",
    "blend",
    "elementwise_prod",
    "elementwise_sum",
    "activation_tanh",
    "activation_sigm",
    "activation_leaky_relu",
]
ARITY = {"linear": (1, 3), "blend": (3, 3), "elementwise_prod": (2, 3), "elementwise_sum": (2, 3)}


@st.composite
def nasbench_recipes(draw: st.DrawFn) -> dict[str, Any]:
    k = draw(st.integers(1, 3))
    available = ["x", *(f"h_prev_{i}" for i in range(k))]
    recipe: dict[str, Any] = {}
    count = draw(st.integers(k, 8))
    for j in range(count):
        op = draw(st.sampled_from(NB_OPS))
        low, high = ARITY.get(op, (1, 1))
        if op == "linear":
            inputs = draw(st.lists(st.sampled_from(available), min_size=low, max_size=high, unique=True))
        else:
            inputs = [draw(st.sampled_from(available)) for _ in range(draw(st.integers(low, high)))]
        # The last k nodes are the new states, in a drawn order.
        name = f"node_{j}" if j < count - k else f"h_new_{count - 1 - j}"
        recipe[name] = {"op": op, "input": inputs}
        available.append(name)
    return recipe


@settings(max_examples=100, deadline=None)
@given(nasbench_recipes())
def test_any_recipe_round_trips(recipe: dict[str, Any]) -> None:
    graph = from_nasbench_recipe(recipe)
    exported = to_nasbench_recipe(graph)
    assert {k: recipe[k] for k in exported} == exported
    assert canonical_hash(from_nasbench_recipe(exported)) == canonical_hash(graph)
