"""The cell's diagram drawn with matplotlib (no system package such as Graphviz needed).

The layout is :func:`cells._diagram_layout.diagram_layout`: inputs at the top (blue),
nodes in layers by their longest path from an input (yellow: a ``linear`` or ``diag`` with
weights), the new states at the bottom (green, reached by dashed arrows). A box reads
``name = op``; an operand whose position matters (``sub``, ``blend``) has its number by the
arrow's head. The arrows leaving one box share its colour, so a wire can be followed.
matplotlib's Agg backend draws it (no display needed); the same graph gives the same file.

Example:
    >>> import tempfile, pathlib
    >>> from cells import draw_diagram, library
    >>> path = draw_diagram(library.get("gru"), pathlib.Path(tempfile.mkdtemp()) / "gru.png")
    >>> path.read_bytes()[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import io
import itertools
from functools import lru_cache
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path as MplPath
from matplotlib.textpath import TextToPath

from cells._diagram_layout import Box, Edge, Layout, diagram_layout
from cells._graph import CellGraph
from cells._plain_text import clip

FONT_SIZE = 10.0
"""Points, of the boxes' labels (the title is larger, the operand numbers smaller)."""
DPI = 150
"""Pixels per inch of a PNG: a 10-point label is about 20 pixels high."""
MAX_PIXELS_SIDE = 16_000
"""The longest side of a PNG; a larger diagram (hundreds of nodes) is drawn at a lower DPI."""
MAX_PIXELS = 60_000_000
"""The most pixels of a PNG, for the same reason."""
FORMATS = (".png", ".svg")
"""The file formats, by suffix."""

_FILL = {"input": "#dbe9f6", "output": "#e2f0d9", "node": "#ffffff", "param": "#fff2cc"}
_BORDER = {"input": "#4a7ab5", "output": "#4f8a3c", "node": "#666666", "param": "#b38f00"}
# Colour-blind-safe, dark enough on white (Okabe-Ito, then Tableau's darker hues).
_WIRES = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#7f3c8d", "#3a7d44", "#a0522d")
_LABEL_BOX = {"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85}
_TITLE_ROOM = 26.0
_MAX_TITLE = 80


def draw_diagram(graph: CellGraph, path: Path | str) -> Path:
    """Draw ``graph`` to ``path`` as PNG, or as SVG when its suffix is ``.svg``; returns the path.

    Raises :class:`ValueError` for another suffix and :class:`OSError` when the file cannot be
    written.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"path: expected a .png or .svg file, got {target.name!r}")
    data = diagram_bytes(graph, suffix[1:])
    target.write_bytes(data)
    return target


def diagram_svg(graph: CellGraph) -> str:
    """The diagram as SVG text (text drawn as outlines: it needs no font where it is shown)."""
    return diagram_bytes(graph, "svg").decode("utf-8")


def diagram_bytes(graph: CellGraph, format: str = "png") -> bytes:
    """The diagram as the bytes of a ``png`` or ``svg`` file."""
    if format not in ("png", "svg"):
        raise ValueError(f"format: expected 'png' or 'svg', got {format!r}")
    layout = diagram_layout(graph, _measure)
    width, height = layout.width, layout.height + _TITLE_ROOM
    fig = Figure(figsize=(width / 72, height / 72))
    FigureCanvasAgg(fig)  # drawn without any display (the Agg backend), whatever pyplot uses
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, width)
    ax.set_ylim(layout.height, -_TITLE_ROOM)  # y grows downwards, as in the layout
    ax.set_axis_off()
    _draw(ax, graph, layout)
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "cellsearch", "svg.fonttype": "path"}):
        if format == "png":
            fig.savefig(buffer, format="png", dpi=_dpi(width, height), metadata={"Software": None})
        else:
            fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return buffer.getvalue()


def _draw(ax: Any, graph: CellGraph, layout: Layout) -> None:
    title = clip(graph.name, _MAX_TITLE)
    ax.text(layout.width / 2, -_TITLE_ROOM / 2, title, ha="center", va="center", fontsize=FONT_SIZE + 2,
            fontweight="bold", parse_math=False)  # fmt: skip
    colour = {key: _WIRES[i % len(_WIRES)] for i, key in enumerate(_sources(layout))}
    for edge in layout.edges:
        _draw_edge(ax, edge, colour[edge.source])
    for box in layout.boxes.values():
        if box.kind != "lane":
            _draw_box(ax, box)
    for edge in layout.edges:
        if edge.label is not None:
            x, y = edge.points[-1]
            ax.text(x + 3, y - 9, edge.label, ha="left", va="center", fontsize=FONT_SIZE - 2,
                    color=colour[edge.source], fontweight="bold", parse_math=False, zorder=4,
                    bbox=_LABEL_BOX)  # fmt: skip


def _sources(layout: Layout) -> list[str]:
    """Boxes that arrows leave, top to bottom and left to right (the order colours go by)."""
    keys = {edge.source for edge in layout.edges}
    return sorted(keys, key=lambda key: (layout.boxes[key].layer, layout.boxes[key].x, key))


def _draw_box(ax: Any, box: Box) -> None:
    style = "param" if box.parametric else box.kind
    ax.add_patch(
        FancyBboxPatch(
            (box.x - box.width / 2, box.top),
            box.width,
            box.height,
            boxstyle="round,pad=0,rounding_size=5",
            fc=_FILL[style],
            ec=_BORDER[style],
            lw=1.6 if box.kind != "node" else 1.0,
            zorder=2,
        )
    )
    name, _, attrs = box.label.partition("\n")
    if attrs:
        ax.text(box.x, box.y - FONT_SIZE * 0.55, name, ha="center", va="center", fontsize=FONT_SIZE,
                parse_math=False, zorder=3)  # fmt: skip
        ax.text(box.x, box.y + FONT_SIZE * 0.6, attrs, ha="center", va="center", fontsize=FONT_SIZE - 1.5,
                color="#555555", parse_math=False, zorder=3)  # fmt: skip
    else:
        ax.text(box.x, box.y, name, ha="center", va="center", fontsize=FONT_SIZE, parse_math=False, zorder=3)


def _draw_edge(ax: Any, edge: Edge, colour: str) -> None:
    """A smooth curve (vertical where it leaves and enters a layer), an arrowhead at the target."""
    points = edge.points
    vertices = [points[0]]
    codes = [MplPath.MOVETO]
    for i, (a, b) in enumerate(itertools.pairwise(points)):
        if i % 2 == 1:  # through a lane: straight down
            vertices.append(b)
            codes.append(MplPath.LINETO)
            continue
        bend = (b[1] - a[1]) / 2
        vertices += [(a[0], a[1] + bend), (b[0], b[1] - bend), b]
        codes += [MplPath.CURVE4] * 3
    ax.add_patch(
        FancyArrowPatch(
            path=MplPath(vertices, codes),
            arrowstyle="-|>,head_length=0.6,head_width=0.3",
            mutation_scale=10,
            color=colour,
            lw=1.2,
            linestyle=(0, (4, 2.5)) if edge.dashed else "-",
            shrinkA=0,
            shrinkB=0,
            zorder=1,
            joinstyle="round",
            capstyle="round",
        )
    )


def _dpi(width: float, height: float) -> float:
    """:data:`DPI`, or less for a diagram that would pass :data:`MAX_PIXELS_SIDE` or :data:`MAX_PIXELS`."""
    inches_w, inches_h = width / 72, height / 72
    return min(DPI, MAX_PIXELS_SIDE / max(inches_w, inches_h), (MAX_PIXELS / (inches_w * inches_h)) ** 0.5)


@lru_cache(maxsize=4096)
def _measure(label: str) -> tuple[float, float]:
    """Width and height in points of a label as :func:`_draw_box` writes it."""
    name, _, attrs = label.partition("\n")
    width, height = _text_size(name, FONT_SIZE)
    if attrs:
        attrs_width, _attrs_height = _text_size(attrs, FONT_SIZE - 1.5)
        return max(width, attrs_width), FONT_SIZE * 2.3
    return width, max(height, FONT_SIZE * 1.2)


def _text_size(text: str, size: float) -> tuple[float, float]:
    width, height, _ = _TEXT.get_text_width_height_descent(text, FontProperties(size=size), ismath=False)
    return float(width), float(height)


_TEXT = TextToPath()
