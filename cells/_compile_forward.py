"""Generated forward code: the sequence without autograd (in place on ``pre``) and the same
computation out of place (``sequence``, for plain autograd and ``torch.compile``).

``forward(x, states, weights, bias, diag, save)`` (batched: ``forward(pre, x, states, weights,
diag, save, T)``): ``pre`` (the pre-activations of every linear, all steps) starts as one matrix
product of all of x with the fused x-weights (biases folded in; batched: it comes in as an
argument); each step adds the products of the other sources in place and applies grouped
activations in place. With ``save`` it returns what the backward reads.
"""

from __future__ import annotations

from cells._compile_emit import (
    BATCHED_FORWARD_OPS,
    BATCHED_INPLACE_OPS,
    FORWARD_OPS,
    INPLACE_OPS,
    Layout,
    Lines,
    cols,
    node_expr,
    referenced,
    state_vars,
    var,
)
from cells._compile_plan import ActGroup, NodeStep, Plan, Product, Run, fused_mul_adds


def forward_source(plan: Plan, batched: bool = False) -> str:
    """Source of the generated ``forward`` of ``plan`` (lone or member-stacked)."""
    return _ForwardWriter(plan, batched).source()


class _ForwardWriter:
    """Writes ``forward``: set-up (views of ``pre``, transposed weights, lists of kept values),
    the time loop, then the stacking of what the backward reads."""

    def __init__(self, plan: Plan, batched: bool) -> None:
        self.plan, self.batched, self.lay = plan, batched, Layout(batched)
        self.forward_ops, self.inplace_ops = (
            (BATCHED_FORWARD_OPS, BATCHED_INPLACE_OPS) if batched else (FORWARD_OPS, INPLACE_OPS)
        )
        self.w = Lines()
        self.views: dict[tuple[int, int], str] = {}
        self.saved = sorted(v for v in plan.needed if plan.home(v) == ("saved", 0))
        self.inplace_linears = {lin for g in plan.groups if g.inplace for lin in g.linears}
        self.referenced = referenced(plan)

    def source(self) -> str:
        self._header()
        self._setup()
        self._loop()
        self._finish()
        return self.w.text()

    def _pre_view(self, start: int, stop: int) -> str:
        if (start, stop) not in self.views:
            self.views[(start, stop)] = name = f"P_{start}_{stop}"
            self.w(f"{name} = pre[{self.lay.all_cols(start, stop)}].unbind(0)")
        return self.views[(start, stop)]

    def _header(self) -> None:
        plan, w = self.plan, self.w
        L = len(plan.linears)
        if self.batched:
            w.lines.append("def forward(pre, x, states, weights, diag, save, T):")
            w(f"H = pre.shape[3] // {L}" if L else "H = states[0].shape[2]")
        else:
            w.lines.append("def forward(x, states, weights, bias, diag, save):")
            w("T, B = x.shape[0], x.shape[1]")
            w(f"H = bias.shape[0] // {L}" if L else "H = states[0].shape[1]")
            _emit_hoist(w, plan)

    def _setup(self) -> None:
        plan, w, lay = self.plan, self.w, self.lay
        for task in plan.tasks:
            if isinstance(task, Product):
                for k, run in enumerate(task.runs):
                    self._pre_view(run.start, run.stop)
                    rows = lay.rows(f"weights[{task.weight}]", run.row, run.stop - run.start)
                    w(f"WT_{task.weight}_{k} = {lay.t(rows)}")
            elif isinstance(task, ActGroup):
                self._pre_view(task.start, task.stop)
        for b in range(len(plan.linears)):
            self._pre_view(b, b + 1)
        for i, name in enumerate(plan.diags):
            w(f"d_{name} = diag[:, {i}, None]" if self.batched else f"d_{name} = diag[{i}]")
        if plan.x_per_step:
            w("U_x = x.unbind(0)")
        for i, v in enumerate(state_vars(plan)):
            w(f"{v} = states[{i}]")
            w(f"L_state_{i} = [{v}]")
        for v in self.saved:
            w(f"L_{v} = []")
        for g in plan.groups:
            if not g.inplace:
                w(f"L_act_{g.buffer} = []")

    def _linear_complete(self, name: str) -> None:
        if name not in self.inplace_linears and name in self.referenced:
            b = self.plan.linears.index(name)
            self.w(f"{var(name)} = {self.views[(b, b + 1)]}[t]")

    def _loop(self) -> None:
        plan, w = self.plan, self.w
        fused = fused_mul_adds(plan)
        steps = {t.name: t for t in plan.tasks if isinstance(t, NodeStep)}
        # Linears that read only x are complete before the step starts.
        complete_at_start = [n for n in plan.linears if all(s == "x" for s in plan.linear_sources[n])]
        pending = {n: sum(1 for s in plan.linear_sources[n] if s != "x") for n in plan.linears}
        w("for t in range(T):")
        w.depth += 1
        if plan.x_per_step:
            w(f"{var('x')} = U_x[t]")
        for name in complete_at_start:
            self._linear_complete(name)
        for task in plan.tasks:
            if isinstance(task, Product):
                self._product(task, pending)
            elif isinstance(task, ActGroup):
                self._act_group(task)
            elif task.op != "identity" and task.name not in fused:
                w(f"{var(task.name)} = {node_expr(task, plan, fused, steps, self.forward_ops)}")
                if task.name in self.saved:
                    w(f"if save: L_{task.name}.append({var(task.name)})")
        outs = [var(plan.alias.get(o, o)) for o in plan.outputs]
        w(f"{', '.join(state_vars(plan))} = {', '.join(outs)}")
        for i, v in enumerate(state_vars(plan)):
            w(f"L_state_{i}.append({v})")
        w.depth -= 1

    def _product(self, task: Product, pending: dict[str, int]) -> None:
        plan = self.plan
        src = var(plan.alias.get(task.source, task.source))
        for k, run in enumerate(task.runs):
            method = "baddbmm_" if self.batched else "addmm_"
            self.w(f"{self.views[(run.start, run.stop)]}[t].{method}({src}, WT_{task.weight}_{k})")
        for name in plan.weight_rows[task.weight]:
            pending[name] -= 1
            if pending[name] == 0:
                self._linear_complete(name)

    def _act_group(self, task: ActGroup) -> None:
        w, attr = self.w, repr(task.attr)
        view = f"{self.views[(task.start, task.stop)]}[t]"
        if task.inplace:
            w(self.inplace_ops[task.op].format(view, attr=attr))
            for b, node in enumerate(task.nodes):
                if node in self.referenced:
                    w(f"{var(node)} = {self.views[(task.start + b, task.start + b + 1)]}[t]")
        else:
            w(f"a_{task.buffer} = " + self.forward_ops[task.op].format(view, attr=attr))
            w(f"if save: L_act_{task.buffer}.append(a_{task.buffer})")
            for b, node in enumerate(task.nodes):
                w(f"{var(node)} = a_{task.buffer}[{self.lay.step_cols(b, b + 1)}]")

    def _finish(self) -> None:
        plan, w = self.plan, self.w
        w("pre = pre if save else None")
        w("states_all = [" + ", ".join(f"torch.stack(L_state_{i})" for i in range(plan.num_states)) + "]")
        acts = [f"torch.stack(L_act_{g.buffer}) if save else None" for g in plan.groups if not g.inplace]
        w(f"acts = [{', '.join(acts)}]")
        w(f"saved = [{', '.join(f'torch.stack(L_{v}) if save else None' for v in self.saved)}]")
        w("return pre, acts, states_all, saved")


def _emit_hoist(w: Lines, plan: Plan) -> None:
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
            w(f"pre[:, {cols(run.start, run.stop)}].addmm_(x2, weights[{hoisted.weight}][{rows}].t())")
    w(f"pre = pre.view(T, B, {L} * H)")
