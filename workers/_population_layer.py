"""One recurrent layer of a population: P members' weights stacked, one batched time loop.

The layer follows the fused layout of :func:`cells.build_layer` (``cells/_compile_plan.py``):
one weight matrix per input source, one bias vector and one diag matrix per layer, here with
a leading member dimension. Every ``linear`` term that reads only ``x`` is one batched matrix
product over all steps and members before the loop (``hoist``); each step adds one
``torch.baddbmm`` per other source and applies the cell's elementwise ops to ``[P, B, H]``
tensors, so Python's per-op overhead is paid once for all members.

Autograd differentiates the loop, except for the weights of the per-step products: those
run through :class:`_StepProduct`, whose backward only propagates to its input and keeps
the output gradient on a :class:`_Tape`; the weight's gradient is then one batched product
over all steps (``[P, n*H, T*B] @ [P, T*B, in]``) instead of one small product per step.

Example:
    >>> import torch
    >>> from cells import build_layer, library
    >>> solo = [build_layer(library.get("gru"), 4, 4) for _ in range(3)]
    >>> weights = [torch.stack([s.layers[0].weights[j] for s in solo]) for j in range(2)]
    >>> bias = torch.stack([s.layers[0].bias for s in solo])
    >>> x = torch.randn(3, 5, 2, 4)  # [P, T, B, in]
    >>> plan = solo[0].program.plan
    >>> out, _ = run_layer(plan, hoist(plan, x, weights, bias), x, [torch.zeros(3, 2, 4)], weights, bias, None)
    >>> expected, _ = solo[1](x[1])
    >>> torch.allclose(out[1], expected, atol=1e-6)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cells._compile_plan import ActGroup, NodeStep, Plan, Product, Run
from cells._graph import INPUT_X
from cells._reference import apply_op


def apply_step_op(op: str, attr: float, args: list[Tensor]) -> Tensor:
    """An elementwise op of the plan's schedule (``attr``: slope, alpha or beta)."""
    if op == "leaky_relu":
        return F.leaky_relu(args[0], attr)
    if op == "scale":
        return args[0] * attr
    if op == "shift":
        return args[0] + attr
    return apply_op(op, {}, args)


class _Tape:
    """The per-step sources and output gradients of one weight's products, for its gradient."""

    def __init__(self) -> None:
        self.sources: dict[int, Tensor] = {}
        self.grads: dict[int, Tensor] = {}

    def weight_grad(self) -> Tensor | None:
        steps = sorted(self.grads)
        if not steps:
            return None
        members = self.grads[steps[0]].shape[0]
        d_out = torch.stack([self.grads[t] for t in steps], 1).reshape(members, -1, self.grads[steps[0]].shape[-1])
        src = torch.stack([self.sources[t] for t in steps], 1).reshape(members, -1, self.sources[steps[0]].shape[-1])
        return torch.bmm(d_out.transpose(1, 2), src)


class _SharedWeight(torch.autograd.Function):
    """An alias of a stacked weight whose gradient is computed once from its :class:`_Tape`.

    Autograd runs this backward after every product that read the alias (they depend on it).
    """

    @staticmethod
    def forward(ctx: Any, weight: Tensor, tape: _Tape) -> Tensor:
        ctx.tape = tape
        ctx.set_materialize_grads(False)
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx: Any, _unused: Tensor | None) -> Any:
        grad = ctx.tape.weight_grad()
        ctx.tape = None  # free the kept sources and gradients
        return grad, None


class _StepProduct(torch.autograd.Function):
    """``addend + src @ weight^T`` per member; the weight's gradient is left to the tape."""

    @staticmethod
    def forward(ctx: Any, addend: Tensor | None, src: Tensor, weight: Tensor, tape: _Tape, step: int) -> Tensor:
        ctx.save_for_backward(weight)
        ctx.tape, ctx.step, ctx.has_addend = tape, step, addend is not None
        ctx.set_materialize_grads(False)
        tape.sources[step] = src.detach()
        if addend is None:
            return torch.bmm(src, weight.transpose(1, 2))
        return torch.baddbmm(addend, src, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, d_out: Tensor | None) -> Any:
        if d_out is None:
            return None, None, None, None, None
        (weight,) = ctx.saved_tensors
        ctx.tape.grads[ctx.step] = d_out
        d_src = torch.bmm(d_out, weight) if ctx.needs_input_grad[1] else None
        return (d_out if ctx.has_addend else None), d_src, None, None, None


def _rows(run: Run, H: int) -> slice:
    return slice(run.row * H, (run.row + run.stop - run.start) * H)


def _cols(start: int, stop: int, H: int) -> slice:
    return slice(start * H, stop * H)


def hoist(plan: Plan, x: Tensor | None, weights: Sequence[Tensor], bias: Tensor, x_product: Tensor | None = None) -> Tensor | None:
    """Pre-activations of every linear from ``x`` and the biases, all steps: ``[P, T, B, L*H]``.

    ``x`` is ``[P, T, B, in]``; ``x_product`` replaces ``x @ W_x^T`` when the caller has it
    already (``[P, T, B, n_x*H]``, e.g. gathered from an embedding folded into ``W_x``).
    None when the cell has no linear.
    """
    L = len(plan.linears)
    if L == 0:
        return None
    P, H = bias.shape[0], bias.shape[1] // L
    source = x_product if x_product is not None else x
    assert source is not None
    T, B = source.shape[1], source.shape[2]
    hoisted = plan.hoisted
    if hoisted is None:
        return bias[:, None, None, :].expand(P, T, B, L * H)
    w_x = weights[hoisted.weight]
    full = hoisted.runs == (Run(0, L, 0),)
    if x_product is None:
        assert x is not None
        rows = x.reshape(P, T * B, x.shape[-1])
        if full:
            return torch.baddbmm(bias[:, None, :], rows, w_x.transpose(1, 2)).view(P, T, B, L * H)
        x_product = torch.bmm(rows, w_x.transpose(1, 2)).view(P, T, B, -1)
    if full:
        return x_product + bias[:, None, None, :]
    pieces, cursor = [], 0
    for run in hoisted.runs:
        if run.start > cursor:
            pieces.append(bias[:, None, None, _cols(cursor, run.start, H)].expand(P, T, B, (run.start - cursor) * H))
        pieces.append(x_product[..., _rows(run, H)] + bias[:, None, None, _cols(run.start, run.stop, H)])
        cursor = run.stop
    if cursor < L:
        pieces.append(bias[:, None, None, _cols(cursor, L, H)].expand(P, T, B, (L - cursor) * H))
    return torch.cat(pieces, -1)


def run_layer(
    plan: Plan,
    pre: Tensor | None,
    x: Tensor | None,
    init: Sequence[Tensor],
    weights: Sequence[Tensor],
    bias: Tensor,
    diag: Tensor | None,
    lengths: Sequence[int] | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """Run one layer of every member over the sequence.

    ``pre``: the hoisted pre-activations (:func:`hoist`); ``x`` ``[P, T, B, in]`` is only read
    when the cell uses ``x`` outside linears; ``init``: one ``[P, B, H]`` tensor per state.
    Returns the output ``[P, T, B, H]`` and the final states; with ``lengths`` (one per member)
    member m's final states are those after its own ``lengths[m]`` steps (the rest is padding).
    """
    P, B, H = init[0].shape
    T = pre.shape[1] if pre is not None else x.shape[1]  # type: ignore[union-attr]
    L = len(plan.linears)
    steps_pre = pre.unbind(1) if pre is not None else None
    taped = torch.is_grad_enabled() and any(w.requires_grad for w in weights)
    shared: dict[int, Tensor] = {}
    tapes: dict[int, _Tape] = {}
    for task in plan.tasks:
        if isinstance(task, Product) and task.weight not in shared:
            w = weights[task.weight]
            if taped:
                tapes[task.weight] = _Tape()
                w = _SharedWeight.apply(w, tapes[task.weight])
            shared[task.weight] = w
    steps_x = x.unbind(1) if plan.x_per_step and x is not None else None
    pending_start = {n: sum(1 for s in plan.linear_sources[n] if s != INPUT_X) for n in plan.linears}
    x_only = [n for n in plan.linears if pending_start[n] == 0]
    states = list(init)
    history: list[list[Tensor]] = [[s] for s in states]
    diags = diag.unsqueeze(2).unbind(1) if diag is not None else ()
    for t in range(T):
        values: dict[str, Tensor] = {f"h_prev_{i}": s for i, s in enumerate(states)}
        if steps_x is not None:
            values[INPUT_X] = steps_x[t]
        g = steps_pre[t] if steps_pre is not None else None
        for name in x_only:
            b = plan.linears.index(name)
            values[name] = g[..., _cols(b, b + 1, H)]  # type: ignore[index]
        pending = dict(pending_start)
        for task in plan.tasks:
            if isinstance(task, Product):
                g = _add_product(g, values[task.source], shared[task.weight], task, tapes.get(task.weight), t, L, H)
                for name in plan.weight_rows[task.weight]:
                    pending[name] -= 1
                    if pending[name] == 0:
                        b = plan.linears.index(name)
                        values[name] = g[..., _cols(b, b + 1, H)]
            elif isinstance(task, ActGroup):
                a = apply_step_op(task.op, task.attr, [g[..., _cols(task.start, task.stop, H)]])  # type: ignore[index]
                for b, node in enumerate(task.nodes):
                    values[node] = a[..., _cols(b, b + 1, H)]
            elif isinstance(task, NodeStep):
                args = [values[i] for i in task.inputs]
                if task.op == "diag":
                    values[task.name] = args[0] * diags[plan.diags.index(task.name)]
                else:
                    values[task.name] = apply_step_op(task.op, task.attr, args)
        states = [values[o] for o in plan.outputs]
        for i, s in enumerate(states):
            history[i].append(s)
    out = torch.stack(history[0][1:], 1)
    if lengths is None or all(n == T for n in lengths):
        return out, states
    index = torch.as_tensor(list(lengths), device=out.device)
    members = torch.arange(P, device=out.device)
    return out, [torch.stack(h)[index, members] for h in history]


def _add_product(
    g: Tensor | None, src: Tensor, weight: Tensor, task: Product, tape: _Tape | None, t: int, L: int, H: int
) -> Tensor:
    """``g`` with ``src @ weight^T`` added into the product's blocks."""
    assert g is not None  # a product means the cell has linears

    def product(addend: Tensor | None) -> Tensor:
        if tape is None:
            wt = weight.transpose(1, 2)
            return torch.bmm(src, wt) if addend is None else torch.baddbmm(addend, src, wt)
        return _StepProduct.apply(addend, src, weight, tape, t)

    if len(task.runs) == 1:
        run = task.runs[0]
        if run.start == 0 and run.stop == L:
            return product(g)
        middle = product(g[..., _cols(run.start, run.stop, H)])
        return torch.cat([g[..., : run.start * H], middle, g[..., run.stop * H :]], -1)
    full = product(None)
    pieces, cursor = [], 0
    for run in task.runs:
        if run.start > cursor:
            pieces.append(g[..., _cols(cursor, run.start, H)])
        pieces.append(g[..., _cols(run.start, run.stop, H)] + full[..., _rows(run, H)])
        cursor = run.stop
    if cursor < L:
        pieces.append(g[..., cursor * H :])
    return torch.cat(pieces, -1)
