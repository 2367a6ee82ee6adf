"""The autograd oracle of the population layer: the batched layer's computation op by op,
the reference the tests hold the generated code (:func:`cells._compile_population.run_sequence`)
and its hand-derived backward to.

The weights of its per-step products run through :class:`_StepProduct`, whose backward keeps
the output gradient on a :class:`_Tape`, so their gradient is still one batched product over
all steps.

Example:
    >>> import torch
    >>> from cells import build_layer, library
    >>> solo = [build_layer(library.get("gru"), 4, 4) for _ in range(3)]
    >>> weights = [torch.stack([s.layers[0].weights[j] for s in solo]) for j in range(2)]
    >>> bias = torch.stack([s.layers[0].bias for s in solo])
    >>> x = torch.randn(3, 5, 2, 4)  # [P, T, B, in]
    >>> plan = solo[0].program.plan
    >>> pre = hoist(plan, x, weights, bias)
    >>> out, _ = run_layer(plan, pre, x, [torch.zeros(3, 2, 4)], weights, bias, None)
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

from cells._compile_plan import ActGroup, NodeStep, Plan, Product, Run, fused_mul_adds
from cells._compile_population import hoist_all
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
        d_out = torch.stack([self.grads[t] for t in steps], 1)  # [P, steps, B, n*H]
        src = torch.stack([self.sources[t] for t in steps], 1)  # [P, steps, B, in]
        rows = d_out.shape[1] * d_out.shape[2]
        return torch.bmm(
            d_out.view(-1, rows, d_out.shape[3]).transpose(1, 2), src.view(-1, rows, src.shape[3])
        )


class _SharedWeight(torch.autograd.Function):
    """``weight`` -> its contiguous transpose ``[P, in, n*H]`` for the per-step products; the
    weight's gradient is computed once, from its :class:`_Tape`.

    Autograd runs this backward after every product that read the transpose (they depend on it).
    """

    @staticmethod
    def forward(ctx: Any, weight: Tensor, tape: _Tape) -> Tensor:
        ctx.tape = tape
        ctx.set_materialize_grads(False)
        return weight.transpose(1, 2).contiguous()

    @staticmethod
    def backward(ctx: Any, _unused: Tensor | None) -> Any:
        return ctx.tape.weight_grad(), None


class _StepProduct(torch.autograd.Function):
    """``addend + src @ weight^T`` per member; the weight's gradient is left to the tape.

    ``weight`` (``[P, n*H, in]``, detached) serves the backward, ``weight_t`` (its transpose
    from :class:`_SharedWeight`) the forward.
    """

    @staticmethod
    def forward(
        ctx: Any, addend: Tensor, src: Tensor, weight: Tensor, weight_t: Tensor, tape: _Tape, step: int
    ) -> Tensor:
        ctx.save_for_backward(weight)
        ctx.tape, ctx.step = tape, step
        ctx.set_materialize_grads(False)
        tape.sources[step] = src.detach()
        return torch.baddbmm(addend, src, weight_t)

    @staticmethod
    def backward(ctx: Any, d_out: Tensor | None) -> Any:
        if d_out is None:
            return None, None, None, None, None, None
        (weight,) = ctx.saved_tensors
        ctx.tape.grads[ctx.step] = d_out
        d_src = torch.bmm(d_out, weight) if ctx.needs_input_grad[1] else None
        return d_out, d_src, None, None, None, None


def _rows(run: Run, H: int) -> slice:
    return slice(run.row * H, (run.row + run.stop - run.start) * H)


class _Blocks:
    """One step's pre-activations as contiguous segments of linear blocks.

    Segments are cut with ``split`` and joined with ``cat`` only where the schedule needs it:
    autograd differentiates those cheaply, whereas a basic slice's backward allocates and
    zero-fills its whole input for every slice.
    """

    def __init__(self, whole: Tensor, num_blocks: int, H: int) -> None:
        self.H = H
        self.segments: list[tuple[int, int, Tensor]] = [(0, num_blocks, whole)]

    def get(self, start: int, stop: int) -> Tensor:
        self._cut(start)
        self._cut(stop)
        inside = [k for k, (s, e, _) in enumerate(self.segments) if start <= s and e <= stop]
        if len(inside) == 1:
            return self.segments[inside[0]][2]
        joined = torch.cat([self.segments[k][2] for k in inside], -1)
        self.segments[inside[0] : inside[-1] + 1] = [(start, stop, joined)]
        return joined

    def set(self, start: int, stop: int, value: Tensor) -> None:
        """Replace blocks ``start:stop`` (one segment, as :meth:`get` left it)."""
        k = next(k for k, (s, e, _) in enumerate(self.segments) if (s, e) == (start, stop))
        self.segments[k] = (start, stop, value)

    def _cut(self, at: int) -> None:
        for k, (s, e, t) in enumerate(self.segments):
            if s < at < e:
                left, right = t.split([(at - s) * self.H, (e - at) * self.H], -1)
                self.segments[k : k + 1] = [(s, at, left), (at, e, right)]
                return


def _add_with_muls(task: NodeStep, values: dict[str, Tensor], muls: dict[str, NodeStep]) -> Tensor:
    plain = [values[i] for i in task.inputs if i not in muls]
    pending = [muls[i] for i in task.inputs if i in muls]
    if plain:
        out = plain[0]
        for v in plain[1:]:
            out = out + v
    else:
        first = pending.pop(0)
        out = values[first.inputs[0]] * values[first.inputs[1]]
    for m in pending:
        out = torch.addcmul(out, values[m.inputs[0]], values[m.inputs[1]])
    return out


def hoist(plan: Plan, x: Tensor, weights: Sequence[Tensor], bias: Tensor) -> Sequence[Tensor] | None:
    """:func:`hoist_all`, one ``[P, B, L*H]`` tensor per step (for :func:`run_layer`)."""
    pre = hoist_all(plan, x, weights, bias)
    return None if pre is None else pre.unbind(0)


def run_layer(
    plan: Plan,
    pre: Sequence[Tensor] | None,
    x: Tensor | None,
    init: Sequence[Tensor],
    weights: Sequence[Tensor],
    bias: Tensor,
    diag: Tensor | None,
    lengths: Sequence[int] | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """Run one layer of every member over the sequence.

    ``pre``: each step's hoisted pre-activations (:func:`hoist`); ``x`` ``[P, T, B, in]`` is only read
    when the cell uses ``x`` outside linears; ``init``: one ``[P, B, H]`` tensor per state.
    Returns the output ``[P, T, B, H]`` and the final states; with ``lengths`` (one per member)
    member m's final states are those after its own ``lengths[m]`` steps (the rest is padding).
    """
    P, _, H = init[0].shape
    T = len(pre) if pre is not None else x.shape[1]  # type: ignore[union-attr]
    L = len(plan.linears)
    products = _step_products(plan, weights, H)
    steps_x = x.unbind(1) if plan.x_per_step and x is not None else None
    pending_start = {n: sum(1 for s in plan.linear_sources[n] if s != INPUT_X) for n in plan.linears}
    x_only = [n for n in plan.linears if pending_start[n] == 0]
    block = {name: b for b, name in enumerate(plan.linears)}
    steps = {t.name: t for t in plan.tasks if isinstance(t, NodeStep)}
    fused = fused_mul_adds(plan)
    muls_of = {add: {m: steps[m] for m, a in fused.items() if a == add} for add in set(fused.values())}
    diags = diag.unsqueeze(2).unbind(1) if diag is not None else ()
    states = list(init)
    history: list[list[Tensor]] = [[s] for s in states]
    for t in range(T):
        values: dict[str, Tensor] = {f"h_prev_{i}": s for i, s in enumerate(states)}
        if steps_x is not None:
            values[INPUT_X] = steps_x[t]
        blocks = _Blocks(pre[t], L, H) if pre is not None else None
        for name in x_only:
            values[name] = blocks.get(block[name], block[name] + 1)  # type: ignore[union-attr]
        pending = dict(pending_start)
        for task in plan.tasks:
            if isinstance(task, Product):
                assert blocks is not None
                src = values[task.source]
                for k, run in enumerate(task.runs):
                    w, w_t, tape = products[(task.weight, k)]
                    addend = blocks.get(run.start, run.stop)
                    if tape is None:
                        out = torch.baddbmm(addend, src, w_t)
                    else:
                        out = _StepProduct.apply(addend, src, w.detach(), w_t, tape, t)
                    blocks.set(run.start, run.stop, out)
                for name in plan.weight_rows[task.weight]:
                    pending[name] -= 1
                    if pending[name] == 0:
                        values[name] = blocks.get(block[name], block[name] + 1)
            elif isinstance(task, ActGroup):
                assert blocks is not None
                a = apply_step_op(task.op, task.attr, [blocks.get(task.start, task.stop)])
                parts = a.split(H, -1) if len(task.nodes) > 1 else (a,)
                values.update(zip(task.nodes, parts, strict=True))
            elif task.name not in fused:  # a fused mul is computed inside its add
                values[task.name] = _node_value(task, values, plan, muls_of, diags)
        states = [values[o] for o in plan.outputs]
        for i, s in enumerate(states):
            history[i].append(s)
    out = torch.stack(history[0][1:], 1)
    if lengths is None or all(n == T for n in lengths):
        return out, states
    index = torch.as_tensor(list(lengths), device=out.device)
    members = torch.arange(P, device=out.device)
    return out, [torch.stack(h)[index, members] for h in history]


def _step_products(
    plan: Plan, weights: Sequence[Tensor], H: int
) -> dict[tuple[int, int], tuple[Tensor, Tensor, _Tape | None]]:
    """(weight, run) -> the run's weight rows, their shared transpose and their tape."""
    taped = torch.is_grad_enabled() and any(w.requires_grad for w in weights)
    products: dict[tuple[int, int], tuple[Tensor, Tensor, _Tape | None]] = {}
    for task in plan.tasks:
        if isinstance(task, Product):
            for k, run in enumerate(task.runs):
                w = weights[task.weight]
                w = w if len(task.runs) == 1 else w[:, _rows(run, H)]
                tape = _Tape() if taped else None
                # One contiguous transposed copy per forward: faster products at every step.
                w_t = _SharedWeight.apply(w, tape) if tape is not None else w.transpose(1, 2).contiguous()
                products[(task.weight, k)] = (w, w_t, tape)
    return products


def _node_value(
    task: NodeStep,
    values: dict[str, Tensor],
    plan: Plan,
    muls_of: dict[str, dict[str, NodeStep]],
    diags: Sequence[Tensor],
) -> Tensor:
    if task.op == "add" and task.name in muls_of:
        return _add_with_muls(task, values, muls_of[task.name])
    if task.op == "diag":
        return values[task.inputs[0]] * diags[plan.diags.index(task.name)]
    if task.op == "blend":  # z * a + (1 - z) * b = b + z * (a - b)
        z, a, b = (values[i] for i in task.inputs)
        return torch.lerp(b, a, z)
    return apply_step_op(task.op, task.attr, [values[i] for i in task.inputs])
