"""The cell diagram drawn with matplotlib: its layered layout (every edge goes down, nothing
overlaps), the images of the library cells, and a diagram drawn with Graphviz absent."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cells import CellGraph, diagram_svg, draw_diagram, library, random_cell
from cells._diagram import _measure
from cells._diagram_layout import Layout, diagram_layout, node_layers

REPO = Path(__file__).resolve().parents[1]


def fixed_measure(text: str) -> tuple[float, float]:
    lines = text.split("\n")
    return 6.0 * max(len(line) for line in lines), 12.0 * len(lines)


def check_layout(graph: CellGraph, layout: Layout) -> None:
    """Layers by longest path, every edge downwards, no two boxes of a layer overlapping."""
    layer = node_layers(graph)
    inputs = set(graph.input_names)
    bottom = max(layer.values())
    assert {layer[f"in:{name}"] for name in graph.input_names} == {0}
    assert {layer[f"out:{i}"] for i in range(graph.num_states)} == {bottom}
    for node in graph.nodes:
        reads = [layer[f"in:{s}" if s in inputs else f"n:{s}"] for s in node.inputs]
        assert layer[f"n:{node.name}"] == 1 + max(reads), node.name
        assert 0 < layer[f"n:{node.name}"] < bottom
    boxes = layout.boxes
    assert {k: b.layer for k, b in boxes.items() if b.kind != "lane"} == layer
    wires = sum(len(n.inputs) for n in graph.nodes) + graph.num_states
    assert len(layout.edges) == wires
    for edge in layout.edges:
        assert boxes[edge.target].layer > boxes[edge.source].layer
        ys = [y for _, y in edge.points]
        assert ys[0] == boxes[edge.source].bottom and ys[-1] == boxes[edge.target].top
        assert all(a < b for a, b in itertools.pairwise(ys)), edge  # always downwards
    by_layer: dict[int, list[tuple[float, float]]] = {}
    for box in boxes.values():
        by_layer.setdefault(box.layer, []).append((box.x - box.width / 2, box.x + box.width / 2))
        assert box.x - box.width / 2 >= 0 and box.x + box.width / 2 <= layout.width
        assert box.top >= 0 and box.bottom <= layout.height
    for spans in by_layer.values():
        spans.sort()
        assert all(right < left for (_, right), (left, _) in itertools.pairwise(spans)), spans
    tops = {b.layer: (b.top, b.bottom) for b in boxes.values() if b.kind != "lane"}
    for row in range(bottom):  # layers do not overlap vertically either
        lower = [b.top for b in boxes.values() if b.layer == row + 1]
        upper = [b.bottom for b in boxes.values() if b.layer == row]
        assert max(upper) < min(lower), (row, tops)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.integers(7, 30))
def test_random_cells_are_laid_out_downwards_without_overlaps(seed: int, states: int, nodes: int) -> None:
    graph = random_cell(np.random.default_rng(seed), num_states=states, num_nodes=nodes)
    check_layout(graph, diagram_layout(graph, fixed_measure))


@pytest.mark.parametrize("name", library.names())
def test_library_cells_layout(name: str) -> None:
    graph = library.get(name)
    check_layout(graph, diagram_layout(graph, _measure))


def test_layers_follow_the_longest_path() -> None:
    layer = node_layers(library.get("lstm"))
    assert layer["in:x"] == layer["in:h_prev_1"] == 0
    assert layer["n:i_lin"] == 1 and layer["n:i"] == 2 and layer["n:ig"] == 3
    # fc reads c (layer 0) and f (layer 2): it sits below f, not below c.
    assert layer["n:fc"] == 3 and layer["n:c_new"] == 4 and layer["n:h_new"] == 6
    assert layer["out:0"] == layer["out:1"] == 7


def test_an_output_that_is_an_input_reaches_the_bottom() -> None:
    graph = CellGraph.parse(
        {
            "num_states": 2,
            "nodes": [{"name": "a", "op": "linear", "inputs": ["x", "h_prev_0", "h_prev_1"]}],
            "outputs": ["a", "h_prev_1"],
        }
    )
    layout = diagram_layout(graph, fixed_measure)
    check_layout(graph, layout)
    [carry] = [e for e in layout.edges if e.target == "out:1"]
    assert carry.source == "in:h_prev_1" and carry.dashed and len(carry.points) == 4  # through one lane


def test_positional_operands_are_labelled() -> None:
    graph = CellGraph.parse(
        {
            "num_states": 1,
            "nodes": [
                {"name": "a", "op": "linear", "inputs": ["x", "h_prev_0"]},
                {"name": "d", "op": "sub", "inputs": ["h_prev_0", "a"]},
            ],
            "outputs": ["d"],
        }
    )
    labels = {(e.source, e.label) for e in diagram_layout(graph, fixed_measure).edges if e.target == "n:d"}
    assert labels == {("in:h_prev_0", "0"), ("n:a", "1")}


@pytest.mark.parametrize("name", library.names())
def test_library_cell_png(name: str, tmp_path: Path) -> None:
    graph = library.get(name)
    path = draw_diagram(graph, tmp_path / f"{name}.png")
    assert path == tmp_path / f"{name}.png"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"))
    layers = max(node_layers(graph).values()) + 1
    assert 150 <= width <= 2500 and 60 * layers <= height <= 250 * layers, (width, height)
    # Drawn, not blank: the inputs' blue and the new states' green fills are there.
    colours = {tuple(p) for p in pixels.reshape(-1, 3)[:: max(1, pixels.size // 3 // 200_000)]}
    assert (0xDB, 0xE9, 0xF6) in colours and (0xE2, 0xF0, 0xD9) in colours
    assert path.read_bytes() == draw_diagram(graph, tmp_path / "again.png").read_bytes()  # deterministic


def test_svg_by_suffix(tmp_path: Path) -> None:
    path = draw_diagram(library.get("gru"), str(tmp_path / "gru.SVG"))
    root = ET.fromstring(path.read_bytes())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert path.read_text() == diagram_svg(library.get("gru"))  # and the same every time
    with pytest.raises(ValueError, match=r"path: expected a \.png or \.svg file, got 'gru.pdf'"):
        draw_diagram(library.get("gru"), tmp_path / "gru.pdf")


def test_hostile_text_is_drawn_as_text(tmp_path: Path) -> None:
    """A name with dollar signs is not read as mathtext (which would fail or change it)."""
    graph = library.get("tanh").with_name("$\\frac{a}{$ " + "long " * 40)
    draw_diagram(graph, tmp_path / "odd.png")
    assert "$" not in diagram_layout(graph, _measure).boxes["n:a"].label


DRAWERS = {
    "cells": "from cells import draw_diagram\ndraw_diagram(library.get('lstm'), out)\n",
    # what the MLflow writer logs as an architecture run's cell.png
    "mlflow artifact": "from dashboards._run_pages import diagram_png\n"
    "assert diagram_png(library.get('lstm'), out.parent) == 'cell.png' == out.name\n",
}


@pytest.mark.parametrize("drawer", DRAWERS)
def test_diagram_without_graphviz(tmp_path: Path, drawer: str) -> None:
    """With no ``dot`` on PATH (PATH names only an empty folder) the diagram is still drawn."""
    empty = tmp_path / "bin"
    empty.mkdir()
    code = (
        "import shutil, sys\nfrom pathlib import Path\n"
        "from cells import library\n"
        "assert shutil.which('dot') is None\n"
        "out = Path(sys.argv[1])\n" + DRAWERS[drawer]
    )
    env = {**os.environ, "PATH": str(empty), "PYTHONPATH": str(REPO), "MPLCONFIGDIR": str(tmp_path / "mpl")}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "cell.png")],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "cell.png") as image:
        assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 600


def test_cells_draw_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cellsearch._cli import app

    runner = CliRunner()
    done = runner.invoke(app, ["cells", "draw", "lstm", str(tmp_path / "lstm.svg")])
    assert done.exit_code == 0 and done.output == f"wrote {tmp_path / 'lstm.svg'}\n"
    assert (tmp_path / "lstm.svg").read_text() == diagram_svg(library.get("lstm"))
    bad = runner.invoke(app, ["cells", "draw", "lstm", str(tmp_path / "lstm.jpg")])
    assert bad.exit_code == 2 and "OUTPUT: expected a .png or .svg file, got 'lstm.jpg'" in bad.output
    missing = runner.invoke(app, ["cells", "draw", "lstm", str(tmp_path / "no" / "lstm.png")])
    assert missing.exit_code == 1 and "OUTPUT: cannot write" in missing.output
    assert runner.invoke(app, ["cells", "draw", "no-such-cell", str(tmp_path / "x.png")]).exit_code == 1
