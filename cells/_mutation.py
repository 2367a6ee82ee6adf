"""Mutation and random cells, in the manner of Jozefowicz, Zaremba & Sutskever (2015).

A mutation draws a probability ``p`` and edits each node with probability ``p``: the node
is replaced by a random node, its activation or elementwise op is swapped, one of its
inputs is rewired, a node is inserted before or after it, it is removed (its users read
one of its inputs instead), or a linear term is added or dropped. Every result is a valid
:class:`~cells.CellGraph` with the parent's number of states, a different canonical hash
and at most ``max_nodes`` nodes; the edit is returned in words for the search's lineage.

Example:
    >>> import numpy as np
    >>> from cells import canonical_hash, library, mutate
    >>> parent = library.get("gru")
    >>> child, what = mutate(parent, np.random.default_rng(0))
    >>> canonical_hash(child) != canonical_hash(parent), child.num_states
    (True, 1)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cells._graph import INPUT_X, CellGraph, CellGraphError
from cells._hash import canonical_hash, remember_hash
from cells._ops import BINARY_OPS, MAX_STATES, OPS

logger = logging.getLogger(__name__)

DEFAULT_MAX_NODES = 30
"""Largest graph a mutation or :func:`random_cell` produces; bigger cells train slowly."""

_MAX_ATTEMPTS = 100
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
class _Node:
    name: str
    op: str
    inputs: list[str]
    attrs: dict[str, float] = field(default_factory=dict)
    tag: str | None = None


@dataclass
class _Draft:
    """A mutable copy of a graph; edits need not keep it valid, :meth:`to_graph` checks."""

    num_states: int
    nodes: list[_Node]
    outputs: list[str]

    @classmethod
    def of(cls, graph: CellGraph) -> _Draft:
        nodes = [_Node(n.name, n.op, list(n.inputs), dict(n.attrs), n.tag) for n in graph.nodes]
        return cls(graph.num_states, nodes, list(graph.outputs))

    @property
    def graph_inputs(self) -> list[str]:
        return [INPUT_X, *(f"h_prev_{i}" for i in range(self.num_states))]

    def node(self, name: str) -> _Node | None:
        return next((n for n in self.nodes if n.name == name), None)

    def fresh_name(self) -> str:
        taken = {n.name for n in self.nodes}
        k = len(self.nodes)
        while f"n{k}" in taken:
            k += 1
        return f"n{k}"

    def users(self, name: str) -> list[_Node]:
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


def _choice(rng: np.random.Generator, items: list[Any] | tuple[Any, ...]) -> Any:
    return items[int(rng.integers(len(items)))]


def _weighted(rng: np.random.Generator, weights: list[float]) -> int:
    """An index drawn with probability proportional to ``weights`` (cheaper than rng.choice)."""
    r = float(rng.random()) * sum(weights)
    for i, w in enumerate(weights):
        r -= w
        if r < 0:
            return i
    return len(weights) - 1


def _op_text(op: str, attrs: dict[str, float]) -> str:
    return op + "".join(f"[{k}={v:g}]" for k, v in sorted(attrs.items()))


def _random_unary(
    rng: np.random.Generator, unlike: tuple[str, dict[str, float]] | None = None
) -> tuple[str, dict[str, float]]:
    choices = [(op, attrs, w) for op, attrs, w in _UNARY_CHOICES if unlike is None or (op, attrs) != unlike]
    op, attrs, _ = choices[_weighted(rng, [w for *_, w in choices])]
    return op, dict(attrs)


def _random_inputs(
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
            chosen.append(_choice(rng, pool))
    return chosen


def _random_node_spec(
    rng: np.random.Generator, sources: list[str], prefer: list[str] | None = None
) -> tuple[str, list[str], dict[str, float]]:
    """A random (op, inputs, attrs) over ``sources``, every op of the space possible."""
    prefer = prefer or []
    kind = _RANDOM_NODE_KINDS[_weighted(rng, [w for _, w in _RANDOM_NODE_KINDS])][0]
    if kind == "linear":
        arity = min(len(sources), 1 + int(rng.random() < 0.6))
        return "linear", _random_inputs(rng, arity, sources, prefer, distinct=True), {}
    if kind == "unary":
        op, attrs = _random_unary(rng)
        return op, _random_inputs(rng, 1, sources, prefer, distinct=False), attrs
    if kind == "binary":
        return _choice(rng, BINARY_OPS), _random_inputs(rng, 2, sources, prefer, distinct=False), {}
    if kind == "blend":
        return "blend", _random_inputs(rng, 3, sources, prefer, distinct=False), {}
    return "diag", _random_inputs(rng, 1, sources, prefer, distinct=False), {}


# --- Per-node edits. Each returns a description, or None when it does not apply. ---------


def _replace(draft: _Draft, node: _Node, rng: np.random.Generator, room: bool) -> str | None:
    old = _op_text(node.op, node.attrs)
    op, inputs, attrs = _random_node_spec(rng, draft.sources_for(node.name), prefer=node.inputs)
    node.op, node.inputs, node.attrs = op, inputs, attrs
    if op != "linear":
        node.tag = None  # a role such as forget_gate belongs to the linear that held it
    return f"replaced node {node.name!r} ({old}) by {_op_text(op, attrs)}({', '.join(inputs)})"


def _swap_activation(draft: _Draft, node: _Node, rng: np.random.Generator, room: bool) -> str | None:
    if not OPS[node.op].unary:
        return None
    old = _op_text(node.op, node.attrs)
    node.op, node.attrs = _random_unary(rng, unlike=(node.op, node.attrs))
    return f"replaced node {node.name!r} ({old}) by {_op_text(node.op, node.attrs)}"


def _swap_binary(draft: _Draft, node: _Node, rng: np.random.Generator, room: bool) -> str | None:
    if node.op not in BINARY_OPS:
        return None
    options = [op for op in BINARY_OPS if op != node.op and (op != "sub" or len(node.inputs) == 2)]
    if not options:
        return None
    old, node.op = node.op, _choice(rng, options)
    return f"replaced node {node.name!r} ({old}) by {node.op}"


def _rewire(draft: _Draft, node: _Node, rng: np.random.Generator, room: bool) -> str | None:
    # Mostly rewire an operand that stays in use elsewhere: cutting a node's only reader
    # prunes its whole subtree, and chains of such edits shrink cells to nothing.
    kept = [i for i, s in enumerate(node.inputs) if draft.node(s) is None or len(draft.users(s)) > 1]
    slot = _choice(rng, kept) if kept and rng.random() < 0.7 else int(rng.integers(len(node.inputs)))
    banned = set(node.inputs) if node.op == "linear" else {node.inputs[slot]}
    options = [s for s in draft.sources_for(node.name) if s not in banned]
    if not options:
        return None
    old, node.inputs[slot] = node.inputs[slot], _choice(rng, options)
    return f"rewired {node.name!r} input {slot + 1} from {old!r} to {node.inputs[slot]!r}"


def _insert_before(draft: _Draft, node: _Node, rng: np.random.Generator, room: bool) -> str | None:
    """A new node between ``node`` and one of its inputs: an activation, a binary op
    combining the input with another source, or a linear map."""
    if not room:
        return None
    slot = int(rng.integers(len(node.inputs)))
    old = node.inputs[slot]
    new = _Node(draft.fresh_name(), "identity", [old])
    kind = rng.random()
    if kind < 0.5:
        new.op, new.attrs = _random_unary(rng)
    elif kind < 0.85:
        other = _choice(rng, [s for s in draft.sources_for(node.name) if s != old])
        new.op = _choice(rng, BINARY_OPS)
        new.inputs = [old, other] if rng.random() < 0.5 else [other, old]
    else:
        new.op = "linear"
        if node.op == "linear" and old == INPUT_X:
            return None  # linear(linear(x)) adds weights but no expressiveness
    draft.nodes.append(new)
    node.inputs[slot] = new.name
    what = f"{_op_text(new.op, new.attrs)}({', '.join(new.inputs)})"
    return f"inserted node {new.name!r} = {what} as {node.name!r} input {slot + 1}"


def _insert_after(draft: _Draft, node: _Node, rng: np.random.Generator, room: bool) -> str | None:
    """A new activation on ``node``'s output, read by all of ``node``'s users."""
    if not room:
        return None
    op, attrs = _random_unary(rng)
    new = _Node(draft.fresh_name(), op, [node.name], attrs)
    draft.reroute(node.name, new.name)
    draft.nodes.append(new)
    return f"inserted node {new.name!r} = {_op_text(op, attrs)}({node.name}) after {node.name!r}"


def _remove(draft: _Draft, node: _Node, rng: np.random.Generator, room: bool) -> str | None:
    if len(node.inputs) > 1 and rng.random() < 0.75:
        return None  # removing a node with several operands prunes the others' subtrees too
    keep = _choice(rng, node.inputs)
    draft.nodes.remove(node)
    draft.reroute(node.name, keep)
    return f"removed node {node.name!r} ({_op_text(node.op, node.attrs)}), its users now read {keep!r}"


def _add_term(draft: _Draft, node: _Node, rng: np.random.Generator, room: bool) -> str | None:
    if node.op != "linear":
        return None
    options = [s for s in draft.sources_for(node.name) if s not in node.inputs]
    if not options:
        return None
    term = _choice(rng, options)
    node.inputs.append(term)
    return f"added term {term!r} to linear {node.name!r}"


def _drop_term(draft: _Draft, node: _Node, rng: np.random.Generator, room: bool) -> str | None:
    if node.op != "linear" or len(node.inputs) < 2:
        return None
    term = node.inputs.pop(int(rng.integers(len(node.inputs))))
    return f"dropped term {term!r} from linear {node.name!r}"


# (edit, weight). Removal is weighted like the two insertions together so that sizes drift
# neither up nor down much over long mutation chains.
_EDITS = (
    (_replace, 1.0),
    (_swap_activation, 2.0),
    (_swap_binary, 2.0),
    (_rewire, 1.5),
    (_insert_before, 2.5),
    (_insert_after, 1.0),
    (_remove, 1.5),
    (_add_term, 1.0),
    (_drop_term, 1.0),
)


def _edit_node(draft: _Draft, name: str, rng: np.random.Generator, max_nodes: int) -> str | None:
    node = draft.node(name)
    if node is None:  # removed by an earlier edit of this mutation
        return None
    edits = list(_EDITS)
    while edits:
        i = _weighted(rng, [w for _, w in edits])
        edit, _ = edits.pop(i)
        what = edit(draft, node, rng, len(draft.nodes) < max_nodes)
        if what is not None:
            return what
    return None


def _ancestors(graph: CellGraph, name: str) -> set[str]:
    """The nodes ``name`` depends on, itself included (graph inputs excluded)."""
    stack, seen = [name], set()
    while stack:
        n = stack.pop()
        node = graph.node_map.get(n)
        if node is not None and n not in seen:
            seen.add(n)
            stack.extend(node.inputs)
    return seen


def _depends_on(graph: CellGraph, output: str, source: str) -> bool:
    return output == source or any(source in graph.node_map[n].inputs for n in _ancestors(graph, output))


def mutate(
    graph: CellGraph, rng: np.random.Generator, p: float | None = None, max_nodes: int = DEFAULT_MAX_NODES
) -> tuple[CellGraph, str]:
    """A random variant of ``graph`` and what was done, in words.

    Each node is edited with probability ``p`` (drawn uniformly from [0, 1] per mutation
    when ``None``, as in the paper); at least one node is always edited. The child keeps
    ``num_states``, has a different :func:`~cells.canonical_hash`, at most ``max_nodes``
    nodes (or the parent's count, if larger), ``h_new_0`` is a node, depends on a learnable
    node (``linear`` or ``diag``), and still reads ``x`` and some previous state where the
    parent's did. Edits are joined by ``"; "``; each names the node it touched. New
    nodes are named ``n<k>``. Deterministic for a given ``rng`` state.

    Example:
        >>> import numpy as np
        >>> from cells import library, mutate
        >>> child, what = mutate(library.get("lstm"), np.random.default_rng(1), p=0.0)
        >>> child.num_states, what.count(";")  # p=0: exactly one edit
        (2, 0)
    """
    if p is not None and not 0.0 <= p <= 1.0:
        raise ValueError(f"p: must lie in [0, 1], got {p}")
    if max_nodes < 1:
        raise ValueError(f"max_nodes: must be at least 1, got {max_nodes}")
    parent_hash = canonical_hash(graph)
    max_nodes = max(max_nodes, len(graph.nodes))  # a big parent may still be edited
    needs_x = _depends_on(graph, graph.outputs[0], INPUT_X)
    needs_state = _recurrent(graph)
    for attempt in range(_MAX_ATTEMPTS):
        draft = _Draft.of(graph)
        p_now = float(rng.random()) if p is None else p
        names = [n.name for n in draft.nodes]
        picked = [name for name in names if rng.random() < p_now]
        if not picked and names:
            picked = [_choice(rng, names)]
        edits = [what for name in picked if (what := _edit_node(draft, name, rng, max_nodes)) is not None]
        if not names:  # a graph of bare inputs: give one output a node to start from
            edits.append(_insert_after_output(draft, rng))
        if not edits:
            continue
        description = "; ".join(edits)
        try:
            child = draft.to_graph("mutant", f"mutant of {graph.name}: {description}")
        except CellGraphError as exc:
            logger.debug("mutation attempt %d invalid (%s): %s", attempt, exc, description)
            continue
        reason = _reject_reason(child, needs_x, needs_state, max_nodes)
        child_hash = canonical_hash(child) if reason is None else ""
        if child_hash == parent_hash:
            reason = "same cell as the parent"
        if reason is not None:
            logger.debug("mutation attempt %d rejected (%s): %s", attempt, reason, description)
            continue
        named = child.with_name(f"mutant-{child_hash[:8]}")
        remember_hash(named, child_hash)  # the next mutation in a chain asks for it
        return named, description
    raise RuntimeError(f"could not mutate cell {graph.name!r} in {_MAX_ATTEMPTS} attempts")


def _insert_after_output(draft: _Draft, rng: np.random.Generator) -> str:
    i = int(rng.integers(draft.num_states))
    op, inputs, attrs = _random_node_spec(rng, draft.graph_inputs, prefer=[draft.outputs[i]])
    new = _Node(draft.fresh_name(), op, inputs, attrs)
    draft.nodes.append(new)
    draft.outputs[i] = new.name
    return f"inserted node {new.name!r} = {_op_text(op, attrs)}({', '.join(inputs)}) as output h_new_{i}"


def _reject_reason(child: CellGraph, needs_x: bool, needs_state: bool, max_nodes: int) -> str | None:
    """Why ``child`` is no good, checked before the (dearer) hash; None if it is fine."""
    if len(child.nodes) > max_nodes:
        return f"{len(child.nodes)} nodes > max_nodes={max_nodes}"
    if child.outputs[0] not in child.node_map:
        return "h_new_0 is a bare input"
    if needs_x and not _depends_on(child, child.outputs[0], INPUT_X):
        return "h_new_0 no longer depends on x"
    if needs_state and not _recurrent(child):
        return "h_new_0 no longer depends on any previous state"
    if not _learns(child):
        return "no learnable node (linear or diag) left"
    return None


def random_cell(
    rng: np.random.Generator,
    num_states: int | None = None,
    num_nodes: int | None = None,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> CellGraph:
    """A random valid cell over the mutation op space.

    ``h_new_0`` depends on ``x`` and every output on some previous state (the cell is
    recurrent), and every previous state is read. ``num_states`` defaults to a random 1-3
    (1 most often); ``num_nodes`` to a random size that grows with ``num_states``. The cell
    has exactly ``num_nodes`` nodes when given. Deterministic for a given ``rng`` state.

    Example:
        >>> import numpy as np
        >>> from cells import random_cell
        >>> cell = random_cell(np.random.default_rng(0), num_states=2, num_nodes=8)
        >>> cell.num_states, len(cell.nodes), cell.name.startswith("random-")
        (2, 8, True)
    """
    if num_states is not None and not 1 <= num_states <= MAX_STATES:
        raise ValueError(f"num_states: must be 1 to {MAX_STATES}, got {num_states}")
    if num_nodes is not None and not 1 <= num_nodes <= max_nodes:
        raise ValueError(f"num_nodes: must be 1 to max_nodes={max_nodes}, got {num_nodes}")
    k = num_states if num_states is not None else int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
    if num_nodes is None:
        low = min(2 * k + 1, max_nodes)
        num_nodes = int(rng.integers(low, max(low, min(max_nodes, 6 + 4 * k)) + 1))
    size = num_nodes
    for attempt in range(10 * _MAX_ATTEMPTS):
        draft = _grow(rng, k, size)
        try:
            cell = draft.to_graph("random", f"random cell: {k} state(s), {size} nodes")
        except CellGraphError as exc:  # cannot happen by construction; kept as a guard
            logger.debug("random cell attempt %d invalid: %s", attempt, exc)
            continue
        if len(cell.nodes) != size or not _is_useful(cell):
            continue
        digest = canonical_hash(cell)
        named = cell.with_name(f"random-{digest[:8]}")
        remember_hash(named, digest)
        return named
    raise RuntimeError(f"no random cell with {k} state(s) and {size} nodes found; try more nodes")


def _grow(rng: np.random.Generator, num_states: int, size: int) -> _Draft:
    """Nodes added one by one; operands favour nodes nobody reads yet, so few get pruned."""
    draft = _Draft(num_states, [], [])
    unread_inputs = draft.graph_inputs
    unread: list[str] = []
    for _ in range(size):
        sources = draft.graph_inputs + [n.name for n in draft.nodes]
        name = draft.fresh_name()
        attrs: dict[str, float] = {}
        if not draft.nodes:
            op, inputs = "linear", [INPUT_X, "h_prev_0"]
        else:
            op, inputs, attrs = _random_node_spec(rng, sources)
            # Steer the first operand to a node nobody reads yet (or an unread input).
            pool = unread if unread and rng.random() < 0.8 else unread_inputs
            pool = [s for s in pool if op != "linear" or s not in inputs[1:]]
            if pool:
                inputs[0] = _choice(rng, pool)
        for s in inputs:
            if s in unread:
                unread.remove(s)
            if s in unread_inputs:
                unread_inputs.remove(s)
        draft.nodes.append(_Node(name, op, inputs, attrs))
        unread.append(name)
    last = draft.nodes[-1].name
    rest = [s for s in unread if s != last]
    for i in range(num_states):
        if i == 0:
            draft.outputs.append(last)
        elif rest:
            draft.outputs.append(rest.pop(int(rng.integers(len(rest)))))
        else:
            draft.outputs.append(_choice(rng, [n.name for n in draft.nodes]))
    return draft


def _recurrent(cell: CellGraph) -> bool:
    """Whether ``h_new_0`` reads some previous state (else the cell is a feed-forward net)."""
    return any(_depends_on(cell, cell.outputs[0], s) for s in cell.input_names[1:])


def _learns(cell: CellGraph) -> bool:
    """Whether ``h_new_0`` depends on a parameter: a cell without one cannot be trained."""
    return any(cell.node_map[n].op in ("linear", "diag") for n in _ancestors(cell, cell.outputs[0]))


def _is_useful(cell: CellGraph) -> bool:
    states = [f"h_prev_{i}" for i in range(cell.num_states)]
    live_inputs = {i for n in cell.nodes for i in n.inputs}
    return (
        all(o in cell.node_map for o in cell.outputs)
        and _depends_on(cell, cell.outputs[0], INPUT_X)
        and _learns(cell)
        and all(any(_depends_on(cell, o, s) for s in states) for o in cell.outputs)
        and all(s in live_inputs for s in states)
    )
