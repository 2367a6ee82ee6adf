"""Equations (text, LaTeX, Markdown) and Graphviz DOT of cell graphs, and the format doc's examples."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cells import OPS, CellGraph, canonical_hash, library, random_cell, to_dot, to_equations
from cells._nasbench import from_nasbench_recipe
from cells._reference import ReferenceCell
from cells._render import equation_legend, render_svg, to_markdown, weight_letter

DOC = Path(__file__).resolve().parents[1] / "docs" / "cell-format.md"

LSTM_TEXT = """\
i = σ(W_i x + U_i h + b_i)
f = σ(W_f x + U_f h + b_f)
g = tanh(W_g x + U_g h + b_g)
o = σ(W_o x + U_o h + b_o)
c' = f ⊙ c + i ⊙ g
h' = o ⊙ tanh(c')"""

LSTM_LATEX = r"""i &= \sigma(W_{i} x + U_{i} h + b_{i}) \\
f &= \sigma(W_{f} x + U_{f} h + b_{f}) \\
g &= \tanh(W_{g} x + U_{g} h + b_{g}) \\
o &= \sigma(W_{o} x + U_{o} h + b_{o}) \\
c' &= f \odot c + i \odot g \\
h' &= o \odot \tanh(c')"""


def cell(nodes: list[dict[str, Any]], outputs: list[str], num_states: int = 1) -> CellGraph:
    return CellGraph.parse({"name": "t", "num_states": num_states, "nodes": nodes, "outputs": outputs})


def one_node(
    op: str, inputs: list[str], attrs: dict[str, float] | None = None, num_states: int = 1
) -> CellGraph:
    outputs = ["a", *(f"h_prev_{i}" for i in range(1, num_states))]
    return cell([{"name": "a", "op": op, "inputs": inputs, "attrs": attrs or {}}], outputs, num_states)


# --- the textbook cells ---------------------------------------------------------------------


def test_lstm_reads_like_the_textbook() -> None:
    assert to_equations(library.get("lstm")) == LSTM_TEXT
    assert to_equations(library.get("lstm"), "latex") == LSTM_LATEX


def test_forget_bias_init_is_noted() -> None:
    lines = to_equations(library.get("lstm-b1")).splitlines()
    assert lines[1] == "f = σ(W_f x + U_f h + b_f)    (init: b_f = 1)"
    assert r"f &= \sigma(W_{f} x + U_{f} h + b_{f}) && \text{init: } b_{f} = 1" in to_equations(
        library.get("lstm-b1"), "latex"
    )


def test_gru_and_mut_cells_render_sensibly() -> None:
    gru = to_equations(library.get("gru")).splitlines()
    assert gru[0] == "r = σ(W_r x + U_r h + b_r)"
    assert gru[1] == "z = σ(W_z x + U_z h + b_z)"
    assert gru[2] == "n = tanh(W_{n_x} x + b_{n_x} + r ⊙ (U_{n_h} h + b_{n_h}))"
    assert gru[3] == "h' = z ⊙ h + (1 − z) ⊙ n"
    # r ⊙ h is a node of this step: its weight is V, not the recurrent U.
    assert "n = tanh(W_n x + V_n (r ⊙ h) + b_n)" in to_equations(library.get("gru-cho"))

    mut1 = to_equations(library.get("mut1"))
    assert "z = σ(W_z x + b_z)" in mut1
    assert "r = σ(W_r x + U_r h + b_r)" in mut1
    assert "n = tanh(V_n (r ⊙ h) + b_n + tanh(x))" in mut1
    assert mut1.endswith("h' = z ⊙ n + (1 − z) ⊙ h")
    assert "r = σ(x + U_r h + b_r)" in to_equations(library.get("mut2"))
    assert "z = σ(W_z x + V_z tanh(h) + b_z)" in to_equations(library.get("mut3"))


def test_variants_render_their_difference() -> None:
    assert "c' = c + i ⊙ g" in to_equations(library.get("lstm-nofg"))
    assert "c' = f ⊙ c + g" in to_equations(library.get("lstm-noig"))
    assert to_equations(library.get("lstm-noog")).endswith("h' = tanh(c')")
    assert "c' = f ⊙ c + (1 − f) ⊙ g" in to_equations(library.get("cifg"))
    peephole = to_equations(library.get("lstm-peephole")).splitlines()
    assert "i = σ(W_i x + U_i h + b_i + d_i ⊙ c)" in peephole
    # o sees the new cell state, so its line comes after c'.
    assert peephole[-3:] == [
        "c' = f ⊙ c + i ⊙ g",
        "o = σ(W_o x + U_o h + b_o + d_o ⊙ c')",
        "h' = o ⊙ tanh(c')",
    ]
    assert to_equations(library.get("tanh")) == "h' = tanh(W_h x + U_h h + b_h)"


@pytest.mark.parametrize("name", library.names())
def test_every_library_cell_renders_in_every_format(name: str) -> None:
    graph = library.get(name)
    text = to_equations(graph).splitlines()
    latex = to_equations(graph, "latex").split(" \\\\\n")
    assert len(text) == len(latex) >= graph.num_states
    assert all(" = " in line for line in text) and all(" &= " in line for line in latex)
    new_states = {symbol + "'" for symbol in "hcm"[: graph.num_states]}
    assert new_states <= {line.split(" = ")[0] for line in text}
    assert "\\begin{aligned}" in to_markdown(graph) and f"### {name}" in to_markdown(graph)
    check_dot(graph, to_dot(graph))


def test_format_is_checked() -> None:
    with pytest.raises(ValueError, match="format"):
        to_equations(library.get("lstm"), "html")  # type: ignore[arg-type]


# --- every op ---------------------------------------------------------------------------------

# op -> (graph, text of h', LaTeX of h')
OP_CASES: dict[str, tuple[CellGraph, str, str]] = {
    "linear": (one_node("linear", ["x", "h_prev_0"]), "W_h x + U_h h + b_h", r"W_{h} x + U_{h} h + b_{h}"),
    "add": (one_node("add", ["x", "h_prev_0"]), "x + h", "x + h"),
    "sub": (one_node("sub", ["x", "h_prev_0"]), "x − h", "x - h"),
    "mul": (one_node("mul", ["x", "h_prev_0"]), "x ⊙ h", r"x \odot h"),
    "blend": (
        one_node("blend", ["h_prev_1", "x", "h_prev_0"], num_states=2),
        "c ⊙ x + (1 − c) ⊙ h",
        r"c \odot x + (1 - c) \odot h",
    ),
    "diag": (one_node("diag", ["h_prev_0"]), "d_h ⊙ h", r"d_{h} \odot h"),
    "tanh": (one_node("tanh", ["h_prev_0"]), "tanh(h)", r"\tanh(h)"),
    "sigmoid": (one_node("sigmoid", ["h_prev_0"]), "σ(h)", r"\sigma(h)"),
    "relu": (one_node("relu", ["h_prev_0"]), "ReLU(h)", r"\operatorname{ReLU}(h)"),
    "leaky_relu": (
        one_node("leaky_relu", ["h_prev_0"], {"negative_slope": 0.2}),
        "LeakyReLU_{0.2}(h)",
        r"\operatorname{LeakyReLU}_{0.2}(h)",
    ),
    "identity": (one_node("identity", ["h_prev_0"]), "h", "h"),
    "one_minus": (one_node("one_minus", ["h_prev_0"]), "1 − h", "1 - h"),
    "scale": (one_node("scale", ["h_prev_0"], {"alpha": 0.9}), "0.9·h", r"0.9 \cdot h"),
    "shift": (one_node("shift", ["h_prev_0"], {"beta": 0.5}), "h + 0.5", "h + 0.5"),
}


def test_op_cases_cover_the_op_set() -> None:
    assert set(OP_CASES) == set(OPS)


@pytest.mark.parametrize("op", list(OP_CASES))
def test_every_op_renders(op: str) -> None:
    graph, text, latex = OP_CASES[op]
    assert to_equations(graph).splitlines()[0] == f"h' = {text}"
    assert to_equations(graph, "latex").split(" \\\\\n")[0] == f"h' &= {latex}"
    check_dot(graph, to_dot(graph))


def test_attribute_variants() -> None:
    assert to_equations(one_node("leaky_relu", ["h_prev_0"])) == "h' = LeakyReLU(h)"
    assert to_equations(one_node("shift", ["h_prev_0"], {"beta": -0.5})) == "h' = h − 0.5"
    assert to_equations(one_node("scale", ["h_prev_0"], {"alpha": -2.0})) == "h' = -2·h"
    assert (
        to_equations(one_node("linear", ["h_prev_0"], {"bias_init": -3.0}))
        == "h' = U_h h + b_h    (init: b_h = -3)"
    )


def test_parentheses_follow_precedence() -> None:
    def render(op: str, inner_op: str, first: bool) -> str:
        inner = {"name": "s", "op": inner_op, "inputs": ["x", "h_prev_0"]}
        args = ["s", "h_prev_0"] if first else ["h_prev_0", "s"]
        outer = {"name": "a", "op": op, "inputs": args if OPS[op].max_arity != 1 else ["s"]}
        return to_equations(cell([inner, outer], ["a"]))

    assert render("mul", "add", True) == "h' = (x + h) ⊙ h"
    assert render("add", "mul", True) == "h' = x ⊙ h + h"
    assert render("sub", "add", False) == "h' = h − (x + h)"
    assert render("sub", "sub", True) == "h' = x − h − h"
    assert render("one_minus", "add", True) == "h' = 1 − (x + h)"
    assert render("one_minus", "mul", True) == "h' = 1 − x ⊙ h"
    assert render("tanh", "add", True) == "h' = tanh(x + h)"
    shift = cell(
        [
            {"name": "s", "op": "mul", "inputs": ["x", "h_prev_0"]},
            {"name": "a", "op": "shift", "inputs": ["s"], "attrs": {"beta": 1}},
        ],
        ["a"],
    )
    assert to_equations(shift) == "h' = x ⊙ h + 1"


def test_shared_nodes_get_their_own_line_and_aliases() -> None:
    graph = cell(
        [
            {"name": "s", "op": "add", "inputs": ["x", "h_prev_0"]},
            {"name": "a", "op": "mul", "inputs": ["s", "s"]},
        ],
        ["a", "a", "h_prev_2"],
        num_states=3,
    )
    assert to_equations(graph) == "s = x + h\nh' = s ⊙ s\nc' = h'\nm' = m"


def test_node_names_never_collide_with_state_symbols() -> None:
    graph = cell(
        [
            {"name": "h", "op": "linear", "inputs": ["x", "h_prev_0"]},
            {"name": "c", "op": "sigmoid", "inputs": ["h"]},
            {"name": "a", "op": "mul", "inputs": ["c", "h_prev_1"]},
        ],
        ["a", "c"],
        num_states=2,
    )
    assert to_equations(graph) == "c' = σ(W_c x + U_c h + b_c)\nh' = c' ⊙ c"
    clash = cell(
        [
            {"name": "h", "op": "sigmoid", "inputs": ["x"]},
            {"name": "a", "op": "mul", "inputs": ["h", "h", "h_prev_0"]},
        ],
        ["a"],
    )
    assert to_equations(clash) == "h_1 = σ(x)\nh' = h_1 ⊙ h_1 ⊙ h"


def test_latex_names_read_as_subscripted_identifiers() -> None:
    graph = cell(
        [
            {"name": "node_1", "op": "linear", "inputs": ["x"]},
            {"name": "gate", "op": "mul", "inputs": ["node_1", "node_1"]},
            {"name": "_", "op": "mul", "inputs": ["gate", "gate"]},
            {"name": "a_", "op": "add", "inputs": ["_", "_", "h_prev_0"]},
        ],
        ["a_"],
    )
    assert (
        to_equations(graph)
        == "node_1 = W_{node_1} x + b_{node_1}\ngate = node_1 ⊙ node_1\n_ = gate ⊙ gate\nh' = _ + _ + h"
    )
    assert to_equations(graph, "latex").split(" \\\\\n") == [
        r"\mathit{node}_{\mathrm{1}} &= W_{\mathit{node}_{\mathrm{1}}} x + b_{\mathit{node}_{\mathrm{1}}}",
        r"\mathit{gate} &= \mathit{node}_{\mathrm{1}} \odot \mathit{node}_{\mathrm{1}}",
        r"\_ &= \mathit{gate} \odot \mathit{gate}",
        r"h' &= \_ + \_ + h",
    ]


def test_markdown_wraps_latex_for_mlflow() -> None:
    md = to_markdown(library.get("lstm"))
    assert md == (
        "### lstm\n\nLSTM (PyTorch LSTMCell layout).\n\n$$\n\\begin{aligned}\n"
        + LSTM_LATEX
        + "\n\\end{aligned}\n$$\n\n"
        + "W: weights on the input x, U: on a previous state, b: biases; h', c' are the new h, c\n"
    )


# --- weight letters and the legend ----------------------------------------------------------


def test_a_weight_is_lettered_by_what_it_reads() -> None:
    """W on x, U on a previous state, V on a node of this step: ``i ⊙ g`` is no recurrent input."""
    graph = cell(
        [
            {"name": "i_lin", "op": "linear", "inputs": ["x", "h_prev_0"]},
            {"name": "i", "op": "sigmoid", "inputs": ["i_lin"]},
            {"name": "g_lin", "op": "linear", "inputs": ["x", "h_prev_0"]},
            {"name": "g", "op": "tanh", "inputs": ["g_lin"]},
            {"name": "ig", "op": "mul", "inputs": ["i", "g"]},
            {"name": "c_new", "op": "linear", "inputs": ["ig", "h_prev_1", "x", "h_prev_0"]},
            {"name": "h_new", "op": "tanh", "inputs": ["c_new"]},
        ],
        ["h_new", "c_new"],
        num_states=2,
    )
    assert to_equations(graph).splitlines()[2] == "c' = W_c x + V_c (i ⊙ g) + U_{c,c} c + U_{c,h} h + b_c"
    assert r"V_{c} (i \odot g)" in to_equations(graph, "latex")
    assert equation_legend(graph) == (
        "W: weights on the input x, U: on a previous state, V: on a node of this step, b: biases; "
        "h', c' are the new h, c"
    )


def test_identity_is_looked_through() -> None:
    graph = cell(
        [
            {"name": "hh", "op": "identity", "inputs": ["h_prev_0"]},
            {"name": "xx", "op": "identity", "inputs": ["x"]},
            {"name": "a", "op": "linear", "inputs": ["xx", "hh"]},
        ],
        ["a"],
    )
    assert [weight_letter(graph, name) for name in ("xx", "hh", "a")] == ["W", "U", "V"]
    assert to_equations(graph) == "h' = W_h x + U_h h + b_h"


def test_the_legend_names_only_what_the_cell_has() -> None:
    assert equation_legend(one_node("tanh", ["h_prev_0"])) == "h' is the new h"
    assert (
        equation_legend(one_node("linear", ["h_prev_0"]))
        == "U: weights on a previous state, b: biases; h' is the new h"
    )
    peephole = equation_legend(library.get("lstm-peephole"))
    assert "d: diagonal weights" in peephole and "V:" not in peephole
    assert "V: on a node of this step" in equation_legend(library.get("gru-cho"))
    assert to_markdown(library.get("gru-cho")).endswith(equation_legend(library.get("gru-cho")) + "\n")


# --- DOT -----------------------------------------------------------------------------------------


def _strip_dot_strings(dot: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', dot)


def check_dot(graph: CellGraph, dot: str, run_dot: bool = True) -> None:
    """Balanced braces outside strings, every node, input and output declared and wired."""
    bare = _strip_dot_strings(dot)
    assert bare.count("{") == bare.count("}") and bare.lstrip().startswith("digraph")
    assert dot.rstrip().endswith("}")
    quote = lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'  # noqa: E731
    for name in graph.input_names:
        assert f"{quote('in:' + name)} [label=" in dot
    for node in graph.nodes:
        assert f"{quote('n:' + node.name)} [label=" in dot
        for src in node.inputs:
            ref = quote(("in:" if src in graph.input_names else "n:") + src)
            assert f"{ref} -> {quote('n:' + node.name)}" in dot
    for i in range(graph.num_states):
        assert f'"out:{i}" [label="h_new_{i}' in dot
    # Inputs, ops and outputs look different.
    assert 'shape=box, style="rounded,filled"' in dot and "peripheries=2" in dot
    if run_dot and shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg"], input=dot, text=True, capture_output=True, check=True, timeout=30)


def test_dot_labels_operand_positions_of_non_commutative_ops() -> None:
    dot = to_dot(library.get("gru"))
    assert '"n:z" -> "n:h_new" [label="0"];' in dot
    assert '"in:h_prev_0" -> "n:h_new" [label="1"];' in dot
    assert '"n:n" -> "n:h_new" [label="2"];' in dot
    assert '"n:r" -> "n:rn";' in dot  # mul is commutative: no position
    assert '"n:h_new" -> "out:0" [style=dashed];' in dot
    assert 'label="f_lin\\nlinear\\nbias_init=1"' in to_dot(library.get("lstm-b1"))


def test_svg_is_drawn_without_graphviz() -> None:
    svg = render_svg(library.get("lstm"))  # matplotlib's drawing, Graphviz installed or not
    assert svg.startswith("<?xml") and "<svg" in svg and svg.rstrip().endswith("</svg>")


# --- random graphs ---------------------------------------------------------------------------------

PARAMETER_FREE = [op for op in OPS if op not in ("linear", "diag")]
ATTR_VALUES = {"negative_slope": [0.0, 0.2, 1.0], "alpha": [-2.0, 0.5, 1.5], "beta": [-1.0, 0.25, 3.0]}


@st.composite
def graphs(draw: st.DrawFn, ops: list[str], names: st.SearchStrategy[str]) -> CellGraph:
    k = draw(st.integers(1, 3))
    available = ["x", *(f"h_prev_{i}" for i in range(k))]
    used_names: set[str] = set()
    nodes = []
    for _ in range(draw(st.integers(1, 7))):
        op = draw(st.sampled_from(ops))
        spec = OPS[op]
        high = min(spec.max_arity or 3, 3)
        if op == "linear":
            inputs = draw(st.lists(st.sampled_from(available), min_size=1, max_size=high, unique=True))
        else:
            arity = draw(st.integers(spec.min_arity, high))
            inputs = [draw(st.sampled_from(available)) for _ in range(arity)]
        attrs = {}
        for key in spec.attrs:
            if key == "bias_init":
                if draw(st.booleans()):
                    attrs[key] = draw(st.sampled_from([-1.0, 1.0, 2.5]))
            elif draw(st.booleans()):
                attrs[key] = draw(st.sampled_from(ATTR_VALUES[key]))
        name = draw(names)
        if name in used_names:
            name = f"u{len(used_names)}"  # cheaper than a filter, and still unique
        used_names.add(name)
        nodes.append({"name": name, "op": op, "inputs": inputs, "attrs": attrs})
        available.append(name)
    outputs = [nodes[-1]["name"], *(draw(st.sampled_from(available)) for _ in range(k - 1))]
    return CellGraph.parse({"name": "random", "num_states": k, "nodes": nodes, "outputs": outputs})


# Names that clash with how states read (h, c, m) or with renamed clashes (h_1), and odd identifiers.
TRICKY_NAME = st.sampled_from(
    ["h", "c", "m", "h_1", "x_1", "h_new_0", "_", "a_", "B2", "i_lin", "W", "sigma"]
)
PLAIN_NAME = st.sampled_from([f"n{i}" for i in range(10)])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(list(OPS), st.one_of(TRICKY_NAME, PLAIN_NAME)))
def test_rendering_random_graphs_never_raises(graph: CellGraph) -> None:
    text = to_equations(graph)
    latex = to_equations(graph, "latex")
    assert len(text.splitlines()) >= graph.num_states
    assert len(latex.split(" \\\\\n")) == len(text.splitlines())
    to_markdown(graph)
    check_dot(graph, to_dot(graph), run_dot=False)


def _evaluate_text(text: str, env: dict[str, float]) -> dict[str, float]:
    """Run the plain-text equations as Python on scalars."""
    namespace: dict[str, Any] = {
        "tanh": math.tanh,
        "sig": lambda v: 1 / (1 + math.exp(-v)),
        "relu": lambda v: max(v, 0.0),
        "lrelu": lambda slope, v: v if v > 0 else slope * v,
        **env,
    }
    for line in text.splitlines():
        py = re.sub(r"LeakyReLU_\{([^}]*)\}\(", r"lrelu(\1, ", line)
        py = py.replace("LeakyReLU(", "lrelu(0.01, ").replace("ReLU(", "relu(").replace("σ(", "sig(")
        py = py.replace("⊙", "*").replace("·", "*").replace("−", "-").replace("'", "_new")
        lhs, rhs = py.split(" = ", 1)
        namespace[lhs] = eval(rhs, namespace)
    return namespace


@settings(max_examples=150, deadline=None)
@given(graphs(PARAMETER_FREE, PLAIN_NAME), st.lists(st.floats(-2, 2), min_size=4, max_size=4))
def test_text_equations_compute_what_the_cell_computes(graph: CellGraph, values: list[float]) -> None:
    """Parentheses, inlining and naming are right: the text, run as Python, matches the reference cell."""
    k = graph.num_states
    x = torch.tensor([[values[0]]], dtype=torch.float64)
    states = tuple(torch.tensor([[v]], dtype=torch.float64) for v in values[1 : k + 1])
    expected = ReferenceCell(graph, 1, 1).double()(x, states)
    env = {"x": values[0], **{s: v for s, v in zip("hcm", values[1 : k + 1], strict=False)}}
    namespace = _evaluate_text(to_equations(graph), env)
    for i, symbol in enumerate("hcm"[:k]):
        assert namespace[symbol + "_new"] == pytest.approx(expected[i].item(), rel=1e-9, abs=1e-9)


@settings(max_examples=150, deadline=None)
@given(graphs(list(OPS), PLAIN_NAME))
def test_each_weight_letter_counts_the_operands_of_its_kind(graph: CellGraph) -> None:
    """The text has as many W (U, V) weights as linears have operands reading x (a previous
    state, a node of this step), and the legend names exactly the letters used."""
    text = to_equations(graph)
    for letter in "WUV":
        expected = sum(
            weight_letter(graph, src) == letter
            for node in graph.nodes
            if node.op == "linear"
            for src in node.inputs
        )
        assert len(re.findall(rf"(?<![A-Za-z0-9_]){letter}_", text)) == expected
        assert (f"{letter}: " in equation_legend(graph)) == (expected > 0)


def test_random_cells_render() -> None:
    try:
        cells = [random_cell(np.random.default_rng(seed)) for seed in range(30)]
    except NotImplementedError:
        pytest.skip("cells.random_cell is not implemented yet")
    for graph in cells:
        assert len(to_equations(graph).splitlines()) >= graph.num_states
        to_equations(graph, "latex")
        check_dot(graph, to_dot(graph), run_dot=False)


# --- the format doc ---------------------------------------------------------------------------------


def _doc_blocks() -> list[tuple[str, str]]:
    if not DOC.is_file():
        pytest.skip(f"{DOC} is missing")
    return re.findall(r"^```([^\n]*)\n(.*?)^```$", DOC.read_text(), flags=re.S | re.M)


def test_every_json_example_in_the_doc_is_valid() -> None:
    blocks = _doc_blocks()
    cells_seen, recipes_seen = 0, 0
    last_cell: CellGraph | None = None
    for info, body in blocks:
        if info == "json":
            last_cell = CellGraph.parse(json.loads(body))
            cells_seen += 1
        elif info == "json recipe":
            graph = from_nasbench_recipe(json.loads(body))
            assert canonical_hash(graph) == canonical_hash(library.get("gru-cho"))
            recipes_seen += 1
        elif info == "text":
            # Rendered equations shown in the doc are those of the cell just above them, with
            # their legend (as `cellsearch cells show` prints them).
            assert last_cell is not None
            assert body.rstrip("\n") == to_equations(last_cell) + "\n" + equation_legend(last_cell)
        else:
            raise AssertionError(f"unexpected code block {info!r} in {DOC.name}")
    assert cells_seen >= 3 and recipes_seen == 1
    # The LSTM example is the library's LSTM.
    lstm = next(CellGraph.parse(json.loads(b)) for i, b in blocks if i == "json" and '"lstm"' in b)
    assert canonical_hash(lstm) == canonical_hash(library.get("lstm"))
    assert lstm.to_json() == library.get("lstm").to_json()
