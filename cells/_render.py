"""Rendering of cell graphs: equations (plain text, LaTeX, Markdown), Graphviz DOT and SVG.

Equations read like a textbook: gates and other nodes used more than once get their own
line, single-use plumbing (the ``linear`` inside a sigmoid, a product feeding a sum) is
written inline. States are ``h``, ``c``, ``m`` (previous) and ``h'``, ``c'``, ``m'`` (new).
A weight is ``W`` on the input ``x``, ``U`` on a previous state, ``V`` on a node of the same
step (:func:`weight_letter`); :func:`equation_legend` says so in a line under the equations.

Example:
    >>> from cells import library
    >>> print(to_equations(library.get("lstm")))
    i = σ(W_i x + U_i h + b_i)
    f = σ(W_f x + U_f h + b_f)
    g = tanh(W_g x + U_g h + b_g)
    o = σ(W_o x + U_o h + b_o)
    c' = f ⊙ c + i ⊙ g
    h' = o ⊙ tanh(c')
"""

from __future__ import annotations

import heapq
from typing import Literal

from cells._graph import INPUT_X, CellGraph, Node, state_input, state_output
from cells._ops import OPS

STATE_SYMBOLS: tuple[str, ...] = ("h", "c", "m")
"""How ``h_prev_0``, ``h_prev_1``, ``h_prev_2`` read in equations (new states get a prime)."""

# Operator precedence of a rendered expression: a sum binds loosest, a name or call tightest.
_SUM, _PRODUCT, _ATOM = 1, 2, 3
_ACTIVATIONS = frozenset({"tanh", "sigmoid", "relu", "leaky_relu"})
_PARAMETRIC = frozenset({"linear", "diag"})
# The most nodes one written expression nests; deeper, a node gets its own line. Real cells
# inline two or three levels (a product inside a sum, a linear inside an activation).
_MAX_INLINE_DEPTH = 8

_LATEX_ESCAPES = {
    "\\": r"\backslash{}",
    "{": r"\{",
    "}": r"\}",
    "_": r"\_",
    "$": r"\$",
    "&": r"\&",
    "#": r"\#",
    "%": r"\%",
    "^": r"\hat{}",
    "~": r"\sim{}",
    " ": r"\ ",
    "\n": r"\ ",
    "\r": r"\ ",
    "\t": r"\ ",
}


def to_equations(graph: CellGraph, format: Literal["text", "latex"] = "text") -> str:
    """The cell as equations, one per line.

    ``format="latex"`` gives ``align*``-ready lines (``lhs &= rhs``, joined by ``\\\\``);
    wrap them in ``\\begin{align*}...\\end{align*}``, or use :func:`to_markdown`.

    Example:
        >>> from cells import library
        >>> print(to_equations(library.get("tanh"), "latex"))
        h' &= \\tanh(W_{h} x + U_{h} h + b_{h})
    """
    if format not in ("text", "latex"):
        raise ValueError(f"format: expected 'text' or 'latex', got {format!r}")
    lines = _Equations(graph, latex=format == "latex").lines()
    return " \\\\\n".join(lines) if format == "latex" else "\n".join(lines)


def weight_letter(graph: CellGraph, source: str) -> Literal["W", "U", "V"]:
    """The letter of a ``linear``'s weight on ``source``: ``W`` when it reads the input ``x``,
    ``U`` a previous state (``h_prev_i``), ``V`` a node of the same step (an ``identity`` is
    looked through: it reads what its input reads).

    Example:
        >>> from cells import library
        >>> gru = library.get("gru-cho")
        >>> [weight_letter(gru, src) for src in ("x", "h_prev_0", "rh")]
        ['W', 'U', 'V']
    """
    nodes = graph.node_map
    while source in nodes and nodes[source].op == "identity":
        source = nodes[source].inputs[0]
    if source == INPUT_X:
        return "W"
    return "V" if source in nodes else "U"


def equation_legend(graph: CellGraph) -> str:
    """The line under a cell's equations saying what its letters are: the weights it has
    (``W`` on the input, ``U`` on a previous state, ``V`` on a node of the same step), biases,
    diagonal weights, and its states.

    Example:
        >>> from cells import library
        >>> print(equation_legend(library.get("lstm")))
        W: weights on the input x, U: on a previous state, b: biases; h', c' are the new h, c
    """
    letters = {
        weight_letter(graph, src) for node in graph.nodes if node.op == "linear" for src in node.inputs
    }
    used = [(letter, what) for letter, what in _LEGEND_WEIGHTS if letter in letters]
    parts = [f"{letter}: {'weights ' if i == 0 else ''}on {what}" for i, (letter, what) in enumerate(used)]
    if any(node.op == "linear" for node in graph.nodes):
        parts.append("b: biases")
    if any(node.op == "diag" for node in graph.nodes):
        parts.append("d: diagonal weights")
    symbols = _state_symbols(graph.num_states)
    new = ", ".join(f"{s}'" for s in symbols)
    states = f"{new} {'is' if len(symbols) == 1 else 'are'} the new {', '.join(symbols)}"
    return "; ".join(filter(None, [", ".join(parts), states]))


_LEGEND_WEIGHTS = (("W", "the input x"), ("U", "a previous state"), ("V", "a node of this step"))
"""The weight letters of :func:`weight_letter`, in the legend's order, with what each reads."""


def to_markdown(graph: CellGraph) -> str:
    """A Markdown page for the cell: name, description, its equations as display math and
    their legend (:func:`equation_legend`).

    The math uses ``aligned`` inside ``$$`` so MathJax and KaTeX (MLflow, GitHub) render it.

    Example:
        >>> from cells import library
        >>> print(to_markdown(library.get("tanh")))
        ### tanh
        <BLANKLINE>
        Elman RNN: h' = tanh(W x + U h + b).
        <BLANKLINE>
        $$
        \\begin{aligned}
        h' &= \\tanh(W_{h} x + U_{h} h + b_{h})
        \\end{aligned}
        $$
        <BLANKLINE>
        W: weights on the input x, U: on a previous state, b: biases; h' is the new h
        <BLANKLINE>
    """
    parts = [f"### {graph.name}", ""]
    if graph.description:
        parts += [graph.description, ""]
    parts += ["$$", "\\begin{aligned}", to_equations(graph, "latex"), "\\end{aligned}", "$$", ""]
    parts += [equation_legend(graph), ""]
    return "\n".join(parts)


def to_dot(graph: CellGraph) -> str:
    """Graphviz DOT text of the cell.

    Inputs are blue boxes at the top, new states green double boxes at the bottom, ops
    ellipses (yellow when they hold parameters). Edges into non-commutative ops with more
    than one input (``sub``, ``blend``) are labelled with the operand position.

    Example:
        >>> from cells import library
        >>> dot = to_dot(library.get("tanh"))
        >>> dot.splitlines()[0], '"n:a" -> "n:h_new"' in dot
        ('digraph "tanh" {', True)
    """
    symbols = _state_symbols(graph.num_states)
    lines = [
        f"digraph {_dot_quote(graph.name)} {{",
        "  rankdir=TB;",
        f"  label={_dot_quote(graph.name)}; labelloc=t;",
        '  graph [fontname="Helvetica"];',
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    input_ids = []
    for name in graph.input_names:
        label = name if name == INPUT_X else f"{name} ({symbols[int(name.rsplit('_', 1)[1])]})"
        input_ids.append(_dot_quote(f"in:{name}"))
        lines.append(
            f'  {input_ids[-1]} [label={_dot_quote(label)}, shape=box, style="rounded,filled", '
            'fillcolor="#dbe9f6"];'
        )
    for node in graph.nodes:
        label = f"{node.name}\n{node.op}" + "".join(f"\n{k}={v:g}" for k, v in sorted(node.attrs.items()))
        fill = ', style=filled, fillcolor="#fff2cc"' if node.op in _PARAMETRIC else ""
        lines.append(f"  {_dot_quote('n:' + node.name)} [label={_dot_quote(label)}, shape=ellipse{fill}];")
    output_ids = []
    for i in range(graph.num_states):
        output_ids.append(_dot_quote(f"out:{i}"))
        label = f"{state_output(i)} ({symbols[i]}')"
        lines.append(
            f"  {output_ids[-1]} [label={_dot_quote(label)}, shape=box, style=filled, "
            'fillcolor="#e2f0d9", peripheries=2];'
        )
    lines.append(f"  {{ rank=source; {'; '.join(input_ids)}; }}")
    lines.append(f"  {{ rank=sink; {'; '.join(output_ids)}; }}")

    def ref(name: str) -> str:
        return _dot_quote(f"in:{name}" if name in graph.input_names else f"n:{name}")

    for node in graph.nodes:
        positional = not OPS[node.op].commutative and len(node.inputs) > 1
        for pos, src in enumerate(node.inputs):
            attrs = f" [label={_dot_quote(str(pos))}]" if positional else ""
            lines.append(f"  {ref(src)} -> {_dot_quote('n:' + node.name)}{attrs};")
    for i, out in enumerate(graph.outputs):
        lines.append(f"  {ref(out)} -> {output_ids[i]} [style=dashed];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_svg(graph: CellGraph) -> str:
    """SVG text of the cell's diagram, drawn with matplotlib (:func:`cells.diagram_svg`).

    Graphviz is not used, so a diagram looks the same on every machine: :func:`to_dot` gives
    the DOT text for those who draw with Graphviz themselves.
    """
    from cells._diagram import diagram_svg  # matplotlib: loaded when a diagram is drawn

    return diagram_svg(graph)


def _dot_quote(text: str) -> str:
    """A DOT double-quoted string; newlines become DOT's centred line break."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "")
    return '"' + escaped.replace("\n", "\\n") + '"'


def _state_symbols(num_states: int) -> tuple[str, ...]:
    return STATE_SYMBOLS[:num_states]


class _Equations:
    """Decides which nodes get their own equation, names everything and writes the lines."""

    def __init__(self, graph: CellGraph, latex: bool) -> None:
        self.graph = graph
        self.latex = latex
        self.nodes = graph.node_map
        self.minus = "-" if latex else "\u2212"

        # Uses: every operand slot and every output. A blend's gate is written twice.
        self.uses = {name: 0 for name in (*graph.input_names, *self.nodes)}
        self.consumer: dict[str, str] = {}
        for node in graph.nodes:
            for pos, src in enumerate(node.inputs):
                self.uses[src] += 2 if node.op == "blend" and pos == 0 else 1
                self.consumer[src] = node.name
        for out in graph.outputs:
            self.uses[out] += 1

        # Display names: states by symbol, output nodes by their state, others by node name.
        symbols = _state_symbols(graph.num_states)
        self.display: dict[str, str] = {INPUT_X: "x"}
        for i, symbol in enumerate(symbols):
            self.display[state_input(i)] = symbol
        for i, out in enumerate(graph.outputs):
            if out in self.nodes and out not in self.display:
                self.display[out] = symbols[i] + "'"
        taken = set(self.display.values()) | {s + "'" for s in symbols}
        for node in graph.nodes:
            if node.name in self.display:
                continue
            name, k = node.name, 1
            while name in taken:
                name, k = f"{node.name}_{k}", k + 1
            self.display[node.name] = name
            taken.add(name)

        # A node gets its own equation if it is an output, is used more than once, or is an
        # activation around parameters (a gate or a candidate, like i, f, g, o of the LSTM).
        # So is a node whose inlined expression would nest deeper than _MAX_INLINE_DEPTH nodes:
        # a long chain reads as lines instead of one unreadable expression, and writing an
        # expression (which recurses through the inlined nodes) stays shallow.
        self.named: set[str] = set()
        holds_params: dict[str, bool] = {}
        depth: dict[str, int] = {}
        for node in graph.nodes:
            inlined = [src for src in node.inputs if src in self.nodes and src not in self.named]
            inner = any(holds_params.get(src, False) for src in inlined)
            holds_params[node.name] = node.op in _PARAMETRIC or inner
            depth[node.name] = 1 + max((depth[src] for src in inlined), default=0)
            if (
                node.name in graph.outputs
                or self.uses[node.name] > 1
                or (node.op in _ACTIVATIONS and holds_params[node.name])
                or depth[node.name] >= _MAX_INLINE_DEPTH
            ):
                self.named.add(node.name)

        # Parameter keys: a linear (diag) alone in its equation takes the equation's name.
        owner: dict[str, str] = {}
        for node in reversed(graph.nodes):
            owner[node.name] = node.name if node.name in self.named else owner[self.consumer[node.name]]
        self.key: dict[str, str] = {}
        for op in _PARAMETRIC:
            members: dict[str, list[str]] = {}
            for node in graph.nodes:
                if node.op == op:
                    members.setdefault(owner[node.name], []).append(node.name)
            for eq, names in members.items():
                for name in names:
                    self.key[name] = self.display[eq].rstrip("'") if len(names) == 1 else self.display[name]

    # -- equations ---------------------------------------------------------------------------

    def lines(self) -> list[str]:
        lines = []
        for name in self._equation_order():
            notes: list[str] = []
            rhs, _ = self._op(self.nodes[name], notes)
            lines.append(self._line(self._ident(self.display[name]), rhs, notes))
        # New states that are an input or repeat another output get an alias line.
        symbols = _state_symbols(self.graph.num_states)
        for i, out in enumerate(self.graph.outputs):
            lhs = symbols[i] + "'"
            if self.display[out] != lhs:
                lines.append(self._line(self._ident(lhs), self._ident(self.display[out]), []))
        return lines

    def _line(self, lhs: str, rhs: str, notes: list[str]) -> str:
        if self.latex:
            note = f" && \\text{{init: }} {', '.join(notes)}" if notes else ""
            return f"{lhs} &= {rhs}{note}"
        note = f"    (init: {', '.join(notes)})" if notes else ""
        return f"{lhs} = {rhs}{note}"

    def _equation_order(self) -> list[str]:
        """Topological over the named nodes; where free, gates first and new states last."""
        position = {n.name: i for i, n in enumerate(self.graph.nodes)}
        first_output: dict[str, int] = {}
        for i, out in enumerate(self.graph.outputs):
            first_output.setdefault(out, i)
        deps = {name: self._named_deps(name) for name in self.named}
        waiting = {name: len(d) for name, d in deps.items()}
        dependents: dict[str, list[str]] = {name: [] for name in self.named}
        for name, d in deps.items():
            for dep in d:
                dependents[dep].append(name)

        def priority(name: str) -> tuple[int, int, int]:
            return (name in first_output, first_output.get(name, 0), position[name])

        ready = [(priority(n), n) for n, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            _, name = heapq.heappop(ready)
            order.append(name)
            for parent in dependents[name]:
                waiting[parent] -= 1
                if waiting[parent] == 0:
                    heapq.heappush(ready, (priority(parent), parent))
        return order

    def _named_deps(self, name: str) -> set[str]:
        deps: set[str] = set()
        stack = list(self.nodes[name].inputs)
        while stack:
            src = stack.pop()
            if src in self.named:
                deps.add(src)
            elif src in self.nodes:
                stack.extend(self.nodes[src].inputs)
        return deps

    # -- expressions -------------------------------------------------------------------------

    def _expr(self, name: str, notes: list[str]) -> tuple[str, int]:
        """The value of ``name`` as an expression: its name, or the inlined node."""
        if name in self.named or name not in self.nodes:
            return self._ident(self.display[name]), _ATOM
        return self._op(self.nodes[name], notes)

    def _operand(self, name: str, notes: list[str], at_least: int) -> str:
        text, prec = self._expr(name, notes)
        return f"({text})" if prec < at_least else text

    def _op(self, node: Node, notes: list[str]) -> tuple[str, int]:
        op, args = node.op, node.inputs
        minus = self.minus
        if op == "linear":
            return self._linear(node, notes), _SUM
        if op == "add":
            return " + ".join(self._operand(a, notes, _SUM) for a in args), _SUM
        if op == "sub":
            left, right = self._operand(args[0], notes, _SUM), self._operand(args[1], notes, _PRODUCT)
            return f"{left} {minus} {right}", _SUM
        if op == "mul":
            return f" {self._odot} ".join(self._operand(a, notes, _PRODUCT) for a in args), _PRODUCT
        if op == "blend":
            z, a, b = (self._operand(x, notes, _PRODUCT) for x in args)
            return f"{z} {self._odot} {a} + (1 {minus} {z}) {self._odot} {b}", _SUM
        if op == "diag":
            d = self._param("d", self.key[node.name])
            return f"{d} {self._odot} {self._operand(args[0], notes, _PRODUCT)}", _PRODUCT
        if op == "identity":
            return self._expr(args[0], notes)
        if op == "one_minus":
            return f"1 {minus} {self._operand(args[0], notes, _PRODUCT)}", _SUM
        if op == "scale":
            alpha = node.attrs.get("alpha", OPS["scale"].attrs["alpha"].default or 1.0)
            dot = r" \cdot " if self.latex else "·"
            # A negative factor is bracketed like a sum so it never follows an operator bare.
            return f"{_num(alpha)}{dot}{self._operand(args[0], notes, _PRODUCT)}", (
                _PRODUCT if alpha >= 0 else _SUM
            )
        if op == "shift":
            beta = node.attrs.get("beta", 0.0)
            sign = "+" if beta >= 0 else minus
            return f"{self._operand(args[0], notes, _SUM)} {sign} {_num(abs(beta))}", _SUM
        return self._call(node.op, node.attrs, args, notes), _ATOM

    def _call(self, op: str, attrs: dict[str, float], args: tuple[str, ...], notes: list[str]) -> str:
        inner, _ = self._expr(args[0], notes)
        if op == "tanh":
            fn = r"\tanh" if self.latex else "tanh"
        elif op == "sigmoid":
            fn = r"\sigma" if self.latex else "σ"
        elif op == "relu":
            fn = r"\operatorname{ReLU}" if self.latex else "ReLU"
        elif op == "leaky_relu":
            fn = r"\operatorname{LeakyReLU}" if self.latex else "LeakyReLU"
            slope = attrs.get("negative_slope")
            if slope is not None and slope != OPS["leaky_relu"].attrs["negative_slope"].default:
                fn += f"_{{{_num(slope)}}}"
        else:  # an op added to the op set without a renderer still renders, by name
            fn = rf"\operatorname{{{_latex_escape(op)}}}" if self.latex else op
        return f"{fn}({inner})"

    def _linear(self, node: Node, notes: list[str]) -> str:
        """``W x + U h + V n + b``: each weight lettered by what it reads (:func:`weight_letter`),
        subscripted by the operand too where the linear has two weights of one letter."""
        key = self.key[node.name]
        letters = {src: weight_letter(self.graph, src) for src in node.inputs}
        # The input first, then the other operands in their order (a linear reads x at most once).
        ordered = sorted(node.inputs, key=lambda src: letters[src] != "W")
        terms = []
        for src in ordered:
            letter = letters[src]
            shared = sum(1 for other in letters.values() if other == letter) > 1
            weight = self._param(letter, key, self.display[src]) if shared else self._param(letter, key)
            terms.append(f"{weight} {self._operand(src, notes, _ATOM)}")
        bias = self._param("b", key)
        terms.append(bias)
        bias_init = node.attrs.get("bias_init")
        if bias_init is not None:
            notes.append(f"{bias} = {_num(bias_init)}")
        return " + ".join(terms)

    @property
    def _odot(self) -> str:
        return r"\odot" if self.latex else "⊙"

    def _param(self, letter: str, key: str, input_name: str | None = None) -> str:
        if self.latex:
            sub = self._ident(key)
            if input_name is not None:
                sub += "," + self._ident(input_name)
            return f"{letter}_{{{sub}}}"
        sub = key if input_name is None else f"{key},{input_name}"
        return f"{letter}_{sub}" if len(sub) == 1 else f"{letter}_{{{sub}}}"

    def _ident(self, name: str) -> str:
        """A display name as written: verbatim in text; in LaTeX ``node_1`` reads node with subscript 1."""
        if not self.latex:
            return name
        prime = "'" if name.endswith("'") and name[:-1] in STATE_SYMBOLS else ""
        name = name.removesuffix(prime) if prime else name
        base, _, rest = name.partition("_")
        if not base or not rest:
            head = rf"\mathit{{{_latex_escape(name)}}}" if len(name) > 1 else _latex_escape(name)
        else:
            head = base if len(base) == 1 and base.isascii() and base.isalpha() else rf"\mathit{{{base}}}"
            head += rf"_{{\mathrm{{{_latex_escape(rest)}}}}}"
        return head + prime


def _num(value: float) -> str:
    return f"{value:g}"


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)
