"""Compiled cell layers against torch.nn.LSTM / GRU (the native kernels and the fused path
on the same weights) and hand-written equations; recognising exact LSTMs and GRUs."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _layer_checks import F64, assert_same_run, close, copy_weights, run_with_grads
from torch import Tensor, nn

from cells import CellGraph, CellLayer, build_layer, library
from cells._compile_native import match_graph

# -- parity with torch.nn.LSTM and torch.nn.GRU ------------------------------------------


def lstm_from_torch(torch_lstm: nn.LSTM, layer: CellLayer) -> None:
    """PyTorch's gate order is i, f, g, o; its two biases add up to one per gate."""
    H = torch_lstm.hidden_size
    for k in range(torch_lstm.num_layers):
        w_ih, w_hh = getattr(torch_lstm, f"weight_ih_l{k}"), getattr(torch_lstm, f"weight_hh_l{k}")
        bias = getattr(torch_lstm, f"bias_ih_l{k}") + getattr(torch_lstm, f"bias_hh_l{k}")
        weights: dict[str, Tensor] = {}
        for gate, node in enumerate(("i_lin", "f_lin", "g_lin", "o_lin")):
            rows = slice(gate * H, (gate + 1) * H)
            weights[f"{node}.weight.x"] = w_ih[rows]
            weights[f"{node}.weight.h_prev_0"] = w_hh[rows]
            weights[f"{node}.bias"] = bias[rows]
        copy_weights(weights, layer.node_parameters(k))


def gru_from_torch(torch_gru: nn.GRU, layer: CellLayer) -> None:
    """PyTorch's gate order is r, z, n; the n gate keeps b_in (our n_x) and b_hn (our n_h) apart."""
    H = torch_gru.hidden_size
    for k in range(torch_gru.num_layers):
        w_ih, w_hh = getattr(torch_gru, f"weight_ih_l{k}"), getattr(torch_gru, f"weight_hh_l{k}")
        b_ih, b_hh = getattr(torch_gru, f"bias_ih_l{k}"), getattr(torch_gru, f"bias_hh_l{k}")
        r, z, n = (slice(g * H, (g + 1) * H) for g in range(3))
        weights = {
            "r_lin.weight.x": w_ih[r],
            "r_lin.weight.h_prev_0": w_hh[r],
            "r_lin.bias": b_ih[r] + b_hh[r],
            "z_lin.weight.x": w_ih[z],
            "z_lin.weight.h_prev_0": w_hh[z],
            "z_lin.bias": b_ih[z] + b_hh[z],
            "n_x.weight.x": w_ih[n],
            "n_x.bias": b_ih[n],
            "n_h.weight.h_prev_0": w_hh[n],
            "n_h.bias": b_hh[n],
        }
        copy_weights(weights, layer.node_parameters(k))


def torch_weight_grads_lstm(torch_lstm: nn.LSTM, k: int) -> dict[str, Tensor]:
    H = torch_lstm.hidden_size
    g_ih, g_hh = getattr(torch_lstm, f"weight_ih_l{k}").grad, getattr(torch_lstm, f"weight_hh_l{k}").grad
    g_b = getattr(torch_lstm, f"bias_ih_l{k}").grad  # equals bias_hh's gradient
    grads = {}
    for gate, node in enumerate(("i_lin", "f_lin", "g_lin", "o_lin")):
        rows = slice(gate * H, (gate + 1) * H)
        grads[f"{node}.weight.x"] = g_ih[rows]
        grads[f"{node}.weight.h_prev_0"] = g_hh[rows]
        grads[f"{node}.bias"] = g_b[rows]
    return grads


@pytest.mark.parametrize("mode", ["fused", "auto"])
@pytest.mark.parametrize("with_state", [False, True])
def test_lstm_matches_torch_lstm(mode: str, with_state: bool) -> None:
    torch.manual_seed(0)
    ref = nn.LSTM(4, 6, num_layers=2).to(F64)
    layer = build_layer(library.get("lstm"), 4, 6, num_layers=2, mode=mode).to(F64)  # type: ignore[arg-type]
    lstm_from_torch(ref, layer)
    x = torch.randn(7, 3, 4, dtype=F64)
    state = (torch.randn(2, 3, 6, dtype=F64), torch.randn(2, 3, 6, dtype=F64)) if with_state else None

    def torch_run(m: nn.Module, x: Tensor, s: Any) -> Any:
        out, (h, c) = m(x, s)
        return out, (h, c)

    class Adapter(nn.Module):
        def forward(self, x: Tensor, s: Any) -> Any:
            return torch_run(ref, x, s)

    assert_same_run(run_with_grads(Adapter(), x, state), run_with_grads(layer, x, state))
    for k in range(2):
        expected = torch_weight_grads_lstm(ref, k)
        got = layer.node_gradients(k)
        assert expected.keys() == got.keys()
        for name in expected:
            assert close(expected[name], got[name]), name


@pytest.mark.parametrize("mode", ["fused", "native"])
@pytest.mark.parametrize("with_state", [False, True])
def test_gru_matches_torch_gru(mode: str, with_state: bool) -> None:
    torch.manual_seed(0)
    ref = nn.GRU(4, 6, num_layers=2).to(F64)
    layer = build_layer(library.get("gru"), 4, 6, num_layers=2, mode=mode).to(F64)  # type: ignore[arg-type]
    gru_from_torch(ref, layer)
    x = torch.randn(7, 3, 4, dtype=F64)
    state = (torch.randn(2, 3, 6, dtype=F64),) if with_state else None

    class Adapter(nn.Module):
        def forward(self, x: Tensor, s: Any) -> Any:
            out, h = ref(x, None if s is None else s[0])
            return out, (h,)

    assert_same_run(run_with_grads(Adapter(), x, state), run_with_grads(layer, x, state))
    H = 6
    for k in range(2):
        g_ih, g_hh = getattr(ref, f"weight_ih_l{k}").grad, getattr(ref, f"weight_hh_l{k}").grad
        g_bih, g_bhh = getattr(ref, f"bias_ih_l{k}").grad, getattr(ref, f"bias_hh_l{k}").grad
        got = layer.node_gradients(k)
        n = slice(2 * H, 3 * H)
        assert close(got["z_lin.weight.h_prev_0"], g_hh[H : 2 * H])
        assert close(got["r_lin.bias"], g_bih[:H])
        assert close(got["n_x.weight.x"], g_ih[n])
        assert close(got["n_h.weight.h_prev_0"], g_hh[n])
        assert close(got["n_x.bias"], g_bih[n])
        assert close(got["n_h.bias"], g_bhh[n])


def test_auto_mode_takes_native_kernels_only_for_exact_lstm_and_gru() -> None:
    assert build_layer(library.get("lstm"), 3, 3).path("cpu") == "native"
    assert build_layer(library.get("lstm-b1"), 3, 3).path("cpu") == "native"  # bias_init is only an init
    gru = build_layer(library.get("gru"), 3, 3)
    assert (gru.native_kind, gru.path("cpu"), gru.path("cuda")) == ("gru", "fused", "native")
    for name in ("gru-cho", "cifg", "lstm-peephole", "tanh"):
        layer = build_layer(library.get(name), 3, 3)
        assert layer.native_kind is None and layer.path("cuda") == "fused"
    assert build_layer(library.get("lstm"), 3, 3, mode="fused").path("cpu") == "fused"
    with pytest.raises(ValueError, match="not an LSTM or GRU"):
        build_layer(library.get("gru-cho"), 3, 3, mode="native")


def test_match_graph_ignores_names_order_and_operand_order_of_commutative_ops() -> None:
    lstm = library.get("lstm")
    data = lstm.model_dump()
    renamed = {n["name"]: f"node_{i}" for i, n in enumerate(reversed(data["nodes"]))}
    nodes = []
    for n in reversed(data["nodes"]):
        inputs = [renamed.get(i, i) for i in n["inputs"]]
        if n["op"] in ("mul", "add", "linear"):
            inputs.reverse()
        nodes.append({**n, "name": renamed[n["name"]], "inputs": inputs})
    shuffled = CellGraph.parse({**data, "nodes": nodes, "outputs": [renamed[o] for o in data["outputs"]]})
    mapping = match_graph(lstm, shuffled)
    assert mapping is not None and mapping["f_lin"] == renamed["f_lin"]
    assert build_layer(shuffled, 3, 4).native_kind == "lstm"
    # Swapping the roles of two gates changes the function: no match.
    swapped = lstm.model_dump()
    for n in swapped["nodes"]:
        if n["name"] == "h_new":
            n["inputs"] = ["i", "c_act"]
    assert match_graph(lstm, CellGraph.parse(swapped)) is None


def test_gru_cho_matches_its_equations() -> None:
    torch.manual_seed(0)
    H = 5
    layer = build_layer(library.get("gru-cho"), 4, H).to(F64)
    p = {k: v.detach() for k, v in layer.node_parameters(0).items()}
    x = torch.randn(6, 2, 4, dtype=F64)
    h = torch.randn(2, H, dtype=F64)
    out, (h_last,) = layer(x, (h.unsqueeze(0),))
    outs = []
    for t in range(x.shape[0]):
        r = torch.sigmoid(x[t] @ p["r_lin.weight.x"].T + h @ p["r_lin.weight.h_prev_0"].T + p["r_lin.bias"])
        z = torch.sigmoid(x[t] @ p["z_lin.weight.x"].T + h @ p["z_lin.weight.h_prev_0"].T + p["z_lin.bias"])
        n = torch.tanh(x[t] @ p["n_lin.weight.x"].T + (r * h) @ p["n_lin.weight.rh"].T + p["n_lin.bias"])
        h = (1 - z) * n + z * h
        outs.append(h)
    assert close(out, torch.stack(outs))
    assert close(h_last[0], h)
