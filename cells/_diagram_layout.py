"""A layered layout of a cell graph, for :func:`cells.draw_diagram` (no drawing library here).

The inputs (``x``, the previous states) form the top layer, every node sits one layer below
the deepest of its inputs (its longest path from an input), and the new states form the
bottom layer, so every edge points down. An edge that spans several layers passes through
a slot of its own in each layer it crosses (a Sugiyama-style layout): it never runs through a
box. The order inside each layer is chosen by barycenter sweeps, keeping the order with the
fewest crossings, and the positions by repeatedly moving each box towards the mean of its
neighbours as far as the spacing allows. Everything is deterministic: the same graph and the
same label sizes give the same layout.

Coordinates are points (1/72 inch), ``x`` to the right and ``y`` downwards from the top left.

Example:
    >>> from cells import library
    >>> layout = diagram_layout(library.get("tanh"), lambda text: (6.0 * len(text), 12.0))
    >>> [layout.boxes[key].layer for key in ("in:x", "n:a", "n:h_new", "out:0")]
    [0, 1, 2, 3]
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cells._graph import INPUT_X, CellGraph, Node, state_output
from cells._ops import OPS
from cells._plain_text import clip

_NAME_WIDTH = 32
"""A node's name is cut to this many characters in its box."""

STATE_SYMBOLS = ("h", "c", "m")
"""How the states read (as in the equations): ``h_prev_0`` is ``h``, ``h_new_0`` is ``h'``."""

Measure = Callable[[str], tuple[float, float]]
"""Width and height of a label's text, in points."""

PAD_X, PAD_Y = 8.0, 5.0
"""Room between a box's text and its border."""
BOX_GAP = 16.0
"""Least room between two boxes of a layer."""
LANE_GAP = 7.0
"""Least room between an edge passing through a layer and its neighbour."""
LAYER_GAP = 38.0
"""Vertical room between two layers, where the edges bend."""
MARGIN = 14.0
"""Room around the drawing."""
MAX_LANES = 20_000
"""The most pass-through slots a layout makes. A hostile graph (hundreds of nodes, each
reading an input from far above) could ask for millions; past this bound long edges are
drawn straight, across the layers between, instead."""
SWEEPS = 12
"""Barycenter sweeps (down and up) when ordering the layers."""
RELAX_ROUNDS = 24
"""Rounds of moving every layer towards its neighbours."""

Kind = Literal["input", "node", "output", "lane"]


@dataclass(frozen=True)
class Box:
    """One box of the diagram (or, of kind ``lane``, an edge's slot in a layer it crosses)."""

    key: str
    """``in:x``, ``in:h_prev_0``, ``n:<node>``, ``out:<i>`` or ``lane:<k>``."""
    kind: Kind
    label: str
    layer: int
    x: float
    """The centre."""
    y: float
    """The centre."""
    width: float
    height: float
    parametric: bool = False
    """A ``linear`` or ``diag`` node: it holds weights."""

    @property
    def top(self) -> float:
        return self.y - self.height / 2

    @property
    def bottom(self) -> float:
        return self.y + self.height / 2


@dataclass(frozen=True)
class Edge:
    """An arrow from ``source`` to ``target``, through ``points`` (source end first)."""

    source: str
    target: str
    points: tuple[tuple[float, float], ...]
    """The source's bottom, the top and bottom of each lane it passes, the target's top."""
    label: str | None
    """The operand's position, for an op whose operand order matters (``sub``, ``blend``)."""
    dashed: bool
    """The edge to a new state."""


@dataclass(frozen=True)
class Layout:
    boxes: dict[str, Box]
    edges: tuple[Edge, ...]
    width: float
    height: float


def node_label(node: Node) -> str:
    """``i = sigmoid``; attributes on a second line (``bias_init=1``)."""
    attrs = ", ".join(f"{k}={v:g}" for k, v in sorted(node.attrs.items()))
    return f"{clip(node.name, _NAME_WIDTH)} = {node.op}" + (f"\n{attrs}" if attrs else "")


def input_label(name: str) -> str:
    return name if name == INPUT_X else f"{STATE_SYMBOLS[int(name.rsplit('_', 1)[1])]}  ({name})"


def output_label(i: int) -> str:
    return f"{STATE_SYMBOLS[i]}'  ({state_output(i)})"


def node_layers(graph: CellGraph) -> dict[str, int]:
    """The layer of every box key: inputs 0, a node one below its deepest input, new states last."""
    layer = {f"in:{name}": 0 for name in graph.input_names}
    inputs = set(graph.input_names)
    for node in graph.nodes:  # topological order
        layer[f"n:{node.name}"] = 1 + max(layer[_ref(src, inputs)] for src in node.inputs)
    bottom = 1 + max((layer[f"n:{n.name}"] for n in graph.nodes), default=0)
    layer.update({f"out:{i}": bottom for i in range(graph.num_states)})
    return layer


def diagram_layout(graph: CellGraph, measure: Measure) -> Layout:
    """The boxes and edges of ``graph`` placed in layers (see the module's docstring)."""
    inputs = set(graph.input_names)
    layer = node_layers(graph)
    labels = {f"in:{name}": input_label(name) for name in graph.input_names}
    labels.update({f"n:{node.name}": node_label(node) for node in graph.nodes})
    labels.update({f"out:{i}": output_label(i) for i in range(graph.num_states)})
    # (source, target, label, dashed): every operand, then every new state.
    wires: list[tuple[str, str, str | None, bool]] = []
    for node in graph.nodes:
        positional = not OPS[node.op].commutative and len(node.inputs) > 1
        for pos, src in enumerate(node.inputs):
            wires.append((_ref(src, inputs), f"n:{node.name}", str(pos) if positional else None, False))
    wires += [(_ref(out, inputs), f"out:{i}", None, True) for i, out in enumerate(graph.outputs)]
    span = sum(layer[t] - layer[s] - 1 for s, t, _, _ in wires)
    grid = _Grid(layer, wires, lanes=span <= MAX_LANES)
    grid.order()
    sizes = {key: _box_size(labels[key], measure) for key in labels}
    xs = grid.positions(sizes)
    tops, heights = _layer_tops(grid.rows, sizes)
    boxes: dict[str, Box] = {}
    for row, keys in enumerate(grid.rows):
        for key in keys:
            w, h = sizes.get(key, (0.0, heights[row]))
            kind = _kind(key)
            parametric = kind == "node" and graph.node_map[key[2:]].op in ("linear", "diag")
            label = labels.get(key, "")
            boxes[key] = Box(key, kind, label, row, xs[key], tops[row] + heights[row] / 2, w, h, parametric)
    edges = tuple(grid.edge_points(boxes))
    width = max((b.x + b.width / 2 for b in boxes.values()), default=0.0) + MARGIN
    height = tops[-1] + heights[-1] + MARGIN
    return Layout(boxes, edges, width, height)


class _Grid:
    """The layers as rows of box keys, lanes included, and the edges' segments between rows."""

    def __init__(self, layer: dict[str, int], wires: list[tuple[str, str, str | None, bool]], lanes: bool):
        depth = max(layer.values()) + 1
        self.rows: list[list[str]] = [[] for _ in range(depth)]
        for key, row in layer.items():  # inputs, nodes in topological order, outputs
            self.rows[row].append(key)
        self.row_of = dict(layer)
        self.wires = wires
        self.chains: list[list[str]] = []  # per wire: source, its lanes, target
        for source, target, _, _ in wires:
            chain = [source]
            if lanes:
                for row in range(layer[source] + 1, layer[target]):
                    lane = f"lane:{len(self.row_of) - len(layer)}"
                    self.rows[row].append(lane)
                    self.row_of[lane] = row
                    chain.append(lane)
            chain.append(target)
            self.chains.append(chain)
        self.up: dict[str, list[str]] = {key: [] for key in self.row_of}
        self.down: dict[str, list[str]] = {key: [] for key in self.row_of}
        for chain in self.chains:
            for a, b in itertools.pairwise(chain):
                self.down[a].append(b)
                self.up[b].append(a)

    # -- the order inside each layer ---------------------------------------------------------

    def order(self) -> None:
        """Barycenter sweeps over the middle rows (inputs and new states keep their order)."""
        self.index = {key: i for r in self.rows for i, key in enumerate(r)}
        best = [list(r) for r in self.rows]
        best_crossings = self.crossings()
        for _ in range(SWEEPS):
            for row in range(1, len(self.rows) - 1):
                self._sort_row(row, self.up)
            for row in range(len(self.rows) - 2, 0, -1):
                self._sort_row(row, self.down)
            crossings = self.crossings()
            if crossings < best_crossings:  # a copy: later sweeps sort the rows in place
                best, best_crossings = [list(r) for r in self.rows], crossings
            if best_crossings == 0:
                break
        self.rows = best
        self.index = {key: i for r in self.rows for i, key in enumerate(r)}

    def _sort_row(self, row: int, neighbours: dict[str, list[str]]) -> None:
        index = self.index

        def barycenter(key: str) -> float:
            near = [index[n] for n in neighbours[key] if self.row_of[n] in (row - 1, row + 1)]
            return sum(near) / len(near) if near else float(index[key])

        self.rows[row].sort(key=lambda key: (barycenter(key), index[key]))
        index.update((key, i) for i, key in enumerate(self.rows[row]))

    def crossings(self) -> int:
        """Pairs of segments between adjacent rows that cross."""
        index = self.index
        total = 0
        for row in range(len(self.rows) - 1):
            segments = sorted(
                (index[a], index[b])
                for a in self.rows[row]
                for b in self.down[a]
                if self.row_of[b] == row + 1
            )
            total += _inversions([b for _, b in segments])
        return total

    # -- positions ---------------------------------------------------------------------------

    def positions(self, sizes: dict[str, tuple[float, float]]) -> dict[str, float]:
        """Centres: each row packed, then moved towards its neighbours' mean, spacing kept."""
        x: dict[str, float] = {}
        for keys in self.rows:
            left = 0.0
            for i, key in enumerate(keys):
                if i:
                    left += _gap(keys[i - 1], key, sizes)
                x[key] = left
            for key in keys:
                x[key] -= left / 2
        sweep = [*range(len(self.rows)), *range(len(self.rows) - 1, -1, -1)]
        for _ in range(RELAX_ROUNDS):
            for row in sweep:
                keys = self.rows[row]
                wanted = []
                for key in keys:
                    near = [x[n] for n in (*self.up[key], *self.down[key])]
                    wanted.append(sum(near) / len(near) if near else x[key])
                gaps = [_gap(a, b, sizes) for a, b in itertools.pairwise(keys)]
                x.update(zip(keys, _spaced(wanted, gaps), strict=True))
        left = min(x[key] - sizes.get(key, (0.0, 0.0))[0] / 2 for key in x)
        return {key: value - left + MARGIN for key, value in x.items()}

    def edge_points(self, boxes: dict[str, Box]) -> list[Edge]:
        """Each wire's points: the ends spread along the boxes' sides in the order they go."""
        leaving: dict[str, list[int]] = {}
        arriving: dict[str, list[int]] = {}
        for k, chain in enumerate(self.chains):
            leaving.setdefault(chain[0], []).append(k)
            arriving.setdefault(chain[-1], []).append(k)
        start: dict[int, float] = {}
        end: dict[int, float] = {}
        for key, ks in leaving.items():
            ks.sort(key=lambda k: (boxes[self.chains[k][1]].x, k))
            start.update(zip(ks, _spread(boxes[key], len(ks)), strict=True))
        for key, ks in arriving.items():
            ks.sort(key=lambda k: (boxes[self.chains[k][-2]].x, k))
            labelled = any(self.wires[k][2] is not None for k in ks)  # room for the numbers
            end.update(zip(ks, _spread(boxes[key], len(ks), 26.0 if labelled else 12.0), strict=True))
        edges = []
        for k, (chain, (source, target, label, dashed)) in enumerate(
            zip(self.chains, self.wires, strict=True)
        ):
            points = [(start[k], boxes[source].bottom)]
            for lane in chain[1:-1]:
                points += [(boxes[lane].x, boxes[lane].top), (boxes[lane].x, boxes[lane].bottom)]
            points.append((end[k], boxes[target].top))
            edges.append(Edge(source, target, tuple(points), label, dashed))
        return edges


def _ref(name: str, inputs: set[str]) -> str:
    return f"in:{name}" if name in inputs else f"n:{name}"


def _kind(key: str) -> Kind:
    return {"in": "input", "n": "node", "out": "output", "lane": "lane"}[key.split(":", 1)[0]]  # type: ignore[return-value]


def _box_size(label: str, measure: Measure) -> tuple[float, float]:
    width, height = measure(label)
    return width + 2 * PAD_X, height + 2 * PAD_Y


def _gap(left: str, right: str, sizes: dict[str, tuple[float, float]]) -> float:
    """Least distance between two neighbours' centres."""
    lanes = left.startswith("lane:") + right.startswith("lane:")
    room = BOX_GAP if lanes == 0 else LANE_GAP
    return sizes.get(left, (0.0, 0.0))[0] / 2 + sizes.get(right, (0.0, 0.0))[0] / 2 + room


def _layer_tops(
    rows: list[list[str]], sizes: dict[str, tuple[float, float]]
) -> tuple[list[float], list[float]]:
    heights = [max((sizes[k][1] for k in keys if k in sizes), default=PAD_Y * 2) for keys in rows]
    tops, y = [], MARGIN
    for h in heights:
        tops.append(y)
        y += h + LAYER_GAP
    return tops, heights


def _spread(box: Box, count: int, step: float = 12.0) -> list[float]:
    """``count`` points along the middle of a box's side, left to right, ``step`` apart where
    the box is wide enough."""
    if count == 1 or box.width == 0:
        return [box.x] * count
    span = min(box.width * 0.8, step * (count - 1))
    return [box.x - span / 2 + span * i / (count - 1) for i in range(count)]


def _spaced(wanted: list[float], gaps: list[float]) -> list[float]:
    """The positions closest (least squares) to ``wanted`` that keep each neighbour at least its
    ``gaps`` entry to the right: isotonic regression by pooling adjacent violators."""
    offsets = [0.0]
    for gap in gaps:
        offsets.append(offsets[-1] + gap)
    blocks: list[list[float]] = []  # [sum, count]
    for value, offset in zip(wanted, offsets, strict=True):
        blocks.append([value - offset, 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    pooled = [total / count for total, count in blocks for _ in range(int(count))]
    return [value + offset for value, offset in zip(pooled, offsets, strict=True)]


def _inversions(values: list[int]) -> int:
    """Pairs ``i < j`` with ``values[i] > values[j]`` (a Fenwick tree over the values)."""
    size = max(values, default=0) + 2
    tree = [0] * size
    count = 0
    for seen, value in enumerate(values):
        i, not_greater = value + 1, 0
        while i > 0:
            not_greater += tree[i]
            i -= i & -i
        count += seen - not_greater
        i = value + 1
        while i < size:
            tree[i] += 1
            i += i & -i
    return count
