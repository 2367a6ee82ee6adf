"""PyTorch's own kernels for cells that are exactly an LSTM or a GRU (``mode="native"``).

:func:`match_graph` recognises the library cell up to node names, order and ``bias_init``;
:func:`native_indices` gathers PyTorch's gate order from the fused parameters.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from cells import _library
from cells._graph import INPUT_X, CellGraph
from cells._ops import OPS

# Library node names of PyTorch's gate order: weight_ih rows, weight_hh rows, bias_ih blocks.
_NATIVE_GATES = {
    "lstm": (("i_lin", "f_lin", "g_lin", "o_lin"), ("i_lin", "f_lin", "g_lin", "o_lin")),
    "gru": (("r_lin", "z_lin", "n_x"), ("r_lin", "z_lin", "n_h")),
}


def native_kind(graph: CellGraph) -> str | None:
    """The library cell ("lstm" or "gru") that ``graph`` is, up to names, order and bias_init."""
    for kind in _NATIVE_GATES:
        if match_graph(_library.get(kind), graph) is not None:
            return kind
    return None


def native_indices(
    kind: str, graph: CellGraph, plan: Any, canonical: dict[str, str], H: int
) -> dict[str, Tensor]:
    mapping = match_graph(_library.get(kind), graph)
    assert mapping is not None
    x_rows, h_rows = _NATIVE_GATES[kind]

    def rows(source: str, names: Sequence[str]) -> Tensor:
        order = plan.weight_rows[plan.weight_sources.index(source)]
        blocks = [order.index(canonical[mapping[n]]) for n in names]
        return torch.cat([torch.arange(b * H, (b + 1) * H) for b in blocks])

    def bias_blocks(names: Sequence[str]) -> Tensor:
        blocks = [plan.linears.index(canonical[mapping[n]]) for n in names]
        return torch.cat([torch.arange(b * H, (b + 1) * H) for b in blocks])

    indices = {
        "_native_x": rows(INPUT_X, x_rows),
        "_native_h": rows("h_prev_0", h_rows),
        "_native_b": bias_blocks(x_rows),
    }
    if kind == "gru":
        indices["_native_bhn"] = bias_blocks(["n_h"])
    return indices


def match_graph(pattern: CellGraph, graph: CellGraph) -> dict[str, str] | None:
    """Node correspondence pattern -> graph if the two cells compute the same function with
    the same parameters (same ops, attributes other than ``bias_init``, operand order of
    non-commutative ops), else None. Names, node order and tags are ignored.

    Example:
        >>> from cells import library
        >>> match_graph(library.get("lstm"), library.get("lstm-b1"))["f_lin"]
        'f_lin'
        >>> match_graph(library.get("lstm"), library.get("gru")) is None
        True
    """
    if pattern.num_states != graph.num_states or len(pattern.nodes) != len(graph.nodes):
        return None
    p_nodes, g_nodes = pattern.node_map, graph.node_map

    def attrs(node: Any) -> dict[str, float]:
        spec = OPS[node.op]
        return {k: float(v) for k, v in node.attrs.items() if k != "bias_init" and spec.attrs[k].default != v}

    def unify(p: str, g: str, mapping: dict[str, str]) -> dict[str, str] | None:
        if p not in p_nodes or g not in g_nodes:
            return mapping if p == g and p not in p_nodes and g not in g_nodes else None
        if p in mapping:
            return mapping if mapping[p] == g else None
        if g in mapping.values():
            return None
        pn, gn = p_nodes[p], g_nodes[g]
        if pn.op != gn.op or len(pn.inputs) != len(gn.inputs) or attrs(pn) != attrs(gn):
            return None
        candidates = itertools.permutations(gn.inputs) if OPS[pn.op].commutative else [gn.inputs]
        for g_inputs in candidates:
            trial: dict[str, str] | None = {**mapping, p: g}
            for pi, gi in zip(pn.inputs, g_inputs, strict=True):
                trial = unify(pi, gi, trial) if trial is not None else None
            if trial is not None:
                return trial
        return None

    mapping: dict[str, str] | None = {}
    for po, go in zip(pattern.outputs, graph.outputs, strict=True):
        mapping = unify(po, go, mapping) if mapping is not None else None
    if mapping is None or len(mapping) != len(pattern.nodes):
        return None
    return mapping
