"""The mutable cell that mutation and random cells build, the op space they draw from, and
the dependency checks their results must pass.

Both follow Jozefowicz, Zaremba & Sutskever (2015): the paper's activations (squashing ops
favoured, as in the known cells; affine maps 1-x, 0.9x and 1.1x plus shifts), its binary
ops, blends and diagonal (elementwise) weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cells._graph import INPUT_X, CellGraph
from cells._ops import BINARY_OPS

DEFAULT_MAX_NODES = 30
"""Largest graph a mutation or :func:`random_cell` produces; bigger cells train slowly."""

MAX_ATTEMPTS = 100
"""Candidates tried before giving up; a rejected candidate (invalid, unchanged, too big,
cut off from ``x``) is rare, so this bound is only reached for degenerate parents."""

# The activations of the paper's space: (op, attrs, weight). Squashing ops are favoured,
# as in the known cells; affine maps are the paper's 1-x, 0.9x and 1.1x plus shifts.
_UNARY_CHOICES: tuple[tuple[str, dict[str, float], float], ...] = (
    ("tanh", {}, 3.0),
    ("sigmoid", {}, 3.0),
    ("relu", {}, 1.0),
    ("leaky_relu", {}, 0.5),
    ("identity", {}, 0.5),
    ("one_minus", {}, 1.0),
    ("scale", {"alpha": 0.9}, 0.5),
    ("scale", {"alpha": 1.1}, 0.5),
    ("shift", {"beta": 0.5}, 0.25),
    ("shift", {"beta": -0.5}, 0.25),
)

# Op families of a random node (replacement and random cells) and their weights.
_RANDOM_NODE_KINDS: tuple[tuple[str, float], ...] = (
    ("linear", 0.25),
    ("unary", 0.35),
    ("binary", 0.28),
    ("blend", 0.06),
    ("diag", 0.06),
)


@dataclass
class DraftNode:
    """A node of a :class:`Draft` (mutable, unlike :class:`~cells.Node`)."""

    name: str
    op: str
    inputs: list[str]
    attrs: dict[str, float] = field(default_factory=dict)
    tag: str | None = None


@dataclass
class Draft:
    """A mutable copy of a graph; edits need not keep it valid, :meth:`to_graph` checks."""

    num_states: int
    nodes: list[DraftNode]
    outputs: list[str]

    @classmethod
    def of(cls, graph: CellGraph) -> Draft:
        nodes = [DraftNode(n.name, n.op, list(n.inputs), dict(n.attrs), n.tag) for n in graph.nodes]
        return cls(graph.num_states, nodes, list(graph.outputs))

    @property
    def graph_inputs(self) -> list[str]:
        return [INPUT_X, *(f"h_prev_{i}" for i in range(self.num_states))]

    def node(self, name: str) -> DraftNode | None:
        return next((n for n in self.nodes if n.name == name), None)

    def fresh_name(self) -> str:
        taken = {n.name for n in self.nodes}
        k = len(self.nodes)
        while f"n{k}" in taken:
            k += 1
        return f"n{k}"

    def users(self, name: str) -> list[DraftNode]:
        return [n for n in self.nodes if name in n.inputs]

    def sources_for(self, name: str) -> list[str]:
        """Everything ``name`` may read without making a cycle: inputs and non-descendants."""
        below = {name}
        changed = True
        while changed:  # graphs are small; a fixed point over the node list is enough
            changed = False
            for n in self.nodes:
                if n.name not in below and any(i in below for i in n.inputs):
                    below.add(n.name)
                    changed = True
        return self.graph_inputs + [n.name for n in self.nodes if n.name not in below]

    def reroute(self, old: str, new: str) -> None:
        """Make every user of ``old`` (and every output) read ``new`` instead."""
        for user in self.users(old):
            if user.op == "linear" and new in user.inputs:
                # A linear reads each input once: fold the two terms into one.
                user.inputs = [i for i in user.inputs if i != old]
            else:
                user.inputs = [new if i == old else i for i in user.inputs]
        self.outputs = [new if o == old else o for o in self.outputs]

    def to_graph(self, name: str, description: str) -> CellGraph:
        return CellGraph.parse(
            {
                "name": name,
                "description": description,
                "num_states": self.num_states,
                "nodes": [
                    {"name": n.name, "op": n.op, "inputs": n.inputs, "attrs": n.attrs, "tag": n.tag}
                    for n in self.nodes
                ],
                "outputs": self.outputs,
            }
        )


def choice(rng: np.random.Generator, items: list[Any] | tuple[Any, ...]) -> Any:
    return items[int(rng.integers(len(items)))]


def weighted(rng: np.random.Generator, weights: list[float]) -> int:
    """An index drawn with probability proportional to ``weights`` (cheaper than rng.choice)."""
    r = float(rng.random()) * sum(weights)
    for i, w in enumerate(weights):
        r -= w
        if r < 0:
            return i
    return len(weights) - 1


def op_text(op: str, attrs: dict[str, float]) -> str:
    return op + "".join(f"[{k}={v:g}]" for k, v in sorted(attrs.items()))


def random_unary(
    rng: np.random.Generator, unlike: tuple[str, dict[str, float]] | None = None
) -> tuple[str, dict[str, float]]:
    choices = [(op, attrs, w) for op, attrs, w in _UNARY_CHOICES if unlike is None or (op, attrs) != unlike]
    op, attrs, _ = choices[weighted(rng, [w for *_, w in choices])]
    return op, dict(attrs)


def random_inputs(
    rng: np.random.Generator, arity: int, sources: list[str], prefer: list[str], distinct: bool
) -> list[str]:
    """``arity`` operands from ``sources``; a slot mostly keeps ``prefer[slot]`` (so a
    replaced node's inputs are not all cut off and pruned)."""
    chosen: list[str] = []
    for slot in range(arity):
        pool = [s for s in sources if not (distinct and s in chosen)]
        if slot < len(prefer) and prefer[slot] in pool and rng.random() < 0.75:
            chosen.append(prefer[slot])
        else:
            chosen.append(choice(rng, pool))
    return chosen


def random_node_spec(
    rng: np.random.Generator, sources: list[str], prefer: list[str] | None = None
) -> tuple[str, list[str], dict[str, float]]:
    """A random (op, inputs, attrs) over ``sources``, every op of the space possible."""
    prefer = prefer or []
    kind = _RANDOM_NODE_KINDS[weighted(rng, [w for _, w in _RANDOM_NODE_KINDS])][0]
    if kind == "linear":
        arity = min(len(sources), 1 + int(rng.random() < 0.6))
        return "linear", random_inputs(rng, arity, sources, prefer, distinct=True), {}
    if kind == "unary":
        op, attrs = random_unary(rng)
        return op, random_inputs(rng, 1, sources, prefer, distinct=False), attrs
    if kind == "binary":
        return choice(rng, BINARY_OPS), random_inputs(rng, 2, sources, prefer, distinct=False), {}
    if kind == "blend":
        return "blend", random_inputs(rng, 3, sources, prefer, distinct=False), {}
    return "diag", random_inputs(rng, 1, sources, prefer, distinct=False), {}


def ancestors(graph: CellGraph, name: str) -> set[str]:
    """The nodes ``name`` depends on, itself included (graph inputs excluded)."""
    stack, seen = [name], set()
    while stack:
        n = stack.pop()
        node = graph.node_map.get(n)
        if node is not None and n not in seen:
            seen.add(n)
            stack.extend(node.inputs)
    return seen


def depends_on(graph: CellGraph, output: str, source: str) -> bool:
    return output == source or any(source in graph.node_map[n].inputs for n in ancestors(graph, output))


def recurrent(cell: CellGraph) -> bool:
    """Whether ``h_new_0`` reads some previous state (else the cell is a feed-forward net)."""
    return any(depends_on(cell, cell.outputs[0], s) for s in cell.input_names[1:])


def learns(cell: CellGraph) -> bool:
    """Whether ``h_new_0`` depends on a parameter: a cell without one cannot be trained."""
    return any(cell.node_map[n].op in ("linear", "diag") for n in ancestors(cell, cell.outputs[0]))
