"""Mutation of cells, in the manner of Jozefowicz, Zaremba & Sutskever (2015).

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

import numpy as np

from cells._cell_draft import (
    DEFAULT_MAX_NODES,
    MAX_ATTEMPTS,
    Draft,
    DraftNode,
    choice,
    depends_on,
    learns,
    op_text,
    random_node_spec,
    random_unary,
    recurrent,
    weighted,
)
from cells._graph import INPUT_X, MAX_NODES, CellGraph, CellGraphError
from cells._hash import canonical_hash, remember_hash
from cells._ops import BINARY_OPS, OPS

logger = logging.getLogger(__name__)


# --- Per-node edits. Each returns a description, or None when it does not apply. ---------


def _replace(draft: Draft, node: DraftNode, rng: np.random.Generator, room: bool) -> str | None:
    old = op_text(node.op, node.attrs)
    op, inputs, attrs = random_node_spec(rng, draft.sources_for(node.name), prefer=node.inputs)
    node.op, node.inputs, node.attrs = op, inputs, attrs
    if op != "linear":
        node.tag = None  # a role such as forget_gate belongs to the linear that held it
    return f"replaced node {node.name!r} ({old}) by {op_text(op, attrs)}({', '.join(inputs)})"


def _swap_activation(draft: Draft, node: DraftNode, rng: np.random.Generator, room: bool) -> str | None:
    if not OPS[node.op].unary:
        return None
    old = op_text(node.op, node.attrs)
    node.op, node.attrs = random_unary(rng, unlike=(node.op, node.attrs))
    return f"replaced node {node.name!r} ({old}) by {op_text(node.op, node.attrs)}"


def _swap_binary(draft: Draft, node: DraftNode, rng: np.random.Generator, room: bool) -> str | None:
    if node.op not in BINARY_OPS:
        return None
    options = [op for op in BINARY_OPS if op != node.op and (op != "sub" or len(node.inputs) == 2)]
    if not options:
        return None
    old, node.op = node.op, choice(rng, options)
    return f"replaced node {node.name!r} ({old}) by {node.op}"


def _rewire(draft: Draft, node: DraftNode, rng: np.random.Generator, room: bool) -> str | None:
    # Mostly rewire an operand that stays in use elsewhere: cutting a node's only reader
    # prunes its whole subtree, and chains of such edits shrink cells to nothing.
    kept = [i for i, s in enumerate(node.inputs) if draft.node(s) is None or len(draft.users(s)) > 1]
    slot = choice(rng, kept) if kept and rng.random() < 0.7 else int(rng.integers(len(node.inputs)))
    banned = set(node.inputs) if node.op == "linear" else {node.inputs[slot]}
    options = [s for s in draft.sources_for(node.name) if s not in banned]
    if not options:
        return None
    old, node.inputs[slot] = node.inputs[slot], choice(rng, options)
    return f"rewired {node.name!r} input {slot + 1} from {old!r} to {node.inputs[slot]!r}"


def _insert_before(draft: Draft, node: DraftNode, rng: np.random.Generator, room: bool) -> str | None:
    """A new node between ``node`` and one of its inputs: an activation, a binary op
    combining the input with another source, or a linear map."""
    if not room:
        return None
    slot = int(rng.integers(len(node.inputs)))
    old = node.inputs[slot]
    new = DraftNode(draft.fresh_name(), "identity", [old])
    kind = rng.random()
    if kind < 0.5:
        new.op, new.attrs = random_unary(rng)
    elif kind < 0.85:
        other = choice(rng, [s for s in draft.sources_for(node.name) if s != old])
        new.op = choice(rng, BINARY_OPS)
        new.inputs = [old, other] if rng.random() < 0.5 else [other, old]
    else:
        new.op = "linear"
        if node.op == "linear" and old == INPUT_X:
            return None  # linear(linear(x)) adds weights but no expressiveness
    draft.nodes.append(new)
    node.inputs[slot] = new.name
    what = f"{op_text(new.op, new.attrs)}({', '.join(new.inputs)})"
    return f"inserted node {new.name!r} = {what} as {node.name!r} input {slot + 1}"


def _insert_after(draft: Draft, node: DraftNode, rng: np.random.Generator, room: bool) -> str | None:
    """A new activation on ``node``'s output, read by all of ``node``'s users."""
    if not room:
        return None
    op, attrs = random_unary(rng)
    new = DraftNode(draft.fresh_name(), op, [node.name], attrs)
    draft.reroute(node.name, new.name)
    draft.nodes.append(new)
    return f"inserted node {new.name!r} = {op_text(op, attrs)}({node.name}) after {node.name!r}"


def _remove(draft: Draft, node: DraftNode, rng: np.random.Generator, room: bool) -> str | None:
    if len(node.inputs) > 1 and rng.random() < 0.75:
        return None  # removing a node with several operands prunes the others' subtrees too
    keep = choice(rng, node.inputs)
    draft.nodes.remove(node)
    draft.reroute(node.name, keep)
    return f"removed node {node.name!r} ({op_text(node.op, node.attrs)}), its users now read {keep!r}"


def _add_term(draft: Draft, node: DraftNode, rng: np.random.Generator, room: bool) -> str | None:
    if node.op != "linear":
        return None
    options = [s for s in draft.sources_for(node.name) if s not in node.inputs]
    if not options:
        return None
    term = choice(rng, options)
    node.inputs.append(term)
    return f"added term {term!r} to linear {node.name!r}"


def _drop_term(draft: Draft, node: DraftNode, rng: np.random.Generator, room: bool) -> str | None:
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


def _edit_node(draft: Draft, name: str, rng: np.random.Generator, max_nodes: int) -> str | None:
    node = draft.node(name)
    if node is None:  # removed by an earlier edit of this mutation
        return None
    edits = list(_EDITS)
    while edits:
        i = weighted(rng, [w for _, w in edits])
        edit, _ = edits.pop(i)
        what = edit(draft, node, rng, len(draft.nodes) < max_nodes)
        if what is not None:
            return what
    return None


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
    if not 1 <= max_nodes <= MAX_NODES:
        raise ValueError(f"max_nodes: expected 1 to {MAX_NODES}, got {max_nodes}")
    parent_hash = canonical_hash(graph)
    # A big parent may still be edited, but no child grows past the graph limit.
    max_nodes = min(max(max_nodes, len(graph.nodes)), MAX_NODES)
    needs_x = depends_on(graph, graph.outputs[0], INPUT_X)
    needs_state = recurrent(graph)
    for attempt in range(MAX_ATTEMPTS):
        draft = Draft.of(graph)
        p_now = float(rng.random()) if p is None else p
        names = [n.name for n in draft.nodes]
        picked = [name for name in names if rng.random() < p_now]
        if not picked and names:
            picked = [choice(rng, names)]
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
    raise RuntimeError(f"could not mutate cell {graph.name!r} in {MAX_ATTEMPTS} attempts")


def _insert_after_output(draft: Draft, rng: np.random.Generator) -> str:
    i = int(rng.integers(draft.num_states))
    op, inputs, attrs = random_node_spec(rng, draft.graph_inputs, prefer=[draft.outputs[i]])
    new = DraftNode(draft.fresh_name(), op, inputs, attrs)
    draft.nodes.append(new)
    draft.outputs[i] = new.name
    return f"inserted node {new.name!r} = {op_text(op, attrs)}({', '.join(inputs)}) as output h_new_{i}"


def _reject_reason(child: CellGraph, needs_x: bool, needs_state: bool, max_nodes: int) -> str | None:
    """Why ``child`` is no good, checked before the (dearer) hash; None if it is fine."""
    if len(child.nodes) > max_nodes:
        return f"{len(child.nodes)} nodes > max_nodes={max_nodes}"
    if child.outputs[0] not in child.node_map:
        return "h_new_0 is a bare input"
    if needs_x and not depends_on(child, child.outputs[0], INPUT_X):
        return "h_new_0 no longer depends on x"
    if needs_state and not recurrent(child):
        return "h_new_0 no longer depends on any previous state"
    if not learns(child):
        return "no learnable node (linear or diag) left"
    return None
