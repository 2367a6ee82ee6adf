"""Code generation for compiled cell layers: a :class:`Plan` -> Python source, exec'd once.

Three functions are generated per cell structure (see ``cells/_compile.py`` for how they are
used). Each is a flat loop over time steps whose body is a short list of tensor calls: no
dict lookups, no graph walking, no per-node Python objects at run time.

* ``forward(x, states, weights, bias, diag, save)``: the sequence without autograd.
  ``pre`` (the pre-activations of every linear, all steps) starts as one matrix product of
  all of x with the fused x-weights (biases folded in); each step adds the products of the
  other sources in place and applies grouped activations in place.
* ``backward(x, pre, acts, states_all, saved, weights, bias, diag, d_out, d_finals, need_x)``:
  the hand-derived backward of ``forward`` (its first arguments are what ``forward`` kept).
  Per step it only runs elementwise derivatives and one product per source
  (``d_source = d_pre @ W``); the gradients of every weight and bias are single matrix
  products over all ``T * B`` rows at the end.
* ``sequence(x, states, weights, bias, diag)``: the same computation with out-of-place
  differentiable ops, for plain autograd and for ``torch.compile``.

The generated source is kept on :class:`Program` (``program.source``) for debugging.

:func:`batched_sources` emits ``forward`` and ``backward`` for a population of P member-stacked
layers (``workers/_population_layer.py``): every tensor gains a member dimension after time
(``[T, P, B, n]`` buffers, so each step's ``[P, B, n]`` is contiguous; ``[P, rows, in]``
weights), products are ``bmm``/``baddbmm``, and the hoisted pre-activations (with the
biases) come in as an argument, so autograd differentiates the hoist and ``backward``
returns ``d_pre``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional

from cells._compile_plan import SAVES_OUTPUT, ActGroup, NodeStep, Plan, Product, Run

_FORWARD_OPS = {
    "tanh": "torch.tanh({0})",
    "sigmoid": "torch.sigmoid({0})",
    "relu": "torch.relu({0})",
    "leaky_relu": "functional.leaky_relu({0}, {attr})",
    "one_minus": "torch.rsub({0}, 1.0)",
    "scale": "({0} * {attr})",
    "shift": "({0} + {attr})",
    "sub": "({0} - {1})",
    "blend": "torch.lerp({2}, {1}, {0})",  # blend(z, a, b) = b + z * (a - b)
}
_INPLACE_OPS = {
    "tanh": "{0}.tanh_()",
    "sigmoid": "{0}.sigmoid_()",
    "relu": "{0}.relu_()",
    "leaky_relu": "functional.leaky_relu_({0}, {attr})",
    "one_minus": "{0}.neg_().add_(1.0)",
    "scale": "{0}.mul_({attr})",
    "shift": "{0}.add_({attr})",
}
# The batched code calls tanh through the names ``tanh`` / ``tanh_`` of its scope (on CPU,
# torch's tanh is several times slower than a sigmoid).
_BATCHED_FORWARD_OPS = {**_FORWARD_OPS, "tanh": "tanh({0})"}
_BATCHED_INPLACE_OPS = {**_INPLACE_OPS, "tanh": "tanh_({0})"}
# Derivative of a unary op from its output y, over whole [T, B, n] buffers at once.
_DERIVATIVE = {
    "tanh": "torch.rsub({0} * {0}, 1.0)",
    "sigmoid": "torch.addcmul({0}, {0}, {0}, value=-1.0)",
    "relu": "({0} > 0).to({0}.dtype)",
    "leaky_relu": "torch.where({0} > 0, 1.0, {attr}).to({0}.dtype)",
}
_CONSTANT_DERIVATIVE = {"scale": "{attr}", "shift": "1.0", "one_minus": "-1.0"}


class Program:
    """Generated functions and their source for one cell structure.

    Only ``forward`` is compiled (by Python) up front; ``backward`` and ``sequence`` are
    compiled on first use, which keeps building a layer for a new cell to about a
    millisecond.
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.sources = {
            "forward": _forward_source(plan),
            "backward": _backward_source(plan),
            "sequence": _sequence_source(plan),
        }
        self._functions: dict[str, Callable[..., Any]] = {}
        self.forward = self._function("forward")

    @property
    def source(self) -> str:
        return "\n\n".join(self.sources.values())

    @property
    def backward(self) -> Callable[..., Any]:
        return self._functions.get("backward") or self._function("backward")

    @property
    def sequence(self) -> Callable[..., Any]:
        return self._functions.get("sequence") or self._function("sequence")

    def _function(self, name: str) -> Callable[..., Any]:
        scope: dict[str, Any] = {"torch": torch, "functional": functional}
        exec(compile(self.sources[name], f"<cell {name}: {self.plan.key[:60]}>", "exec"), scope)
        self._functions[name] = scope[name]
        return scope[name]


def build_program(plan: Plan) -> Program:
    return Program(plan)


def batched_sources(plan: Plan) -> dict[str, str]:
    """Source of ``forward(pre, x, states, weights, diag, save, T)`` and ``backward(x, pre, acts,
    states_all, saved, weights, diag, d_out, d_finals, inject)`` over member-stacked tensors
    (``pre`` ``[T, P, B, L*H]``, overwritten; ``x`` ``[T, P, B, H]``; states ``[P, B, H]``).
    Their scope must define ``tanh`` and ``tanh_`` (out of place and in place).

    ``inject``: ``{t: [one tensor per state]}``, gradients added to the states after step t
    (the final states of members whose sequence ends there). ``backward`` returns ``d_x`` (the
    per-step uses of x only, else None), the initial states' gradients, the weights' (None
    for the hoisted x weight), ``d_pre`` and ``d_diag``.
    """
    return {"forward": _forward_source(plan, True), "backward": _backward_source(plan, True)}


class _Layout:
    """How generated code indexes tensors: one sequence (``[T, B, n]``) or a member-stacked
    population (``[T, P, B, n]``; weights ``[P, rows, in]``)."""

    def __init__(self, batched: bool) -> None:
        self.batched = batched

    def all_cols(self, start: int, stop: int) -> str:
        """Columns of an all-steps buffer."""
        return f"..., {_cols(start, stop)}" if self.batched else f":, :, {_cols(start, stop)}"

    def step_cols(self, start: int, stop: int) -> str:
        """Columns of one step's tensor."""
        return f"..., {_cols(start, stop)}" if self.batched else f":, {_cols(start, stop)}"

    def rows(self, weight: str, row: int, count: int) -> str:
        """Row blocks of a weight."""
        rows = f"{row} * H:{row + count} * H"
        return f"{weight}[:, {rows}]" if self.batched else f"{weight}[{rows}]"

    def t(self, expr: str) -> str:
        """The transpose, as the right-hand operand of every step's product (batched: copied once,
        as a strided batch operand makes ``baddbmm_`` copy it at every step)."""
        return f"{expr}.transpose(1, 2).contiguous()" if self.batched else f"{expr}.t()"


class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 1

    def __call__(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)

    def text(self) -> str:
        return "\n".join(self.lines)


def _cols(start: int, stop: int) -> str:
    return f"{start} * H:{stop} * H"


def _v(name: str) -> str:
    return f"v_{name}"


def _state_vars(plan: Plan) -> list[str]:
    return [_v(f"h_prev_{i}") for i in range(plan.num_states)]


def _referenced(plan: Plan) -> set[str]:
    """Values some per-step computation reads by name (node inputs, product sources, outputs)."""
    names: set[str] = set(plan.outputs)
    for task in plan.tasks:
        if isinstance(task, NodeStep):
            names.update(task.inputs)
        elif isinstance(task, Product):
            names.add(task.source)
    return {plan.alias.get(n, n) for n in names}


def _fused_mul_adds(plan: Plan) -> dict[str, str]:
    """mul nodes computed inside the add that is their only user (as ``torch.addcmul``)."""
    users: dict[str, list[str]] = {}
    for task in plan.tasks:
        if isinstance(task, NodeStep):
            for i in task.inputs:
                users.setdefault(i, []).append(task.name)
    for o in plan.outputs:
        users.setdefault(o, []).append("<output>")
    steps = {t.name: t for t in plan.tasks if isinstance(t, NodeStep)}
    fused: dict[str, str] = {}
    for task in steps.values():
        if task.op != "add":
            continue
        for i in task.inputs:
            s = steps.get(i)
            if (
                s is not None
                and s.op == "mul"
                and len(s.inputs) == 2
                and users.get(i) == [task.name]
                and i not in plan.needed
                and plan.home(i) is None
            ):
                fused[i] = task.name
    return fused


def _node_expr(
    task: NodeStep,
    plan: Plan,
    fused: dict[str, str],
    steps: dict[str, NodeStep],
    ops: dict[str, str] = _FORWARD_OPS,
) -> str:
    args = [_v(plan.alias.get(i, i)) for i in task.inputs]
    if task.op == "add":
        plain = [a for i, a in zip(task.inputs, args, strict=True) if fused.get(i) != task.name]
        muls = [steps[i] for i in task.inputs if fused.get(i) == task.name]
        if plain:
            expr = " + ".join(plain)
        else:  # add of two fused muls: compute the first one plainly
            first = muls.pop(0)
            expr = " * ".join(_v(plan.alias.get(i, i)) for i in first.inputs)
        for m in muls:
            a, b = (_v(plan.alias.get(i, i)) for i in m.inputs)
            expr = f"torch.addcmul({expr}, {a}, {b})"
        return expr
    if task.op == "mul":
        return " * ".join(args)
    if task.op == "diag":
        return f"{args[0]} * d_{task.name}"
    return ops[task.op].format(*args, attr=repr(task.attr))


# ---------------------------------------------------------------------------------------
# forward (no autograd; in place on pre)


def _forward_source(plan: Plan, batched: bool = False) -> str:
    L = len(plan.linears)
    lay = _Layout(batched)
    forward_ops, inplace_ops = (
        (_BATCHED_FORWARD_OPS, _BATCHED_INPLACE_OPS) if batched else (_FORWARD_OPS, _INPLACE_OPS)
    )
    w = _Lines()
    if batched:
        w.lines.append("def forward(pre, x, states, weights, diag, save, T):")
        w(f"H = pre.shape[3] // {L}" if L else "H = states[0].shape[2]")
    else:
        w.lines.append("def forward(x, states, weights, bias, diag, save):")
        w("T, B = x.shape[0], x.shape[1]")
        w(f"H = bias.shape[0] // {L}" if L else "H = states[0].shape[1]")
        _emit_hoist(w, plan)
    views: dict[tuple[int, int], str] = {}

    def pre_view(start: int, stop: int) -> str:
        if (start, stop) not in views:
            views[(start, stop)] = name = f"P_{start}_{stop}"
            w(f"{name} = pre[{lay.all_cols(start, stop)}].unbind(0)")
        return views[(start, stop)]

    for task in plan.tasks:
        if isinstance(task, Product):
            for k, run in enumerate(task.runs):
                pre_view(run.start, run.stop)
                rows = lay.rows(f"weights[{task.weight}]", run.row, run.stop - run.start)
                w(f"WT_{task.weight}_{k} = {lay.t(rows)}")
        elif isinstance(task, ActGroup):
            pre_view(task.start, task.stop)
    for b in range(len(plan.linears)):
        pre_view(b, b + 1)
    for i, name in enumerate(plan.diags):
        w(f"d_{name} = diag[:, {i}, None]" if batched else f"d_{name} = diag[{i}]")
    if plan.x_per_step:
        w("U_x = x.unbind(0)")
    for i, var in enumerate(_state_vars(plan)):
        w(f"{var} = states[{i}]")
        w(f"L_state_{i} = [{var}]")
    saved = sorted(v for v in plan.needed if plan.home(v) == ("saved", 0))
    for v in saved:
        w(f"L_{v} = []")
    for g in plan.groups:
        if not g.inplace:
            w(f"L_act_{g.buffer} = []")

    fused = _fused_mul_adds(plan)
    steps = {t.name: t for t in plan.tasks if isinstance(t, NodeStep)}
    # Linears that read only x are complete before the step starts.
    complete_at_start = [n for n in plan.linears if all(s == "x" for s in plan.linear_sources[n])]
    pending = {n: sum(1 for s in plan.linear_sources[n] if s != "x") for n in plan.linears}
    inplace_linears = {lin for g in plan.groups if g.inplace for lin in g.linears}
    referenced = _referenced(plan)

    w("for t in range(T):")
    w.depth += 1
    if plan.x_per_step:
        w(f"{_v('x')} = U_x[t]")

    def linear_complete(name: str) -> None:
        if name not in inplace_linears and name in referenced:
            b = plan.linears.index(name)
            w(f"{_v(name)} = {views[(b, b + 1)]}[t]")

    for name in complete_at_start:
        linear_complete(name)
    for task in plan.tasks:
        if isinstance(task, Product):
            src = _v(plan.alias.get(task.source, task.source))
            for k, run in enumerate(task.runs):
                method = "baddbmm_" if batched else "addmm_"
                w(f"{views[(run.start, run.stop)]}[t].{method}({src}, WT_{task.weight}_{k})")
            for name in plan.weight_rows[task.weight]:
                pending[name] -= 1
                if pending[name] == 0:
                    linear_complete(name)
        elif isinstance(task, ActGroup):
            view = f"{views[(task.start, task.stop)]}[t]"
            if task.inplace:
                w(inplace_ops[task.op].format(view, attr=repr(task.attr)))
                for b, node in enumerate(task.nodes):
                    if node in referenced:
                        w(f"{_v(node)} = {views[(task.start + b, task.start + b + 1)]}[t]")
            else:
                w(f"a_{task.buffer} = " + forward_ops[task.op].format(view, attr=repr(task.attr)))
                w(f"if save: L_act_{task.buffer}.append(a_{task.buffer})")
                for b, node in enumerate(task.nodes):
                    w(f"{_v(node)} = a_{task.buffer}[{lay.step_cols(b, b + 1)}]")
        else:
            if task.op == "identity" or task.name in fused:
                continue
            w(f"{_v(task.name)} = {_node_expr(task, plan, fused, steps, forward_ops)}")
            if task.name in saved:
                w(f"if save: L_{task.name}.append({_v(task.name)})")
    outs = [_v(plan.alias.get(o, o)) for o in plan.outputs]
    w(f"{', '.join(_state_vars(plan))} = {', '.join(outs)}")
    for i, var in enumerate(_state_vars(plan)):
        w(f"L_state_{i}.append({var})")
    w.depth -= 1

    w("pre = pre if save else None")
    w("states_all = [" + ", ".join(f"torch.stack(L_state_{i})" for i in range(plan.num_states)) + "]")
    acts = [f"torch.stack(L_act_{g.buffer}) if save else None" for g in plan.groups if not g.inplace]
    w(f"acts = [{', '.join(acts)}]")
    w(f"saved = [{', '.join(f'torch.stack(L_{v}) if save else None' for v in saved)}]")
    w("return pre, acts, states_all, saved")
    return w.text()


def _emit_hoist(w: _Lines, plan: Plan) -> None:
    L = len(plan.linears)
    if not L:
        w("pre = None")
        return
    w("x2 = x.reshape(T * B, x.shape[2])")
    hoisted = plan.hoisted
    if hoisted is not None and len(hoisted.runs) == 1 and hoisted.runs[0] == Run(0, L, 0):
        w(f"pre = torch.addmm(bias, x2, weights[{hoisted.weight}].t()).view(T, B, {L} * H)")
        return
    w(f"pre = bias.expand(T * B, {L} * H).contiguous()")
    if hoisted is not None:
        for run in hoisted.runs:
            rows = f"{run.row} * H:{run.row + run.stop - run.start} * H"
            w(f"pre[:, {_cols(run.start, run.stop)}].addmm_(x2, weights[{hoisted.weight}][{rows}].t())")
    w(f"pre = pre.view(T, B, {L} * H)")


# ---------------------------------------------------------------------------------------
# backward (hand-derived; weight gradients batched over all steps)


def _backward_source(plan: Plan, batched: bool = False) -> str:
    L = len(plan.linears)
    k = plan.num_states
    saved = sorted(v for v in plan.needed if plan.home(v) == ("saved", 0))
    acts = [g for g in plan.groups if not g.inplace]
    lay = _Layout(batched)
    w = _Lines()
    if batched:
        w.lines.append(
            "def backward(x, pre, acts, states_all, saved, weights, diag, d_out, d_finals, inject):"
        )
        w("T, B = d_out.shape[0], d_out.shape[2]")
        w("H = d_out.shape[3]")
    else:
        w.lines.append(
            "def backward(x, pre, acts, states_all, saved, weights, bias, diag, d_out, d_finals, need_x):"
        )
        w("T, B = d_out.shape[0], d_out.shape[1]")
        w("H = d_out.shape[2]")
    for i in range(k):
        w(f"S_{i} = states_all[{i}]")
        w(f"U_S_{i} = S_{i}.unbind(0)")
    for j, v in enumerate(saved):
        w(f"SV_{v} = saved[{j}]")
    for g in acts:
        w(f"A_{g.buffer} = acts[{g.buffer}]")
    if L:
        w("dpre = torch.empty_like(pre)")
    w("U_dout = d_out.unbind(0)")
    for i in range(k):
        w(f"g_s_{i} = d_finals[{i}]")
    for i, name in enumerate(plan.diags):
        w(f"d_{name} = diag[:, {i}, None]" if batched else f"d_{name} = diag[{i}]")
        w(f"L_gd_{name} = []")
    if plan.x_per_step:
        w("U_x = x.unbind(0)")
        w("L_gx = []")

    # Buffers holding each value over all steps, as [T, B, H] expressions.
    def buffer_of(value: str) -> str:
        home = plan.home(value)
        assert home is not None, value
        kind, index = home
        if kind == "x":
            return "x"
        if kind == "state_in":
            return f"S_{index}[:-1]"
        if kind == "state_out":
            return f"S_{index}[1:]"
        if kind == "pre":
            return f"pre[{lay.all_cols(index, index + 1)}]"
        if kind == "act":
            g = plan.groups[index]
            b = g.nodes.index(plan.alias.get(value, value))
            return f"A_{g.buffer}[{lay.all_cols(b, b + 1)}]"
        return f"SV_{plan.alias.get(value, value)}"

    step_views: dict[str, str] = {}  # value -> per-step expression

    def value(name: str) -> str:
        name = plan.alias.get(name, name)
        if name not in step_views:
            home = plan.home(name)
            assert home is not None, name
            kind, index = home
            if kind == "x":
                step_views[name] = "U_x[t]"
            elif kind == "state_in":
                step_views[name] = f"U_S_{index}[t]"
            elif kind == "state_out":
                step_views[name] = f"U_S_{index}[t + 1]"
            else:
                var = f"U_{name}"
                w(f"{var} = {buffer_of(name)}.unbind(0)")
                step_views[name] = f"{var}[t]"
        return step_views[name]

    derivs: dict[str, str] = {}

    def derivative(key: str, buffer: str, op: str, attr: float) -> str:
        if key not in derivs:
            derivs[key] = f"U_D_{key}"
            w(f"U_D_{key} = ({_DERIVATIVE[op].format(buffer, attr=repr(attr))}).unbind(0)")
        return f"{derivs[key]}[t]"

    dviews: dict[tuple[int, int], str] = {}

    def dpre_view(start: int, stop: int) -> str:
        if (start, stop) not in dviews:
            dviews[(start, stop)] = f"DP_{start}_{stop}"
            w(f"DP_{start}_{stop} = dpre[{lay.all_cols(start, stop)}].unbind(0)")
        return f"{dviews[(start, stop)]}[t]"

    # Everything the loop reads is set up before it, so first walk the schedule once to
    # declare views (emission into `body` happens in the second walk below).
    body = _Lines()
    body.depth = 2
    defined: set[str] = set()  # values with a gradient variable in the current step
    pending_uses: dict[str, int] = {}
    for task in plan.tasks:
        if isinstance(task, NodeStep):
            for name_in in task.inputs:
                pending_uses[name_in] = pending_uses.get(name_in, 0) + 1
        elif isinstance(task, ActGroup):
            for lin in task.linears:
                pending_uses[lin] = pending_uses.get(lin, 0) + 1
        elif isinstance(task, Product):
            pending_uses[task.source] = pending_uses.get(task.source, 0) + 1
    for o in plan.outputs:
        pending_uses[o] = pending_uses.get(o, 0) + 1
    final: dict[str, str] = {}  # linear -> gradient to write into dpre
    flushed: set[str] = set()

    def grad(name: str) -> str:
        return f"g_{name}"

    def note_use(name: str) -> None:
        if name in plan.linear_sources:
            pending_uses[name] -= 1
            if pending_uses[name] == 0:
                final[name] = grad(name)

    # Gradients are accumulated out of place, so a first contribution may simply alias.
    def contribute(name: str, expr: str) -> None:
        if name in defined:
            body(f"{grad(name)} = {grad(name)} + {expr}")
        else:
            body(f"{grad(name)} = {expr}")
            defined.add(name)
        note_use(name)

    def contribute_mul(name: str, a: str, b: str) -> None:
        if name in defined:
            body(f"{grad(name)} = torch.addcmul({grad(name)}, {a}, {b})")
        else:
            body(f"{grad(name)} = {a} * {b}")
            defined.add(name)
        note_use(name)

    def contribute_neg(name: str, expr: str) -> None:
        if name in defined:
            body(f"{grad(name)} = {grad(name)} - {expr}")
        else:
            body(f"{grad(name)} = -{expr}")
            defined.add(name)
        note_use(name)

    def flush() -> None:
        """Write every final, unwritten linear gradient into dpre (one cat per contiguous range)."""
        ready = [b for b, n in enumerate(plan.linears) if n in final and n not in flushed]
        for run in _runs_of(ready):
            grads = [final[plan.linears[b]] for b in range(run[0], run[1])]
            view = dpre_view(*run)
            if len(grads) == 1:
                body(f"{view}.copy_({grads[0]})")
            else:
                body(f"torch.cat([{', '.join(grads)}], {2 if batched else 1}, out={view})")
            flushed.update(plan.linears[b] for b in range(run[0], run[1]))
        for g in plan.groups:
            if g.inplace and g.linears[0] in flushed and g.linears[0] not in done_groups:
                done_groups.add(g.linears[0])
                if g.op == "shift":
                    continue
                view = dpre_view(g.start, g.stop)
                if g.op in ("sigmoid", "tanh"):
                    # From the activation's output y, on data still in cache (cheaper than a
                    # whole-sequence precompute): sigmoid' = y - y*y, tanh' = 1 - y*y.
                    if f"g{g.start}" not in ys:
                        ys.add(f"g{g.start}")
                        w(f"U_Y_g{g.start} = pre[{lay.all_cols(g.start, g.stop)}].unbind(0)")
                    body(f"y = U_Y_g{g.start}[t]")
                    if g.op == "sigmoid":
                        body(f"{view}.mul_(torch.addcmul(y, y, y, value=-1.0))")
                    else:
                        body(f"d = {view}")
                        body("d.addcmul_(d * y, y, value=-1.0)")
                    continue
                if g.op in _CONSTANT_DERIVATIVE:
                    factor = _CONSTANT_DERIVATIVE[g.op].format(attr=repr(g.attr))
                else:
                    factor = derivative(f"g{g.start}", f"pre[{lay.all_cols(g.start, g.stop)}]", g.op, g.attr)
                body(f"{view}.mul_({factor})")

    done_groups: set[str] = set()
    ys: set[str] = set()

    if batched:  # final states of members whose sequence ends at step t
        body("J = inject.get(t)")
        body("if J is not None:")
        for i in range(k):
            body(f"    g_s_{i} = g_s_{i} + J[{i}]")
    # State outputs of step t receive the carried gradient (plus the output's, for state 0).
    body("go_0 = g_s_0 + U_dout[t]")
    for index, o in enumerate(plan.outputs):
        contribute(o, "go_0" if index == 0 else f"g_s_{index}")

    for task in reversed(plan.tasks):
        if isinstance(task, NodeStep):
            n = task.name
            gn = grad(n)
            ins = list(task.inputs)  # gradients flow through identity nodes; values resolve them
            if n not in defined:  # cannot happen: every node reaches an output
                raise AssertionError(f"no gradient reaches node {n}")
            if task.op in ("add", "identity"):
                for name_in in ins:
                    contribute(name_in, gn)
            elif task.op == "sub":
                contribute(ins[0], gn)
                contribute_neg(ins[1], gn)
            elif task.op == "mul":
                for p, name_in in enumerate(ins):
                    others = [value(o) for q, o in enumerate(ins) if q != p]
                    if len(others) > 1:
                        body(f"p_{n}_{p} = {' * '.join(others)}")
                        contribute_mul(name_in, gn, f"p_{n}_{p}")
                    else:
                        contribute_mul(name_in, gn, others[0])
            elif task.op == "blend":
                z, first, second = ins
                body(f"gz_{n} = {gn} * {value(z)}")
                contribute(first, f"gz_{n}")
                contribute(second, f"({gn} - gz_{n})")
                body(f"dd_{n} = {value(first)} - {value(second)}")
                contribute_mul(z, gn, f"dd_{n}")
            elif task.op == "diag":
                contribute_mul(ins[0], gn, f"d_{n}")
                body(f"L_gd_{n}.append({gn})")
            elif task.op in SAVES_OUTPUT:
                contribute_mul(ins[0], gn, derivative(n, buffer_of(n), task.op, task.attr))
            elif task.op == "scale":
                contribute(ins[0], f"({gn} * {task.attr!r})")
            elif task.op == "shift":
                contribute(ins[0], gn)
            elif task.op == "one_minus":
                contribute_neg(ins[0], gn)
            else:
                raise AssertionError(task.op)
        elif isinstance(task, ActGroup):
            if task.inplace:
                for lin, node in zip(task.linears, task.nodes, strict=True):
                    final[lin] = grad(node)
                    pending_uses[lin] = 0
            else:
                buffer = f"A_{task.buffer}"
                for block, (lin, node) in enumerate(zip(task.linears, task.nodes, strict=True)):
                    if task.op in _CONSTANT_DERIVATIVE:
                        factor = _CONSTANT_DERIVATIVE[task.op].format(attr=repr(task.attr))
                        contribute(lin, f"({grad(node)} * {factor})")
                    else:
                        d = derivative(
                            f"a{task.buffer}_{block}",
                            f"{buffer}[{lay.all_cols(block, block + 1)}]",
                            task.op,
                            task.attr,
                        )
                        contribute_mul(lin, grad(node), d)
        else:
            flush()
            src = task.source
            add_fn, mm_fn = ("torch.baddbmm", "torch.bmm") if batched else ("torch.addmm", "torch.mm")
            for j, run in enumerate(task.runs):
                rows = lay.rows(f"weights[{task.weight}]", run.row, run.stop - run.start)
                w(f"W_{task.weight}_{j} = {rows}")
                view = dpre_view(run.start, run.stop)
                if src in defined:
                    body(f"{grad(src)} = {add_fn}({grad(src)}, {view}, W_{task.weight}_{j})")
                else:
                    body(f"{grad(src)} = {mm_fn}({view}, W_{task.weight}_{j})")
                    defined.add(src)
            note_use(src)
    flush()
    missing = [n for n in plan.linears if n not in flushed]
    if missing:
        raise AssertionError(f"linear gradients never written: {missing}")
    for i in range(k):
        src = f"h_prev_{i}"
        body(f"g_s_{i} = {grad(src)}" if src in defined else f"g_s_{i} = torch.zeros_like(g_s_{i})")
    if plan.x_per_step:
        body(f"L_gx.append({grad('x')})" if "x" in defined else "L_gx.append(torch.zeros_like(U_x[t]))")

    w("for t in range(T - 1, -1, -1):")
    w.lines.extend(body.lines)
    if batched:
        _emit_batched_gradients(w, plan, buffer_of)
        return w.text()

    # Batched gradients of weights, bias, diag and x.
    if L:
        w(f"dpre2 = dpre.view(T * B, {L} * H)")
        w("d_bias = dpre2.sum(0)")
    else:
        w("d_bias = torch.zeros_like(bias)")
    w("d_weights = []")
    for j, src in enumerate(plan.weight_sources):
        product = (
            plan.hoisted
            if src == "x"
            else next(t for t in plan.tasks if isinstance(t, Product) and t.source == src)
        )
        assert product is not None
        rows_src = "x.reshape(T * B, x.shape[2])" if src == "x" else f"{buffer_of(src)}.reshape(T * B, H)"
        w(f"src_{j} = {rows_src}")
        w(f"dw_{j} = torch.empty_like(weights[{j}])")
        for run in product.runs:
            rows = f"{run.row} * H:{run.row + run.stop - run.start} * H"
            w(f"torch.mm(dpre2[:, {_cols(run.start, run.stop)}].t(), src_{j}, out=dw_{j}[{rows}])")
        w(f"d_weights.append(dw_{j})")
    w("d_x = None")
    w("if need_x:")
    w.depth += 1
    if plan.hoisted is not None:
        j = plan.hoisted.weight
        for r, run in enumerate(plan.hoisted.runs):
            rows = f"{run.row} * H:{run.row + run.stop - run.start} * H"
            part = f"dpre2[:, {_cols(run.start, run.stop)}], weights[{j}][{rows}]"
            w(f"d_x = torch.mm({part})" if r == 0 else f"d_x = torch.addmm(d_x, {part})")
        w("d_x = d_x.view(x.shape)")
    if plan.x_per_step:
        w("g_x_all = torch.stack(L_gx[::-1])  # collected backwards in time")
        w("d_x = g_x_all if d_x is None else d_x + g_x_all")
    w("if d_x is None:")
    w("    d_x = torch.zeros_like(x)")
    w.depth -= 1
    if plan.diags:
        parts = [
            f"(torch.stack(L_gd_{n}[::-1]) * {buffer_of(_diag_input(plan, n))}).sum((0, 1))"
            for n in plan.diags
        ]
        w(f"d_diag = torch.stack([{', '.join(parts)}])")
    else:
        w("d_diag = None")
    w(f"return d_x, [{', '.join(f'g_s_{i}' for i in range(k))}], d_weights, d_bias, d_diag")
    return w.text()


def _emit_batched_gradients(w: _Lines, plan: Plan, buffer_of: Callable[[str], str]) -> None:
    """After the batched backward's loop: weight gradients (one ``bmm`` over all steps per run),
    ``d_x`` of x's per-step uses, ``d_pre`` and ``d_diag``."""
    L = len(plan.linears)
    w("P = d_out.shape[1]")
    if L:  # member-major rows for the weights' products (one copy)
        w(f"dpre2 = dpre.transpose(0, 1).reshape(P, T * B, {L} * H)")
    w("d_weights = []")
    for j, src in enumerate(plan.weight_sources):
        if src == "x":  # the hoisted product: autograd differentiates it outside
            w("d_weights.append(None)")
            continue
        product = next(t for t in plan.tasks if isinstance(t, Product) and t.source == src)
        w(f"src_{j} = {buffer_of(src)}.transpose(0, 1).reshape(P, T * B, H)")
        if len(product.runs) == 1:
            run = product.runs[0]
            part = f"dpre2[..., {_cols(run.start, run.stop)}].transpose(1, 2), src_{j}"
            w(f"d_weights.append(torch.bmm({part}))")
            continue
        w(f"dw_{j} = torch.empty_like(weights[{j}])")
        for run in product.runs:
            rows = f"{run.row} * H:{run.row + run.stop - run.start} * H"
            part = f"dpre2[..., {_cols(run.start, run.stop)}].transpose(1, 2), src_{j}"
            w(f"dw_{j}[:, {rows}].copy_(torch.bmm({part}))")
        w(f"d_weights.append(dw_{j})")
    w("d_x = torch.stack(L_gx[::-1])" if plan.x_per_step else "d_x = None")
    if plan.diags:
        parts = [
            f"(torch.stack(L_gd_{n}[::-1]) * {buffer_of(_diag_input(plan, n))}).sum((0, 2))"
            for n in plan.diags
        ]
        w(f"d_diag = torch.stack([{', '.join(parts)}], 1)")
    else:
        w("d_diag = None")
    d_pre = "dpre" if L else "None"
    states = ", ".join(f"g_s_{i}" for i in range(plan.num_states))
    w(f"return d_x, [{states}], d_weights, {d_pre}, d_diag")


def _diag_input(plan: Plan, name: str) -> str:
    task = next(t for t in plan.tasks if isinstance(t, NodeStep) and t.name == name)
    return task.inputs[0]


def _runs_of(blocks: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for b in blocks:
        if runs and runs[-1][1] == b:
            runs[-1] = (runs[-1][0], b + 1)
        else:
            runs.append((b, b + 1))
    return runs


# ---------------------------------------------------------------------------------------
# sequence (out-of-place, differentiable: plain autograd and torch.compile)


def _sequence_source(plan: Plan) -> str:
    L = len(plan.linears)
    w = _Lines()
    w.lines.append("def sequence(x, states, weights, bias, diag):")
    w("T, B = x.shape[0], x.shape[1]")
    w(f"H = bias.shape[0] // {L}" if L else "H = states[0].shape[1]")
    if L:
        w("x2 = x.reshape(T * B, x.shape[2])")
        hoisted = plan.hoisted
        pieces = []
        covered = {b: run for run in (hoisted.runs if hoisted else ()) for b in range(run.start, run.stop)}
        b = 0
        while b < L:
            if b in covered:
                run = covered[b]
                rows = f"{run.row} * H:{run.row + run.stop - run.start} * H"
                wx = f"weights[{hoisted.weight}][{rows}].t()"  # type: ignore[union-attr]
                pieces.append(f"torch.addmm(bias[{_cols(run.start, run.stop)}], x2, {wx})")
                b = run.stop
            else:
                stop = b
                while stop < L and stop not in covered:
                    stop += 1
                pieces.append(f"bias[{_cols(b, stop)}].expand(T * B, {stop - b} * H)")
                b = stop
        joined = pieces[0] if len(pieces) == 1 else f"torch.cat([{', '.join(pieces)}], 1)"
        w(f"U_pre = {joined}.view(T, B, {L} * H).unbind(0)")
    for t in plan.tasks:
        if isinstance(t, Product):
            full = len(t.runs) == 1 and t.runs[0] == Run(0, L, 0)
            w(f"WT_{t.weight} = weights[{t.weight}].t()")
            if not full:
                idx = ", ".join(f"torch.arange({r.start} * H, {r.stop} * H, device=x.device)" for r in t.runs)
                w(f"I_{t.weight} = torch.cat([{idx}])")
    for i, name in enumerate(plan.diags):
        w(f"d_{name} = diag[{i}]")
    if plan.x_per_step:
        w("U_x = x.unbind(0)")
    for i, var in enumerate(_state_vars(plan)):
        w(f"{var} = states[{i}]")
    w("outs = []")
    w("for t in range(T):")
    w.depth += 1
    if plan.x_per_step:
        w(f"{_v('x')} = U_x[t]")
    if L:
        w("g = U_pre[t]")
    pending = {n: sum(1 for s in plan.linear_sources[n] if s != "x") for n in plan.linears}
    referenced = _referenced(plan)
    for name in plan.linears:
        if pending[name] == 0 and name in referenced:
            b = plan.linears.index(name)
            w(f"{_v(name)} = g[:, {_cols(b, b + 1)}]")
    steps = {t.name: t for t in plan.tasks if isinstance(t, NodeStep)}
    for task in plan.tasks:
        if isinstance(task, Product):
            src = _v(plan.alias.get(task.source, task.source))
            if len(task.runs) == 1 and task.runs[0] == Run(0, L, 0):
                w(f"g = torch.addmm(g, {src}, WT_{task.weight})")
            else:
                w(f"g = g.index_add(1, I_{task.weight}, {src} @ WT_{task.weight})")
            for name in plan.weight_rows[task.weight]:
                pending[name] -= 1
                if pending[name] == 0 and name in referenced:
                    b = plan.linears.index(name)
                    w(f"{_v(name)} = g[:, {_cols(b, b + 1)}]")
        elif isinstance(task, ActGroup):
            expr = _FORWARD_OPS[task.op].format(f"g[:, {_cols(task.start, task.stop)}]", attr=repr(task.attr))
            w(f"a = {expr}")
            for b, node in enumerate(task.nodes):
                if node in referenced:
                    w(f"{_v(node)} = a[:, {_cols(b, b + 1)}]")
        elif task.op != "identity":
            w(f"{_v(task.name)} = {_node_expr(task, plan, {}, steps)}")
    outs = [_v(plan.alias.get(o, o)) for o in plan.outputs]
    w(f"{', '.join(_state_vars(plan))} = {', '.join(outs)}")
    w(f"outs.append({_state_vars(plan)[0]})")
    w.depth -= 1
    w(f"return torch.stack(outs), [{', '.join(_state_vars(plan))}]")
    return w.text()
