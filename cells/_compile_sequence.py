"""Generated ``sequence(x, states, weights, bias, diag)``: the compiled layer's computation with
out-of-place differentiable ops, for plain autograd (``mode="autograd"``) and ``torch.compile``.
"""

from __future__ import annotations

from cells._compile_emit import FORWARD_OPS, Lines, cols, node_expr, referenced, state_vars, var
from cells._compile_plan import ActGroup, NodeStep, Plan, Product, Run


def sequence_source(plan: Plan) -> str:
    """Source of the generated ``sequence`` of ``plan``."""
    L = len(plan.linears)
    w = Lines()
    w.lines.append("def sequence(x, states, weights, bias, diag):")
    w("T, B = x.shape[0], x.shape[1]")
    w(f"H = bias.shape[0] // {L}" if L else "H = states[0].shape[1]")
    if L:
        _emit_hoisted_steps(w, plan)
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
    for i, v in enumerate(state_vars(plan)):
        w(f"{v} = states[{i}]")
    w("outs = []")
    w("for t in range(T):")
    w.depth += 1
    if plan.x_per_step:
        w(f"{var('x')} = U_x[t]")
    if L:
        w("g = U_pre[t]")
    pending = {n: sum(1 for s in plan.linear_sources[n] if s != "x") for n in plan.linears}
    read = referenced(plan)
    for name in plan.linears:
        if pending[name] == 0 and name in read:
            b = plan.linears.index(name)
            w(f"{var(name)} = g[:, {cols(b, b + 1)}]")
    steps = {t.name: t for t in plan.tasks if isinstance(t, NodeStep)}
    for task in plan.tasks:
        if isinstance(task, Product):
            src = var(plan.alias.get(task.source, task.source))
            if len(task.runs) == 1 and task.runs[0] == Run(0, L, 0):
                w(f"g = torch.addmm(g, {src}, WT_{task.weight})")
            else:
                w(f"g = g.index_add(1, I_{task.weight}, {src} @ WT_{task.weight})")
            for name in plan.weight_rows[task.weight]:
                pending[name] -= 1
                if pending[name] == 0 and name in read:
                    b = plan.linears.index(name)
                    w(f"{var(name)} = g[:, {cols(b, b + 1)}]")
        elif isinstance(task, ActGroup):
            expr = FORWARD_OPS[task.op].format(f"g[:, {cols(task.start, task.stop)}]", attr=repr(task.attr))
            w(f"a = {expr}")
            for b, node in enumerate(task.nodes):
                if node in read:
                    w(f"{var(node)} = a[:, {cols(b, b + 1)}]")
        elif task.op != "identity":
            w(f"{var(task.name)} = {node_expr(task, plan, {}, steps)}")
    outs = [var(plan.alias.get(o, o)) for o in plan.outputs]
    w(f"{', '.join(state_vars(plan))} = {', '.join(outs)}")
    w(f"outs.append({state_vars(plan)[0]})")
    w.depth -= 1
    w(f"return torch.stack(outs), [{', '.join(state_vars(plan))}]")
    return w.text()


def _emit_hoisted_steps(w: Lines, plan: Plan) -> None:
    """``U_pre``: each step's pre-activations, the x products (with their biases) of all steps
    in one product, the other linears' biases broadcast."""
    L = len(plan.linears)
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
            pieces.append(f"torch.addmm(bias[{cols(run.start, run.stop)}], x2, {wx})")
            b = run.stop
        else:
            stop = b
            while stop < L and stop not in covered:
                stop += 1
            pieces.append(f"bias[{cols(b, stop)}].expand(T * B, {stop - b} * H)")
            b = stop
    joined = pieces[0] if len(pieces) == 1 else f"torch.cat([{', '.join(pieces)}], 1)"
    w(f"U_pre = {joined}.view(T, B, {L} * H).unbind(0)")
