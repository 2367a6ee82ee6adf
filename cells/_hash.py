"""Canonical form and hash: equal for graphs that differ only in node names, node order or
the operand order of commutative ops, different otherwise."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from cells._graph import CellGraph, Node
from cells._ops import OPS

_MIN_REFINE_ROUNDS = 1
_MEMO_SIZE = 256

# Graphs are immutable, so a hash can be remembered per object: searches and mutation
# chains ask for the same graph's hash several times. Keyed by id(), holding the graph so
# that the id cannot be reused while the entry lives.
_memo: OrderedDict[int, tuple[CellGraph, str]] = OrderedDict()


def _h(*parts: object) -> str:
    # repr of nested tuples, lists, sorted dicts, strings and floats is deterministic and
    # several times cheaper than a sorted JSON dump; labels only need to be content-derived.
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


def _attrs(node: Node) -> dict[str, float]:
    spec = OPS[node.op]
    # Attributes equal to their default are dropped so {"alpha": 1.0} and {} agree.
    return {k: float(v) for k, v in sorted(node.attrs.items()) if spec.attrs[k].default != v}


def _labels(graph: CellGraph) -> dict[str, str]:
    """Structural labels: a Merkle hash bottom-up, then refined by how each node is used.

    The bottom-up hash alone cannot tell one shared node from two identical ones (the
    i, f and o gates of an LSTM are all ``sigmoid(linear(x, h))``), so labels are
    refined with the multiset of (parent label, operand position) around each node.
    Each round carries information one level down from the outputs, so refinement runs
    until the partition of nodes into labels stops getting finer: a fixed number of
    rounds leaves deep graphs with ties between non-equivalent operands of a commutative
    op, and the hash then depends on operand order.
    """
    nodes = graph.nodes  # topological order
    commutative = [OPS[n.op].commutative for n in nodes]

    def propagate(label: dict[str, str], seed: dict[str, str]) -> None:
        for node, comm in zip(nodes, commutative, strict=True):
            kids = [label[i] for i in node.inputs]
            if comm:
                kids.sort()
            label[node.name] = _h(seed[node.name], kids)

    label: dict[str, str] = {name: name for name in graph.input_names}
    propagate(label, {n.name: _h(n.op, _attrs(n)) for n in nodes})
    for i, out in enumerate(graph.outputs):
        label[out] = _h(label[out], "out", i)

    distinct = len(set(label.values()))
    for round_ in range(len(nodes) + _MIN_REFINE_ROUNDS):
        uses: dict[str, list[tuple[str, int]]] = {n: [] for n in label}
        for node, comm in zip(nodes, commutative, strict=True):
            for pos, child in enumerate(node.inputs):
                uses[child].append((label[node.name], -1 if comm else pos))
        label = {name: _h(label[name], sorted(uses[name])) for name in label}
        # Re-propagate bottom-up so parents see their children's refined labels.
        propagate(label, dict(label))
        finer = len(set(label.values()))
        if round_ + 1 >= _MIN_REFINE_ROUNDS and finer == distinct:
            break
        distinct = finer
    return label


def canonical_form(graph: CellGraph) -> str:
    """A name-free serialization of the graph; two graphs share it iff they are the same cell.

    Nodes are numbered in the order a depth-first walk from the outputs first meets them,
    visiting commutative operands in label order.

    Example:
        >>> from cells import library
        >>> canonical_form(library.get("tanh"))
        '1=tanh(0);0=linear(h_prev_0,x);out=1'
    """
    label = _labels(graph)
    ids: dict[str, str] = {name: name for name in graph.input_names}
    lines: list[str] = []
    outs = [_number_from(out, graph, label, ids, lines) for out in graph.outputs]
    return ";".join(reversed(lines)) + ";out=" + ",".join(outs)


def _number_from(
    root: str, graph: CellGraph, label: dict[str, str], ids: dict[str, str], lines: list[str]
) -> str:
    """Number the nodes below ``root`` in depth-first post-order, appending their lines.

    The walk uses an explicit stack, not recursion, so that a chain as deep as
    :data:`~cells.MAX_NODES` is numbered like a shallow graph (in the same order as the
    recursive walk it replaced: the hashes in the results database must not change).
    """
    if root in ids:
        return ids[root]
    # Frames: (node name, its inputs in visiting order, index of the next one to visit).
    stack: list[tuple[str, list[str], int]] = [(root, _visit_order(graph.node_map[root], label), 0)]
    ids[root] = "?"  # placeholder while on the stack; the graph is acyclic
    while stack:
        name, inputs, i = stack[-1]
        if i < len(inputs):
            stack[-1] = (name, inputs, i + 1)
            child = inputs[i]
            if child not in ids:
                ids[child] = "?"
                stack.append((child, _visit_order(graph.node_map[child], label), 0))
            continue
        stack.pop()
        node = graph.node_map[name]
        kid_ids = [ids[i] for i in inputs]
        if OPS[node.op].commutative:
            kid_ids_sorted = sorted(zip((label[i] for i in inputs), kid_ids, strict=True))
            kid_ids = [k for _, k in kid_ids_sorted]
        ids[name] = str(len(lines))
        # repr keeps every digit: alpha=1.1 and alpha=1.1000001 are different cells.
        attr_text = "".join(f"[{k}={v!r}]" for k, v in _attrs(node).items())
        lines.append(f"{ids[name]}={node.op}{attr_text}({','.join(kid_ids)})")
    return ids[root]


def _visit_order(node: Node, label: dict[str, str]) -> list[str]:
    inputs = list(node.inputs)
    if OPS[node.op].commutative:
        inputs.sort(key=lambda i: label[i])
    return inputs


def canonical_hash(graph: CellGraph) -> str:
    """The key by which the search never trains the same cell twice (hex, 16 characters).

    Example:
        >>> from cells import library
        >>> canonical_hash(library.get("lstm")) != canonical_hash(library.get("gru"))
        True
    """
    hit = _memo.get(id(graph))
    if hit is not None and hit[0] is graph:
        return hit[1]
    digest = hashlib.sha256(canonical_form(graph).encode()).hexdigest()[:16]
    remember_hash(graph, digest)
    return digest


def remember_hash(graph: CellGraph, digest: str) -> None:
    """Record a hash already known, e.g. for a renamed copy of a hashed graph (private)."""
    _memo[id(graph)] = (graph, digest)
    if len(_memo) > _MEMO_SIZE:
        _memo.popitem(last=False)
