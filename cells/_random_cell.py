"""Random cells over the mutation op space (:func:`random_cell`), grown node by node.

Example:
    >>> import numpy as np
    >>> from cells import canonical_hash, random_cell
    >>> cell = random_cell(np.random.default_rng(0))
    >>> cell.name == f"random-{canonical_hash(cell)[:8]}"
    True
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
    random_node_spec,
)
from cells._graph import INPUT_X, MAX_NODES, CellGraph, CellGraphError
from cells._hash import canonical_hash, remember_hash
from cells._ops import MAX_STATES

logger = logging.getLogger(__name__)


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
    if not 1 <= max_nodes <= MAX_NODES:
        raise ValueError(f"max_nodes: expected 1 to {MAX_NODES}, got {max_nodes}")
    if num_nodes is not None and not 1 <= num_nodes <= max_nodes:
        raise ValueError(f"num_nodes: must be 1 to max_nodes={max_nodes}, got {num_nodes}")
    k = num_states if num_states is not None else int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
    if num_nodes is None:
        low = min(2 * k + 1, max_nodes)
        num_nodes = int(rng.integers(low, max(low, min(max_nodes, 6 + 4 * k)) + 1))
    size = num_nodes
    for attempt in range(10 * MAX_ATTEMPTS):
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


def _grow(rng: np.random.Generator, num_states: int, size: int) -> Draft:
    """Nodes added one by one; operands favour nodes nobody reads yet, so few get pruned."""
    draft = Draft(num_states, [], [])
    unread_inputs = draft.graph_inputs
    unread: list[str] = []
    for _ in range(size):
        sources = draft.graph_inputs + [n.name for n in draft.nodes]
        name = draft.fresh_name()
        attrs: dict[str, float] = {}
        if not draft.nodes:
            op, inputs = "linear", [INPUT_X, "h_prev_0"]
        else:
            op, inputs, attrs = random_node_spec(rng, sources)
            # Steer the first operand to a node nobody reads yet (or an unread input).
            pool = unread if unread and rng.random() < 0.8 else unread_inputs
            pool = [s for s in pool if op != "linear" or s not in inputs[1:]]
            if pool:
                inputs[0] = choice(rng, pool)
        for s in inputs:
            if s in unread:
                unread.remove(s)
            if s in unread_inputs:
                unread_inputs.remove(s)
        draft.nodes.append(DraftNode(name, op, inputs, attrs))
        unread.append(name)
    last = draft.nodes[-1].name
    rest = [s for s in unread if s != last]
    for i in range(num_states):
        if i == 0:
            draft.outputs.append(last)
        elif rest:
            draft.outputs.append(rest.pop(int(rng.integers(len(rest)))))
        else:
            draft.outputs.append(choice(rng, [n.name for n in draft.nodes]))
    return draft


def _is_useful(cell: CellGraph) -> bool:
    states = [f"h_prev_{i}" for i in range(cell.num_states)]
    live_inputs = {i for n in cell.nodes for i in n.inputs}
    return (
        all(o in cell.node_map for o in cell.outputs)
        and depends_on(cell, cell.outputs[0], INPUT_X)
        and learns(cell)
        and all(any(depends_on(cell, o, s) for s in states) for o in cell.outputs)
        and all(s in live_inputs for s in states)
    )
