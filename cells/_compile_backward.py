"""Generated backward code: the hand-derived backward of the generated ``forward``.

``backward(x, pre, acts, states_all, saved, weights, bias, diag, d_out, d_finals, need_x)``
(batched: ``backward(x, pre, acts, states_all, saved, weights, diag, d_out, d_finals, inject)``);
its first arguments are what ``forward`` kept. Per step it only runs elementwise derivatives
and one product per source (``d_source = d_pre @ W``); the gradients of every weight and bias
are single matrix products over all ``T * B`` rows at the end. The batched backward returns
``d_pre`` instead of the hoisted weight's and the biases' gradients (autograd differentiates
the hoist), and adds ``inject[t]`` to the state gradients after step t (members whose
sequence ends there).
"""

from __future__ import annotations

from cells._compile_emit import CONSTANT_DERIVATIVE, DERIVATIVE, Layout, Lines, cols, diag_input, runs_of
from cells._compile_plan import SAVES_OUTPUT, ActGroup, NodeStep, Plan, Product


def backward_source(plan: Plan, batched: bool = False) -> str:
    """Source of the generated ``backward`` of ``plan`` (lone or member-stacked)."""
    return _BackwardWriter(plan, batched).source()


def _grad(name: str) -> str:
    return f"g_{name}"


class _BackwardWriter:
    """Writes ``backward`` in one walk of the schedule, last task first.

    Two line lists grow together: ``w`` (set-up before the loop: per-step views of the saved
    buffers, derivative buffers, weight row blocks, declared when first read) and ``body``
    (the loop's body). A gradient variable ``g_<value>`` exists once some reader of the
    value has contributed to it (``defined``); a linear's gradient is final once all its
    readers have (``pending_uses``), and is then written into ``dpre`` (:meth:`_flush`).
    """

    def __init__(self, plan: Plan, batched: bool) -> None:
        self.plan, self.batched, self.lay = plan, batched, Layout(batched)
        self.w = Lines()
        self.body = Lines(depth=2)
        self.saved = sorted(v for v in plan.needed if plan.home(v) == ("saved", 0))
        self.step_views: dict[str, str] = {}  # value -> per-step expression
        self.derivs: dict[str, str] = {}
        self.dviews: dict[tuple[int, int], str] = {}
        self.defined: set[str] = set()  # values with a gradient variable in the current step
        self.pending_uses = _uses(plan)
        self.final: dict[str, str] = {}  # linear -> gradient to write into dpre
        self.flushed: set[str] = set()
        self.done_groups: set[str] = set()
        self.ys: set[str] = set()

    def source(self) -> str:
        self._header()
        self._step_start()
        for task in reversed(self.plan.tasks):
            if isinstance(task, NodeStep):
                self._node(task)
            elif isinstance(task, ActGroup):
                self._act_group(task)
            else:
                self._product(task)
        self._step_end()
        self.w("for t in range(T - 1, -1, -1):")
        self.w.lines.extend(self.body.lines)
        if self.batched:
            self._batched_gradients()
        else:
            self._lone_gradients()
        return self.w.text()

    # -- set-up before the loop ----------------------------------------------------------

    def _header(self) -> None:
        plan, w = self.plan, self.w
        if self.batched:
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
        for i in range(plan.num_states):
            w(f"S_{i} = states_all[{i}]")
            w(f"U_S_{i} = S_{i}.unbind(0)")
        for j, v in enumerate(self.saved):
            w(f"SV_{v} = saved[{j}]")
        for g in plan.groups:
            if not g.inplace:
                w(f"A_{g.buffer} = acts[{g.buffer}]")
        if plan.linears:
            w("dpre = torch.empty_like(pre)")
        w("U_dout = d_out.unbind(0)")
        for i in range(plan.num_states):
            w(f"g_s_{i} = d_finals[{i}]")
        for i, name in enumerate(plan.diags):
            w(f"d_{name} = diag[:, {i}, None]" if self.batched else f"d_{name} = diag[{i}]")
            w(f"L_gd_{name} = []")
        if plan.x_per_step:
            w("U_x = x.unbind(0)")
            w("L_gx = []")

    def buffer_of(self, value: str) -> str:
        """The buffer holding ``value`` over all steps, as a ``[T, B, H]`` expression."""
        plan = self.plan
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
            return f"pre[{self.lay.all_cols(index, index + 1)}]"
        if kind == "act":
            g = plan.groups[index]
            b = g.nodes.index(plan.alias.get(value, value))
            return f"A_{g.buffer}[{self.lay.all_cols(b, b + 1)}]"
        return f"SV_{plan.alias.get(value, value)}"

    def value(self, name: str) -> str:
        """Step t's value of ``name`` (declaring its per-step view on first use)."""
        name = self.plan.alias.get(name, name)
        if name not in self.step_views:
            home = self.plan.home(name)
            assert home is not None, name
            kind, index = home
            if kind == "x":
                self.step_views[name] = "U_x[t]"
            elif kind == "state_in":
                self.step_views[name] = f"U_S_{index}[t]"
            elif kind == "state_out":
                self.step_views[name] = f"U_S_{index}[t + 1]"
            else:
                self.w(f"U_{name} = {self.buffer_of(name)}.unbind(0)")
                self.step_views[name] = f"U_{name}[t]"
        return self.step_views[name]

    def derivative(self, key: str, buffer: str, op: str, attr: float) -> str:
        """Step t of the derivative of ``op`` from its output ``buffer`` (all steps at once)."""
        if key not in self.derivs:
            self.derivs[key] = f"U_D_{key}"
            self.w(f"U_D_{key} = ({DERIVATIVE[op].format(buffer, attr=repr(attr))}).unbind(0)")
        return f"{self.derivs[key]}[t]"

    def dpre_view(self, start: int, stop: int) -> str:
        if (start, stop) not in self.dviews:
            self.dviews[(start, stop)] = f"DP_{start}_{stop}"
            self.w(f"DP_{start}_{stop} = dpre[{self.lay.all_cols(start, stop)}].unbind(0)")
        return f"{self.dviews[(start, stop)]}[t]"

    # -- gradient accumulation (out of place, so a first contribution may simply alias) ----

    def _note_use(self, name: str) -> None:
        if name in self.plan.linear_sources:
            self.pending_uses[name] -= 1
            if self.pending_uses[name] == 0:
                self.final[name] = _grad(name)

    def _accumulate(self, name: str, first: str, more: str) -> None:
        self.body(f"{_grad(name)} = {more if name in self.defined else first}")
        self.defined.add(name)
        self._note_use(name)

    def contribute(self, name: str, expr: str) -> None:
        self._accumulate(name, expr, f"{_grad(name)} + {expr}")

    def contribute_mul(self, name: str, a: str, b: str) -> None:
        self._accumulate(name, f"{a} * {b}", f"torch.addcmul({_grad(name)}, {a}, {b})")

    def contribute_neg(self, name: str, expr: str) -> None:
        self._accumulate(name, f"-{expr}", f"{_grad(name)} - {expr}")

    def _flush(self) -> None:
        """Write every final, unwritten linear gradient into dpre (one cat per contiguous range),
        then the derivative of every in-place activation group whose gradient is complete."""
        plan, body = self.plan, self.body
        ready = [b for b, n in enumerate(plan.linears) if n in self.final and n not in self.flushed]
        for run in runs_of(ready):
            grads = [self.final[plan.linears[b]] for b in range(run[0], run[1])]
            view = self.dpre_view(*run)
            if len(grads) == 1:
                body(f"{view}.copy_({grads[0]})")
            else:
                body(f"torch.cat([{', '.join(grads)}], {2 if self.batched else 1}, out={view})")
            self.flushed.update(plan.linears[b] for b in range(run[0], run[1]))
        for g in plan.groups:
            if g.inplace and g.linears[0] in self.flushed and g.linears[0] not in self.done_groups:
                self.done_groups.add(g.linears[0])
                if g.op != "shift":
                    self._inplace_group_derivative(g)

    def _inplace_group_derivative(self, g: ActGroup) -> None:
        body, view = self.body, self.dpre_view(g.start, g.stop)
        if g.op in ("sigmoid", "tanh"):
            # From the activation's output y, on data still in cache (cheaper than a
            # whole-sequence precompute): sigmoid' = y - y*y, tanh' = 1 - y*y.
            if f"g{g.start}" not in self.ys:
                self.ys.add(f"g{g.start}")
                self.w(f"U_Y_g{g.start} = pre[{self.lay.all_cols(g.start, g.stop)}].unbind(0)")
            body(f"y = U_Y_g{g.start}[t]")
            if g.op == "sigmoid":
                body(f"{view}.mul_(torch.addcmul(y, y, y, value=-1.0))")
            else:
                body(f"d = {view}")
                body("d.addcmul_(d * y, y, value=-1.0)")
            return
        if g.op in CONSTANT_DERIVATIVE:
            factor = CONSTANT_DERIVATIVE[g.op].format(attr=repr(g.attr))
        else:
            buffer = f"pre[{self.lay.all_cols(g.start, g.stop)}]"
            factor = self.derivative(f"g{g.start}", buffer, g.op, g.attr)
        body(f"{view}.mul_({factor})")

    # -- the loop body, one method per kind of step ----------------------------------------

    def _step_start(self) -> None:
        body = self.body
        if self.batched:  # final states of members whose sequence ends at step t
            body("J = inject.get(t)")
            body("if J is not None:")
            for i in range(self.plan.num_states):
                body(f"    g_s_{i} = g_s_{i} + J[{i}]")
        # State outputs of step t receive the carried gradient (plus the output's, for state 0).
        body("go_0 = g_s_0 + U_dout[t]")
        for index, o in enumerate(self.plan.outputs):
            self.contribute(o, "go_0" if index == 0 else f"g_s_{index}")

    def _node(self, task: NodeStep) -> None:
        n, gn = task.name, _grad(task.name)
        ins = list(task.inputs)  # gradients flow through identity nodes; values resolve them
        if n not in self.defined:  # cannot happen: every node reaches an output
            raise AssertionError(f"no gradient reaches node {n}")
        if task.op in ("add", "identity", "shift"):
            for name_in in ins:
                self.contribute(name_in, gn)
        elif task.op == "sub":
            self.contribute(ins[0], gn)
            self.contribute_neg(ins[1], gn)
        elif task.op == "mul":
            self._mul(task)
        elif task.op == "blend":
            z, first, second = ins
            self.body(f"gz_{n} = {gn} * {self.value(z)}")
            self.contribute(first, f"gz_{n}")
            self.contribute(second, f"({gn} - gz_{n})")
            self.body(f"dd_{n} = {self.value(first)} - {self.value(second)}")
            self.contribute_mul(z, gn, f"dd_{n}")
        elif task.op == "diag":
            self.contribute_mul(ins[0], gn, f"d_{n}")
            self.body(f"L_gd_{n}.append({gn})")
        elif task.op in SAVES_OUTPUT:
            self.contribute_mul(ins[0], gn, self.derivative(n, self.buffer_of(n), task.op, task.attr))
        elif task.op == "scale":
            self.contribute(ins[0], f"({gn} * {task.attr!r})")
        elif task.op == "one_minus":
            self.contribute_neg(ins[0], gn)
        else:
            raise AssertionError(task.op)

    def _mul(self, task: NodeStep) -> None:
        n, ins = task.name, list(task.inputs)
        for p, name_in in enumerate(ins):
            others = [self.value(o) for q, o in enumerate(ins) if q != p]
            if len(others) > 1:
                self.body(f"p_{n}_{p} = {' * '.join(others)}")
                self.contribute_mul(name_in, _grad(n), f"p_{n}_{p}")
            else:
                self.contribute_mul(name_in, _grad(n), others[0])

    def _act_group(self, task: ActGroup) -> None:
        if task.inplace:  # the derivative is applied to dpre in place when flushed
            for lin, node in zip(task.linears, task.nodes, strict=True):
                self.final[lin] = _grad(node)
                self.pending_uses[lin] = 0
            return
        for block, (lin, node) in enumerate(zip(task.linears, task.nodes, strict=True)):
            if task.op in CONSTANT_DERIVATIVE:
                factor = CONSTANT_DERIVATIVE[task.op].format(attr=repr(task.attr))
                self.contribute(lin, f"({_grad(node)} * {factor})")
            else:
                buffer = f"A_{task.buffer}[{self.lay.all_cols(block, block + 1)}]"
                d = self.derivative(f"a{task.buffer}_{block}", buffer, task.op, task.attr)
                self.contribute_mul(lin, _grad(node), d)

    def _product(self, task: Product) -> None:
        self._flush()
        src = task.source
        add_fn, mm_fn = ("torch.baddbmm", "torch.bmm") if self.batched else ("torch.addmm", "torch.mm")
        for j, run in enumerate(task.runs):
            rows = self.lay.rows(f"weights[{task.weight}]", run.row, run.stop - run.start)
            self.w(f"W_{task.weight}_{j} = {rows}")
            view = self.dpre_view(run.start, run.stop)
            if src in self.defined:
                self.body(f"{_grad(src)} = {add_fn}({_grad(src)}, {view}, W_{task.weight}_{j})")
            else:
                self.body(f"{_grad(src)} = {mm_fn}({view}, W_{task.weight}_{j})")
                self.defined.add(src)
        self._note_use(src)

    def _step_end(self) -> None:
        """The last flush, then the states' gradients carried to step t - 1 and x's of step t."""
        plan, body = self.plan, self.body
        self._flush()
        missing = [n for n in plan.linears if n not in self.flushed]
        if missing:
            raise AssertionError(f"linear gradients never written: {missing}")
        for i in range(plan.num_states):
            src = f"h_prev_{i}"
            body(f"g_s_{i} = {_grad(src)}" if src in self.defined else f"g_s_{i} = torch.zeros_like(g_s_{i})")
        if plan.x_per_step:
            g_x = _grad("x") if "x" in self.defined else "torch.zeros_like(U_x[t])"
            body(f"L_gx.append({g_x})")

    # -- after the loop: the gradients batched over all steps --------------------------------

    def _lone_gradients(self) -> None:
        """Gradients of weights, bias, diag and x, each from all steps at once."""
        plan, w = self.plan, self.w
        L = len(plan.linears)
        if L:
            w(f"dpre2 = dpre.view(T * B, {L} * H)")
            w("d_bias = dpre2.sum(0)")
        else:
            w("d_bias = torch.zeros_like(bias)")
        w("d_weights = []")
        for j, src in enumerate(plan.weight_sources):
            product = plan.hoisted if src == "x" else _product_of(plan, src)
            assert product is not None
            if src == "x":
                rows_src = "x.reshape(T * B, x.shape[2])"
            else:
                rows_src = f"{self.buffer_of(src)}.reshape(T * B, H)"
            w(f"src_{j} = {rows_src}")
            w(f"dw_{j} = torch.empty_like(weights[{j}])")
            for run in product.runs:
                rows = f"{run.row} * H:{run.row + run.stop - run.start} * H"
                w(f"torch.mm(dpre2[:, {cols(run.start, run.stop)}].t(), src_{j}, out=dw_{j}[{rows}])")
            w(f"d_weights.append(dw_{j})")
        self._lone_x_gradient()
        if plan.diags:
            parts = [
                f"(torch.stack(L_gd_{n}[::-1]) * {self.buffer_of(diag_input(plan, n))}).sum((0, 1))"
                for n in plan.diags
            ]
            w(f"d_diag = torch.stack([{', '.join(parts)}])")
        else:
            w("d_diag = None")
        states = ", ".join(f"g_s_{i}" for i in range(plan.num_states))
        w(f"return d_x, [{states}], d_weights, d_bias, d_diag")

    def _lone_x_gradient(self) -> None:
        plan, w = self.plan, self.w
        w("d_x = None")
        w("if need_x:")
        w.depth += 1
        if plan.hoisted is not None:
            j = plan.hoisted.weight
            for r, run in enumerate(plan.hoisted.runs):
                rows = f"{run.row} * H:{run.row + run.stop - run.start} * H"
                part = f"dpre2[:, {cols(run.start, run.stop)}], weights[{j}][{rows}]"
                w(f"d_x = torch.mm({part})" if r == 0 else f"d_x = torch.addmm(d_x, {part})")
            w("d_x = d_x.view(x.shape)")
        if plan.x_per_step:
            w("g_x_all = torch.stack(L_gx[::-1])  # collected backwards in time")
            w("d_x = g_x_all if d_x is None else d_x + g_x_all")
        w("if d_x is None:")
        w("    d_x = torch.zeros_like(x)")
        w.depth -= 1

    def _batched_gradients(self) -> None:
        """Weight gradients (one ``bmm`` over all steps per run), ``d_x`` of x's per-step uses,
        ``d_pre`` and ``d_diag``."""
        plan, w = self.plan, self.w
        L = len(plan.linears)
        w("P = d_out.shape[1]")
        if L:  # member-major rows for the weights' products (one copy)
            w(f"dpre2 = dpre.transpose(0, 1).reshape(P, T * B, {L} * H)")
        w("d_weights = []")
        for j, src in enumerate(plan.weight_sources):
            if src == "x":  # the hoisted product: autograd differentiates it outside
                w("d_weights.append(None)")
                continue
            product = _product_of(plan, src)
            w(f"src_{j} = {self.buffer_of(src)}.transpose(0, 1).reshape(P, T * B, H)")
            if len(product.runs) == 1:
                run = product.runs[0]
                part = f"dpre2[..., {cols(run.start, run.stop)}].transpose(1, 2), src_{j}"
                w(f"d_weights.append(torch.bmm({part}))")
                continue
            w(f"dw_{j} = torch.empty_like(weights[{j}])")
            for run in product.runs:
                rows = f"{run.row} * H:{run.row + run.stop - run.start} * H"
                part = f"dpre2[..., {cols(run.start, run.stop)}].transpose(1, 2), src_{j}"
                w(f"dw_{j}[:, {rows}].copy_(torch.bmm({part}))")
            w(f"d_weights.append(dw_{j})")
        w("d_x = torch.stack(L_gx[::-1])" if plan.x_per_step else "d_x = None")
        if plan.diags:
            parts = [
                f"(torch.stack(L_gd_{n}[::-1]) * {self.buffer_of(diag_input(plan, n))}).sum((0, 2))"
                for n in plan.diags
            ]
            w(f"d_diag = torch.stack([{', '.join(parts)}], 1)")
        else:
            w("d_diag = None")
        d_pre = "dpre" if L else "None"
        states = ", ".join(f"g_s_{i}" for i in range(plan.num_states))
        w(f"return d_x, [{states}], d_weights, {d_pre}, d_diag")


def _uses(plan: Plan) -> dict[str, int]:
    """How many readers (nodes, activation groups, products, state outputs) each value has."""
    uses: dict[str, int] = {}
    for task in plan.tasks:
        if isinstance(task, NodeStep):
            for name_in in task.inputs:
                uses[name_in] = uses.get(name_in, 0) + 1
        elif isinstance(task, ActGroup):
            for lin in task.linears:
                uses[lin] = uses.get(lin, 0) + 1
        elif isinstance(task, Product):
            uses[task.source] = uses.get(task.source, 0) + 1
    for o in plan.outputs:
        uses[o] = uses.get(o, 0) + 1
    return uses


def _product_of(plan: Plan, source: str) -> Product:
    return next(t for t in plan.tasks if isinstance(t, Product) and t.source == source)
