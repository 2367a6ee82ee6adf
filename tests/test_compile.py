"""Compiled cell layers: parity with the per-node ReferenceLayer (outputs, states and every
gradient), parameters, caching, dropout, errors (torch.nn.LSTM / GRU parity:
``test_compile_native.py``).

Comparisons run in float64 so that 1e-5 is a statement about the maths, not about rounding.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from _layer_checks import (
    EAGER_MODES,
    F64,
    assert_matches_reference,
    assert_same_run,
    copy_weights,
    cuda,
    run_with_grads,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cells import (
    CellGraph,
    CellGraphError,
    ReferenceLayer,
    build_layer,
    clear_compile_cache,
    compile_cache_info,
    library,
)
from cells._ops import BINARY_OPS, UNARY_OPS

# -- every library cell and hand-made graphs against the reference -------------------------


@pytest.mark.parametrize("mode", EAGER_MODES)
@pytest.mark.parametrize("name", library.names())
def test_library_cell_matches_reference(name: str, mode: str) -> None:
    assert_matches_reference(library.get(name), mode)


EVERY_OP = CellGraph.parse(
    {
        "name": "every-op",
        "num_states": 3,
        "nodes": [
            {"name": "a", "op": "linear", "inputs": ["x", "h_prev_0", "h_prev_2"]},
            {"name": "b", "op": "linear", "inputs": ["h_prev_1"]},  # no x term
            {"name": "sa", "op": "sigmoid", "inputs": ["a"]},
            {"name": "rb", "op": "relu", "inputs": ["b"]},
            {"name": "lx", "op": "leaky_relu", "inputs": ["x"], "attrs": {"negative_slope": 0.2}},
            {"name": "d", "op": "diag", "inputs": ["h_prev_2"]},
            {"name": "s", "op": "sub", "inputs": ["rb", "lx"]},
            {"name": "bl", "op": "blend", "inputs": ["sa", "s", "d"]},
            {"name": "om", "op": "one_minus", "inputs": ["sa"]},
            {"name": "sc", "op": "scale", "inputs": ["bl"], "attrs": {"alpha": 0.9}},
            {"name": "sh", "op": "shift", "inputs": ["om"], "attrs": {"beta": 0.5}},
            {"name": "m3", "op": "mul", "inputs": ["sc", "sh", "x"]},
            {"name": "idn", "op": "identity", "inputs": ["m3"]},
            {"name": "c", "op": "linear", "inputs": ["idn", "m3", "x"]},  # reads a node and its alias
            {"name": "tc", "op": "tanh", "inputs": ["c"]},
            {"name": "add3", "op": "add", "inputs": ["tc", "idn", "h_prev_1"]},
        ],
        "outputs": ["add3", "idn", "h_prev_2"],  # the third state passes through unchanged
    }
)

GROUPED_ACTIVATIONS = CellGraph.parse(
    {
        "name": "grouped",
        "num_states": 2,
        "nodes": [
            # Linears followed by in-place and out-of-place grouped activations of every kind.
            {"name": "l1", "op": "linear", "inputs": ["x", "h_prev_0"]},
            {"name": "l2", "op": "linear", "inputs": ["x", "h_prev_0"]},
            {"name": "l3", "op": "linear", "inputs": ["x", "h_prev_1"]},
            {"name": "l4", "op": "linear", "inputs": ["h_prev_0"]},
            {"name": "l5", "op": "linear", "inputs": ["x"]},
            {"name": "a1", "op": "scale", "inputs": ["l1"], "attrs": {"alpha": -1.5}},
            {"name": "a2", "op": "scale", "inputs": ["l2"], "attrs": {"alpha": -1.5}},
            {"name": "a3", "op": "one_minus", "inputs": ["l3"]},
            {"name": "a4", "op": "leaky_relu", "inputs": ["l4"], "attrs": {"negative_slope": 0.1}},
            {"name": "a5", "op": "shift", "inputs": ["l5"], "attrs": {"beta": 2.0}},
            {"name": "u", "op": "mul", "inputs": ["a1", "l1"]},  # l1 is used twice: out-of-place
            {"name": "v", "op": "add", "inputs": ["a2", "a3", "a4", "a5", "u"]},
            {"name": "w", "op": "linear", "inputs": ["v", "l2"]},  # a linear reading a linear
            {"name": "h", "op": "tanh", "inputs": ["w"]},
            {"name": "m", "op": "mul", "inputs": ["h", "h"]},
        ],
        "outputs": ["h", "m"],
    }
)

NO_LINEAR = CellGraph.parse(
    {
        "name": "no-linear",
        "num_states": 1,
        "nodes": [
            {"name": "s", "op": "add", "inputs": ["x", "h_prev_0"]},
            {"name": "d", "op": "diag", "inputs": ["s"]},
            {"name": "h", "op": "tanh", "inputs": ["d"]},
        ],
        "outputs": ["h"],
    }
)

X_IS_OUTPUT = CellGraph.parse(
    {
        "name": "x-out",
        "num_states": 2,
        "nodes": [
            {"name": "a", "op": "linear", "inputs": ["h_prev_1", "h_prev_0"]},
            {"name": "h", "op": "sigmoid", "inputs": ["a"]},
        ],
        "outputs": ["x", "h"],
    }
)


@pytest.mark.parametrize("mode", ["fused", "autograd"])
@pytest.mark.parametrize(
    "graph", [EVERY_OP, GROUPED_ACTIVATIONS, NO_LINEAR, X_IS_OUTPUT], ids=lambda g: g.name
)
def test_hand_made_graph_matches_reference(graph: CellGraph, mode: str) -> None:
    assert_matches_reference(graph, mode)


@st.composite
def random_graphs(draw: st.DrawFn) -> CellGraph:
    """Random valid cells over the whole op set (input size = hidden size, so x may go anywhere)."""
    k = draw(st.integers(1, 3))
    names = ["x", *(f"h_prev_{i}" for i in range(k))]
    nodes = []
    for i in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["linear", "linear", "blend", "diag", *UNARY_OPS, *BINARY_OPS]))
        if op == "linear":
            inputs = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
        else:
            arity = {"blend": 3, "diag": 1, "sub": 2}.get(
                op, 1 if op in UNARY_OPS else draw(st.integers(2, 3))
            )
            inputs = [draw(st.sampled_from(names)) for _ in range(arity)]
        nodes.append({"name": f"n{i}", "op": op, "inputs": inputs})
        names.append(f"n{i}")
    outputs = [names[-1]] + [draw(st.sampled_from(names)) for _ in range(k - 1)]
    return CellGraph.parse({"name": "random", "num_states": k, "nodes": nodes, "outputs": outputs})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=random_graphs())
def test_random_graphs_match_reference(graph: CellGraph) -> None:
    assert_matches_reference(graph, "fused", input_size=3, hidden=3, layers=2, steps=4, max_magnitude=1e3)


# -- parameters, initialisation, modes ---------------------------------------------------------


def test_node_parameters_alias_the_fused_storage() -> None:
    layer = build_layer(library.get("gru-cho"), 3, 4, num_layers=2)
    ref = ReferenceLayer(library.get("gru-cho"), 3, 4, 2)
    assert layer.node_parameters(1).keys() == ref.node_parameters(1).keys()
    x = torch.randn(5, 2, 3)
    before, _ = layer(x)
    with torch.no_grad():
        layer.node_parameters(1)["n_lin.weight.rh"].zero_()
        layer.node_parameters(1)["n_lin.bias"].fill_(0.25)
    assert layer.layers[1].bias.tolist().count(0.25) == 4  # type: ignore[union-attr]
    after, _ = layer(x)
    assert not torch.allclose(before, after)
    with pytest.raises(IndexError, match="layer"):
        layer.node_parameters(2)


def test_initialisation_is_uniform_with_constant_bias_init() -> None:
    H = 64
    layer = build_layer(library.get("lstm-b1"), 32, H, num_layers=2)
    bound = 1 / math.sqrt(H)
    for k in range(2):
        params = layer.node_parameters(k)
        assert params["f_lin.bias"].eq(1.0).all()
        weights = torch.cat([v.flatten() for n, v in params.items() if n != "f_lin.bias"])
        assert weights.abs().max() <= bound
        assert weights.abs().mean() > bound / 4  # not all zeros: uniform has mean |w| = bound / 2
    assert {layer.graph.name, layer.num_states, layer.num_layers} == {"lstm-b1", 2}
    assert (layer.input_size, layer.hidden_size) == (32, H)


def test_set_bias_sets_every_tagged_linear_in_every_layer() -> None:
    layer = build_layer(library.get("lstm"), 3, 4, num_layers=2)
    assert layer.set_bias("forget_gate", 2.5) == 1
    for k in range(2):
        params = layer.node_parameters(k)
        assert params["f_lin.bias"].eq(2.5).all()
        assert not params["i_lin.bias"].eq(2.5).any()
    assert build_layer(library.get("gru"), 3, 4).set_bias("forget_gate", 1.0) == 0


@pytest.mark.parametrize("name", ["lstm", "gru-cho", "lstm-peephole"])
def test_no_grad_forward_equals_training_forward(name: str) -> None:
    layer = build_layer(library.get(name), 4, 4, num_layers=2, mode="fused")
    x = torch.randn(6, 3, 4)
    out, state = layer(x)
    with torch.no_grad():
        out2, state2 = layer(x)
    assert torch.equal(out, out2)
    assert all(torch.equal(a, b) for a, b in zip(state, state2, strict=True))


def test_single_state_cells_return_a_one_tuple_and_accept_a_bare_tensor() -> None:
    layer = build_layer(library.get("gru-cho"), 3, 4, num_layers=2)
    h0 = torch.randn(2, 5, 4)
    out, state = layer(torch.randn(6, 5, 3), h0)
    assert isinstance(state, tuple) and len(state) == 1 and state[0].shape == (2, 5, 4)
    out2, _ = layer(torch.randn(6, 5, 3), (h0,))
    assert out.shape == out2.shape == (6, 5, 4)


def test_layers_survive_deepcopy_and_pickling() -> None:
    layer = build_layer(library.get("lstm-peephole"), 3, 4, num_layers=2)
    x = torch.randn(4, 2, 3)
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    for clone in (copy.deepcopy(layer), torch.load(buffer, weights_only=False)):
        assert torch.equal(clone(x)[0], layer(x)[0])


def test_compile_mode_matches_and_compiles_each_cell_once() -> None:
    graph = library.get("gru-cho")
    before = compile_cache_info()
    first = build_layer(graph, 3, 4, mode="compile", compile_backend="aot_eager").to(F64)
    second = build_layer(graph, 3, 4, mode="compile", compile_backend="aot_eager").to(F64)
    ref = ReferenceLayer(graph, 3, 4).to(F64)
    x = torch.randn(5, 2, 3, dtype=F64)
    for layer in (first, second):
        copy_weights(ref.node_parameters(0), layer.node_parameters(0))
        assert_same_run(run_with_grads(ref, x, None), run_with_grads(layer, x, None))
    after = compile_cache_info()
    assert after.compiled_misses - before.compiled_misses == 1
    assert after.compiled_hits - before.compiled_hits >= 1


# -- cache ------------------------------------------------------------------------------------


def test_building_the_same_cell_twice_reuses_its_program() -> None:
    clear_compile_cache()
    graph = library.get("mut3")
    a = build_layer(graph, 4, 4, mode="fused")
    info = compile_cache_info()
    assert (info.hits, info.misses, info.size) == (0, 1, 1)
    b = build_layer(graph.with_name("another-name"), 8, 8, num_layers=2, mode="fused")
    renamed = CellGraph.parse(
        {
            **graph.model_dump(),
            "nodes": [
                {
                    **n.model_dump(),
                    "name": f"q_{n.name}",
                    "inputs": [i if i in graph.input_names else f"q_{i}" for i in n.inputs],
                }
                for n in graph.nodes
            ],
            "outputs": [f"q_{o}" for o in graph.outputs],
        }
    )
    c = build_layer(renamed, 4, 4, mode="fused")
    info = compile_cache_info()
    assert (info.hits, info.misses) == (2, 1)
    assert a.program is b.program is c.program
    build_layer(library.get("mut2"), 4, 4, mode="fused")
    assert compile_cache_info().misses == 2


# -- dropout, autocast, errors -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fused", "auto"])
def test_dropout_between_layers_only_in_train_mode(mode: str) -> None:
    torch.manual_seed(0)
    layer = build_layer(library.get("lstm"), 4, 16, num_layers=2, dropout=0.5, mode=mode)  # type: ignore[arg-type]
    plain = build_layer(library.get("lstm"), 4, 16, num_layers=2, mode=mode)  # type: ignore[arg-type]
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(5, 3, 4)
    layer.train()
    a, _ = layer(x)
    b, _ = layer(x)
    assert not torch.equal(a, b)
    layer.eval()
    c, _ = layer(x)
    assert torch.equal(c, layer(x)[0])
    assert torch.allclose(c, plain(x)[0], atol=1e-6)
    single = build_layer(library.get("lstm"), 4, 16, num_layers=1, dropout=0.5, mode=mode)  # type: ignore[arg-type]
    single.train()
    assert torch.equal(single(x)[0], single(x)[0])  # no dropout after the last layer


def test_cpu_autocast_runs_the_sequence_in_bfloat16() -> None:
    torch.manual_seed(0)
    layer = build_layer(library.get("gru-cho"), 8, 8, num_layers=2)
    x = torch.randn(5, 3, 8)
    expected, _ = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h,) = layer(x)
    assert out.dtype == torch.bfloat16 and h.dtype == torch.bfloat16
    assert torch.allclose(out.float(), expected, atol=0.05)
    out.float().sum().backward()
    assert layer.layers[0].bias.grad is not None and layer.layers[0].bias.grad.dtype == torch.float32  # type: ignore[union-attr]


def test_errors_name_the_field_and_the_expected_size() -> None:
    layer = build_layer(library.get("lstm"), 4, 6, num_layers=2)
    with pytest.raises(ValueError, match=r"feature size \(last dimension\) 4, got 5"):
        layer(torch.randn(3, 2, 5))
    with pytest.raises(ValueError, match=r"input: expected a tensor \[T, B, input_size=4\]"):
        layer(torch.randn(3, 4))
    with pytest.raises(ValueError, match="state: expected a tuple of 2 tensors"):
        layer(torch.randn(3, 2, 4), (torch.zeros(2, 2, 6),))
    with pytest.raises(
        ValueError, match=r"state\[1\]: expected shape \[num_layers=2, batch=2, hidden_size=6\]"
    ):
        layer(torch.randn(3, 2, 4), (torch.zeros(2, 2, 6), torch.zeros(1, 2, 6)))
    with pytest.raises(CellGraphError, match=r"input_size \(4\) must equal hidden_size \(6\)"):
        build_layer(library.get("mut1"), 4, 6)
    with pytest.raises(ValueError, match="hidden_size: expected a positive integer"):
        build_layer(library.get("lstm"), 4, 0)
    with pytest.raises(ValueError, match="dropout"):
        build_layer(library.get("lstm"), 4, 4, dropout=1.0)
    with pytest.raises(ValueError, match="mode: expected one of"):
        build_layer(library.get("lstm"), 4, 4, mode="fast")  # type: ignore[arg-type]


# -- CUDA (run where a GPU is present) ----------------------------------------------------------


@cuda
@pytest.mark.parametrize("name", ["lstm", "gru", "gru-cho", "lstm-peephole", "mut1"])
@pytest.mark.parametrize("mode", ["fused", "auto"])
def test_cuda_matches_reference(name: str, mode: str) -> None:
    assert_matches_reference(library.get(name), mode, device="cuda")


@cuda
@pytest.mark.parametrize("name", ["lstm", "gru-cho"])
def test_cuda_autocast(name: str) -> None:
    torch.manual_seed(0)
    layer = build_layer(library.get(name), 16, 16, num_layers=2).cuda()
    x = torch.randn(10, 4, 16, device="cuda")
    expected, _ = layer(x)
    with torch.autocast("cuda", dtype=torch.float16):
        out, _ = layer(x)
        loss = out.float().pow(2).mean()
    loss.backward()
    assert torch.allclose(out.float(), expected, atol=2e-2)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())
