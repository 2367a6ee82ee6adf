"""Build-time analysis of a cell graph for the compiled layer: fused layout and step schedule.

Everything here is plain Python on the graph, done once per distinct cell structure;
``cells/_compile_codegen.py`` turns the resulting :class:`Plan` into code.

The fused layout: every ``linear`` node owns one block of ``hidden_size`` columns in a
``pre`` tensor (its pre-activation) and one slice of a bias vector. Each input a linear
reads ("source": ``x``, a previous state or a node) has one fused weight matrix whose row
blocks belong to the linears that read it. Block order is chosen so that the linears
reading one source are contiguous (one matrix product per source per step) and linears
followed by the same activation are contiguous (one activation call for all of them, e.g.
the three sigmoid gates of an LSTM).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from cells._graph import INPUT_X, CellGraph, Node, state_input

GROUPABLE = frozenset({"sigmoid", "tanh", "relu", "leaky_relu", "scale", "shift", "one_minus"})
"""Unary ops applied to a run of linear blocks with one call."""

SAVES_OUTPUT = frozenset({"sigmoid", "tanh", "relu", "leaky_relu"})
"""Unary ops whose derivative is computed from their output."""

_ATTR = {"leaky_relu": ("negative_slope", 0.01), "scale": ("alpha", 1.0), "shift": ("beta", 0.0)}
_EXHAUSTIVE_GROUPS = 5  # try every block order up to this many groups of alike linears
# Above this many groups the block order is searched no further than file order: the local
# search costs the cube of the groups (minutes for a chain of MAX_NODES linears), and no real
# cell has more than a dozen groups.
_SEARCHED_GROUPS = 32


def op_attr(node: Node) -> float:
    """The op's one numeric attribute (slope, alpha, beta) with its default, or 0.0."""
    if node.op not in _ATTR:
        return 0.0
    name, default = _ATTR[node.op]
    return float(node.attrs.get(name, default))


@dataclass(frozen=True)
class Run:
    """Blocks ``start:stop`` of ``pre`` get ``source @ W[row:row + stop - start].T`` (units of hidden)."""

    start: int
    stop: int
    row: int


@dataclass(frozen=True)
class Product:
    """The matrix product of one source with its fused weight, added into ``pre``."""

    source: str
    weight: int  # index into Plan.weight_sources
    runs: tuple[Run, ...]


@dataclass(frozen=True)
class ActGroup:
    """One unary op over blocks ``start:stop`` of ``pre``, i.e. over several linears at once.

    ``inplace``: the linears have no other use, so the op overwrites ``pre``; otherwise it
    writes a new tensor (``buffer`` indexes the plan's out-of-place activation buffers).
    """

    op: str
    attr: float
    start: int
    stop: int
    nodes: tuple[str, ...]  # the activation node of each block
    linears: tuple[str, ...]  # the linear of each block
    inplace: bool
    buffer: int


@dataclass(frozen=True)
class NodeStep:
    """Any other node, computed on its own."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attr: float


Task = Product | ActGroup | NodeStep


@dataclass(frozen=True)
class Plan:
    """What the code generators need, in canonical node names (``n0``, ``n1``, ...)."""

    key: str
    num_states: int
    linears: tuple[str, ...]  # block order of pre and bias
    linear_sources: dict[str, tuple[str, ...]]
    weight_sources: tuple[str, ...]  # one fused weight per source
    weight_rows: tuple[tuple[str, ...], ...]  # the linears in each weight's row blocks
    hoisted: Product | None  # the x product, done for all steps at once
    tasks: tuple[Task, ...]  # the per-step schedule
    groups: tuple[ActGroup, ...]
    diags: tuple[str, ...]  # diag nodes, rows of the diag parameter
    outputs: tuple[str, ...]  # outputs[i] becomes state i
    needed: frozenset[str]  # values the backward pass reads
    alias: dict[str, str]  # identity nodes -> the value they pass on
    x_per_step: bool  # x is read by something other than a linear

    def home(self, value: str) -> tuple[str, int] | None:
        """Where a value lives for all steps after the forward pass, or None for a temporary.

        ``("x", 0)``, ``("state_in", i)``, ``("state_out", i)``, ``("pre", block)``,
        ``("act", group_index)`` (block inside that group's buffer follows from the node) or
        ``("saved", 0)``.
        """
        value = self.alias.get(value, value)
        if value == INPUT_X:
            return ("x", 0)
        if value.startswith("h_prev_"):
            return ("state_in", int(value.removeprefix("h_prev_")))
        if value in self.linear_sources:
            return ("pre", self.linears.index(value))
        for index, group in enumerate(self.groups):
            if value in group.nodes:
                if group.inplace:
                    return ("pre", group.start + group.nodes.index(value))
                return ("act", index)
        if value in self.outputs:
            return ("state_out", self.outputs.index(value))
        if value in self.needed:
            return ("saved", 0)
        return None


def relabel(graph: CellGraph) -> dict[str, str]:
    """Node name -> position name (``n0``, ...); inputs keep their names."""
    names = {name: name for name in graph.input_names}
    names.update({node.name: f"n{i}" for i, node in enumerate(graph.nodes)})
    return names


def structure_key(graph: CellGraph) -> str:
    """The graph with node names replaced by positions, tags and initial values dropped.

    Two graphs with the same key compute the same function with the same parameter layout,
    so they share compiled code.
    """
    names = relabel(graph)
    parts = [f"k={graph.num_states}"]
    for node in graph.nodes:
        attrs = sorted((k, float(v)) for k, v in node.attrs.items() if k != "bias_init")
        parts.append(f"{names[node.name]}={node.op}{attrs}({','.join(names[i] for i in node.inputs)})")
    parts.append("out=" + ",".join(names[o] for o in graph.outputs))
    return ";".join(parts)


def build_plan(graph: CellGraph) -> Plan:
    """Analyse ``graph`` (in canonical names) into a :class:`Plan`."""
    names = relabel(graph)
    nodes = [
        Node(name=names[n.name], op=n.op, inputs=tuple(names[i] for i in n.inputs), attrs=n.attrs)
        for n in graph.nodes
    ]
    by_name = {n.name: n for n in nodes}
    outputs = tuple(names[o] for o in graph.outputs)
    order = {n.name: i for i, n in enumerate(nodes)}

    alias = _aliases(nodes)
    uses: dict[str, int] = {}
    for n in nodes:
        for i in n.inputs:
            uses[i] = uses.get(i, 0) + 1
    for o in outputs:
        uses[o] = uses.get(o, 0) + 1

    linears = [n for n in nodes if n.op == "linear"]
    act_of: dict[str, Node] = {}
    for n in nodes:
        if n.op in GROUPABLE and by_name.get(n.inputs[0], n).op == "linear" and n.inputs[0] not in act_of:
            act_of[n.inputs[0]] = n

    def stage(lin: Node) -> int:
        # When a linear's value is complete: after the product of its latest source.
        return max((order[s] + 1 if s in by_name else 0) for s in lin.inputs)

    def act_key(lin: Node) -> tuple[str, float, bool] | None:
        act = act_of.get(lin.name)
        if act is None:
            return None
        return (act.op, op_attr(act), uses[lin.name] == 1)

    block_order = _layout(linears, act_key, stage)
    linear_names = tuple(n.name for n in block_order)
    lin_by_name = {n.name: n for n in linears}
    sources, weight_rows, products = _fused_weights(block_order, order)
    groups = _act_groups(block_order, act_key, stage, act_of)
    grouped = {name for g in groups for name in g.nodes}
    tasks = _schedule(nodes, lin_by_name, products, groups, grouped, graph.num_states)
    x_per_step = INPUT_X in outputs or any(n.op != "linear" and INPUT_X in n.inputs for n in nodes)
    return Plan(
        key=structure_key(graph),
        num_states=graph.num_states,
        linears=linear_names,
        linear_sources={n.name: n.inputs for n in linears},
        weight_sources=tuple(sources),
        weight_rows=weight_rows,
        hoisted=products.get(INPUT_X),
        tasks=tasks,
        groups=tuple(groups),
        diags=tuple(n.name for n in nodes if n.op == "diag"),
        outputs=outputs,
        needed=_needed(nodes, grouped, alias),
        alias=alias,
        x_per_step=x_per_step,
    )


def _aliases(nodes: list[Node]) -> dict[str, str]:
    """Identity nodes -> the value they pass on (through chains of identities)."""
    alias: dict[str, str] = {}
    for n in nodes:
        if n.op == "identity":
            alias[n.name] = alias.get(n.inputs[0], n.inputs[0])
    return alias


def _fused_weights(
    block_order: list[Node], order: dict[str, int]
) -> tuple[list[str], tuple[tuple[str, ...], ...], dict[str, Product]]:
    """One fused weight per source (x first), row blocks in block order, and its product."""
    linear_names = [n.name for n in block_order]
    sources: list[str] = []
    for lin in block_order:
        for s in lin.inputs:
            if s not in sources:
                sources.append(s)
    sources.sort(key=lambda s: (s != INPUT_X, order.get(s, -1), s))
    weight_rows = tuple(tuple(lin.name for lin in block_order if s in lin.inputs) for s in sources)
    products = {
        s: Product(s, j, _runs([linear_names.index(name) for name in weight_rows[j]]))
        for j, s in enumerate(sources)
    }
    return sources, weight_rows, products


def _act_groups(block_order: list[Node], act_key, stage, act_of: dict[str, Node]) -> list[ActGroup]:  # type: ignore[no-untyped-def]
    """Activation groups: consecutive blocks with the same op, in-place flag and stage."""
    linear_names = tuple(n.name for n in block_order)
    groups: list[ActGroup] = []
    start = 0
    while start < len(block_order):
        key = act_key(block_order[start])
        stop = start + 1
        while (
            key is not None
            and stop < len(block_order)
            and act_key(block_order[stop]) == key
            and stage(block_order[stop]) == stage(block_order[start])
        ):
            stop += 1
        if key is not None:
            op, attr, inplace = key
            members = tuple(act_of[b.name].name for b in block_order[start:stop])
            buffer = sum(1 for g in groups if not g.inplace)
            groups.append(
                ActGroup(
                    op,
                    attr,
                    start,
                    stop,
                    members,
                    linear_names[start:stop],
                    inplace,
                    -1 if inplace else buffer,
                )
            )
        start = stop
    return groups


def _needed(nodes: list[Node], grouped: set[str], alias: dict[str, str]) -> frozenset[str]:
    """The values the backward pass reads (operands of products, derivatives from outputs)."""
    needed: set[str] = set()
    for n in nodes:
        if n.op in ("mul", "blend"):
            needed.update(n.inputs)
        elif n.op == "diag":
            needed.add(n.inputs[0])
        elif n.op == "linear":
            needed.update(i for i in n.inputs if i != INPUT_X)
        elif n.op in SAVES_OUTPUT and n.name not in grouped:
            needed.add(n.name)
    return frozenset(alias.get(v, v) for v in needed)


def fused_mul_adds(plan: Plan) -> dict[str, str]:
    """Two-input mul nodes computed inside the add that is their only reader (as
    ``torch.addcmul``) -> that add. A mul qualifies only when no other node, product or
    state output reads it, the add reads it once, and its value need not live past the
    step (the backward does not read it: it is neither needed nor stored in a buffer)."""
    readers: dict[str, list[str]] = {}
    for task in plan.tasks:
        if isinstance(task, NodeStep):
            for i in task.inputs:
                readers.setdefault(i, []).append(task.name)
        elif isinstance(task, Product):  # a product's source must exist as a value
            readers.setdefault(task.source, []).append("<product>")
    for o in plan.outputs:
        readers.setdefault(o, []).append("<output>")
    steps = {t.name: t for t in plan.tasks if isinstance(t, NodeStep)}
    fused: dict[str, str] = {}
    for add in steps.values():
        if add.op != "add":
            continue
        for i in add.inputs:
            mul = steps.get(i)
            if (
                mul is not None
                and mul.op == "mul"
                and len(mul.inputs) == 2
                and readers.get(i) == [add.name]
                and i not in plan.needed
                and plan.home(i) is None
            ):
                fused[i] = add.name
    return fused


def _runs(blocks: Sequence[int]) -> tuple[Run, ...]:
    """Blocks (ascending) -> maximal runs of consecutive blocks, with their weight row offset."""
    runs: list[Run] = []
    for row, block in enumerate(blocks):
        if runs and runs[-1].stop == block:
            runs[-1] = Run(runs[-1].start, block + 1, runs[-1].row)
        else:
            runs.append(Run(block, block + 1, row))
    return tuple(runs)


def _layout(linears: list[Node], act_key, stage) -> list[Node]:  # type: ignore[no-untyped-def]
    """Order the linear blocks: alike linears (same sources and activation) stay together,
    and the order of those groups minimises the number of separate products per step."""
    groups: dict[tuple, list[Node]] = {}
    for lin in linears:
        groups.setdefault((tuple(sorted(lin.inputs)), act_key(lin), stage(lin)), []).append(lin)
    keys = list(groups)

    def cost(order: Sequence[tuple]) -> int:
        total = 0
        previous: tuple | None = None
        seen_sources: dict[str, int] = {}
        for position, key in enumerate(order):
            sources, act, st = key
            for s in sources:
                # A source whose readers are not adjacent needs another product.
                if seen_sources.get(s) != position - 1:
                    total += 1 if s == INPUT_X else 4
                seen_sources[s] = position
            if act is not None and (previous is None or (previous[1], previous[2]) != (act, st)):
                total += 2  # another activation call
            previous = key
        return total

    if len(keys) <= _EXHAUSTIVE_GROUPS:
        best = min(itertools.permutations(keys), key=cost)
    elif len(keys) > _SEARCHED_GROUPS:
        best = tuple(keys)  # the search below grows with the cube of the groups: keep file order
    else:
        best = tuple(keys)
        improved = True
        while improved:
            improved = False
            for i, j in itertools.permutations(range(len(best)), 2):
                trial = list(best)
                trial.insert(j, trial.pop(i))
                if cost(trial) < cost(best):
                    best, improved = tuple(trial), True
    return [lin for key in best for lin in groups[key]]


def _schedule(
    nodes: list[Node],
    linears: dict[str, Node],
    products: dict[str, Product],
    groups: list[ActGroup],
    grouped: set[str],
    num_states: int,
) -> tuple[Task, ...]:
    """The per-step order: a product as soon as its source exists, an activation group as
    soon as its linears are complete, every other node as soon as its inputs exist."""
    available = {INPUT_X, *(state_input(i) for i in range(num_states))}
    missing = {name: sum(1 for s in lin.inputs if s != INPUT_X) for name, lin in linears.items()}
    available.update(name for name, m in missing.items() if m == 0)
    pending_products = [p for s, p in products.items() if s != INPUT_X]
    pending_groups = list(groups)
    pending_nodes = [n for n in nodes if n.op != "linear" and n.name not in grouped]
    tasks: list[Task] = []
    while pending_products or pending_groups or pending_nodes:
        progress = False
        for p in [p for p in pending_products if p.source in available]:
            pending_products.remove(p)
            tasks.append(p)
            for name, lin in linears.items():
                if p.source in lin.inputs:
                    missing[name] -= 1
                    if missing[name] == 0:
                        available.add(name)
            progress = True
        for g in [g for g in pending_groups if all(lin in available for lin in g.linears)]:
            pending_groups.remove(g)
            tasks.append(g)
            available.update(g.nodes)
            progress = True
        for n in list(pending_nodes):
            if all(i in available for i in n.inputs):
                pending_nodes.remove(n)
                tasks.append(NodeStep(n.name, n.op, n.inputs, op_attr(n)))
                available.add(n.name)
                progress = True
        if not progress:  # cannot happen for a valid (acyclic) graph
            raise AssertionError("cell schedule is stuck")
    return tuple(tasks)
