"""A plain per-node reference implementation of a cell layer.

Slow (one Python op per node per step, in the manner of NAS-Bench-NLP) but obviously
correct: tests compare the fast compiled layer against it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from cells._graph import INPUT_X, CellGraph


def apply_op(op: str, attrs: dict[str, float], args: list[Tensor]) -> Tensor:
    """Elementwise semantics of every parameter-free op."""
    if op == "add":
        out = args[0]
        for a in args[1:]:
            out = out + a
        return out
    if op == "mul":
        out = args[0]
        for a in args[1:]:
            out = out * a
        return out
    if op == "sub":
        return args[0] - args[1]
    if op == "blend":
        z, a, b = args
        return z * a + (1 - z) * b
    if op == "tanh":
        return torch.tanh(args[0])
    if op == "sigmoid":
        return torch.sigmoid(args[0])
    if op == "relu":
        return torch.relu(args[0])
    if op == "leaky_relu":
        return nn.functional.leaky_relu(args[0], attrs.get("negative_slope", 0.01))
    if op == "identity":
        return args[0]
    if op == "one_minus":
        return 1 - args[0]
    if op == "scale":
        return args[0] * attrs.get("alpha", 1.0)
    if op == "shift":
        return args[0] + attrs.get("beta", 0.0)
    raise ValueError(f"op {op!r} has parameters or is unknown")


class ReferenceCell(nn.Module):
    """One layer's cell, node by node. Parameters: ``{node}.weight.{input}``, ``{node}.bias``,
    ``{node}.diag`` (dots replaced by ``__`` in the module's own names)."""

    def __init__(self, graph: CellGraph, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.graph = graph
        self.hidden_size = hidden_size
        self.params = nn.ParameterDict()
        bound = 1 / math.sqrt(hidden_size)
        for node in graph.nodes:
            if node.op == "linear":
                for src in node.inputs:
                    fan_in = input_size if src == INPUT_X else hidden_size
                    w = torch.empty(hidden_size, fan_in).uniform_(-bound, bound)
                    self.params[f"{node.name}__weight__{src}"] = nn.Parameter(w)
                b = torch.empty(hidden_size).uniform_(-bound, bound)
                if node.attrs.get("bias_init") is not None:
                    b.fill_(node.attrs["bias_init"])
                self.params[f"{node.name}__bias"] = nn.Parameter(b)
            elif node.op == "diag":
                d = torch.empty(hidden_size).uniform_(-bound, bound)
                self.params[f"{node.name}__diag"] = nn.Parameter(d)

    def node_parameters(self) -> dict[str, Tensor]:
        return {k.replace("__", "."): v for k, v in self.params.items()}

    def forward(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        values: dict[str, Tensor] = {INPUT_X: x}
        for i, s in enumerate(state):
            values[f"h_prev_{i}"] = s
        for node in self.graph.nodes:
            if node.op == "linear":
                out = self.params[f"{node.name}__bias"]
                for src in node.inputs:
                    out = out + values[src] @ self.params[f"{node.name}__weight__{src}"].t()
            elif node.op == "diag":
                out = values[node.inputs[0]] * self.params[f"{node.name}__diag"]
            else:
                out = apply_op(node.op, node.attrs, [values[i] for i in node.inputs])
            values[node.name] = out
        return tuple(values[o] for o in self.graph.outputs)


class ReferenceLayer(nn.Module):
    """Multi-layer recurrent layer with torch.nn.LSTM's calling convention, per-node and slow."""

    def __init__(
        self, graph: CellGraph, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.graph = graph
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        self.cells = nn.ModuleList(
            ReferenceCell(graph, input_size if i == 0 else hidden_size, hidden_size)
            for i in range(num_layers)
        )

    def node_parameters(self, layer: int) -> dict[str, Tensor]:
        return self.cells[layer].node_parameters()  # type: ignore[operator]

    def forward(
        self, x: Tensor, state: tuple[Tensor, ...] | None = None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        k = self.graph.num_states
        if state is None:
            zeros = x.new_zeros(self.num_layers, x.shape[1], self.hidden_size)
            state = tuple(zeros for _ in range(k))
        finals: list[tuple[Tensor, ...]] = []
        inp = x
        for layer, cell in enumerate(self.cells):
            s = tuple(st[layer] for st in state)
            outs = []
            for t in range(inp.shape[0]):
                s = cell(inp[t], s)
                outs.append(s[0])
            inp = torch.stack(outs)
            finals.append(s)
            if layer < self.num_layers - 1 and self.dropout > 0:
                inp = nn.functional.dropout(inp, self.dropout, self.training)
        return inp, tuple(torch.stack([f[i] for f in finals]) for i in range(k))
