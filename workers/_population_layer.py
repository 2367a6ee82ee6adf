"""One recurrent layer of a population: P members' weights stacked, one batched time loop.

The layer follows the fused layout of :func:`cells.build_layer` (``cells/_compile_plan.py``):
one weight matrix per input source, one bias vector and one diag matrix per layer, here with
a leading member dimension. Every ``linear`` term that reads only ``x`` is one batched matrix
product over all steps and members before the loop (:func:`hoist_all`, time first:
``[T, P, B, L*H]``); each step adds one ``baddbmm`` per other source and applies the cell's
elementwise ops to ``[P, B, H]`` tensors, so Python's per-op overhead is paid once for all
members.

Two implementations of the loop:

* :func:`run_sequence` (training and validation): the batched code that
  ``cells/_compile_codegen.py`` generates for the cell (:func:`~cells._compile_codegen.batched_sources`),
  run as one ``torch.autograd.Function`` per layer with a hand-derived backward, as the lone
  trial's fused path: no autograd graph per step, each step's elementwise derivatives and one
  ``d_pre @ W`` per source, the recurrent weights' gradients one ``bmm`` over all steps.
  Autograd only differentiates the hoist (so the embedding fold and the biases need nothing
  special).
* :func:`run_layer`: the same computation through autograd, op by op (the reference the tests
  hold the generated backward to). The weights of its per-step products run through
  :class:`_StepProduct`, whose backward keeps the output gradient on a :class:`_Tape`, so
  their gradient is still one batched product over all steps.

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

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from cells._compile_codegen import batched_sources
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


def _cols(start: int, stop: int, H: int) -> slice:
    return slice(start * H, stop * H)


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


def _fused_mul_adds(plan: Plan) -> dict[str, str]:
    """Two-input mul nodes whose only user is an add: computed inside it by ``torch.addcmul``."""
    users: dict[str, list[str]] = {}
    for task in plan.tasks:
        if isinstance(task, NodeStep):
            for i in task.inputs:
                users.setdefault(i, []).append(task.name)
        elif isinstance(task, Product):  # a product's source must exist as a value
            users.setdefault(task.source, []).append("<product>")
    steps = {t.name: t for t in plan.tasks if isinstance(t, NodeStep)}
    fused = {}
    for name, step in steps.items():
        if step.op != "mul" or len(step.inputs) != 2 or name in plan.outputs:
            continue
        readers = users.get(name, [])
        add = steps.get(readers[0]) if len(readers) == 1 else None
        if add is not None and add.op == "add" and add.inputs.count(name) == 1:
            fused[name] = readers[0]
    return fused


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


def _pre_rows(plan: Plan, rows: Tensor, weights: Sequence[Tensor], bias: Tensor) -> Tensor:
    """``[P, R, in]`` rows -> their pre-activations ``[P, R, L*H]``: the x-linears' products in
    their blocks, every linear's bias."""
    P, R = rows.shape[0], rows.shape[1]
    L = len(plan.linears)
    H = bias.shape[1] // L
    hoisted = plan.hoisted
    if hoisted is None:  # a fresh tensor: the generated forward writes into it
        return bias[:, None, :].repeat(1, R, 1)
    w_t = weights[hoisted.weight].transpose(1, 2)
    if hoisted.runs == (Run(0, L, 0),):
        return torch.baddbmm(bias[:, None, :], rows, w_t)
    product = torch.bmm(rows, w_t)
    pieces, cursor = [], 0
    for run in hoisted.runs:
        if run.start > cursor:
            pieces.append(bias[:, None, _cols(cursor, run.start, H)].expand(P, R, (run.start - cursor) * H))
        pieces.append(product[..., _rows(run, H)] + bias[:, None, _cols(run.start, run.stop, H)])
        cursor = run.stop
    if cursor < L:
        pieces.append(bias[:, None, _cols(cursor, L, H)].expand(P, R, (L - cursor) * H))
    return torch.cat(pieces, -1)


def hoist_all(plan: Plan, x: Tensor, weights: Sequence[Tensor], bias: Tensor) -> Tensor | None:
    """The pre-activations of every step from ``x`` ``[P, T, B, in]`` and the biases (one
    product over all steps and members), time first: ``[T, P, B, L*H]``, a fresh contiguous
    tensor. None when the cell has no linear."""
    if not plan.linears:
        return None
    P, T, B = x.shape[:3]
    pre = _pre_rows(plan, x.reshape(P, T * B, x.shape[3]), weights, bias)
    return pre.view(P, T, B, -1).transpose(0, 1).contiguous()


def hoist(plan: Plan, x: Tensor, weights: Sequence[Tensor], bias: Tensor) -> Sequence[Tensor] | None:
    """:func:`hoist_all`, one ``[P, B, L*H]`` tensor per step (for :func:`run_layer`)."""
    pre = hoist_all(plan, x, weights, bias)
    return None if pre is None else pre.unbind(0)


def hoist_tokens(
    plan: Plan, table: Tensor, ids: Tensor, weights: Sequence[Tensor], bias: Tensor
) -> Tensor | None:
    """:func:`hoist_all` of ``x = table[ids]`` (an embedding without dropout), folded: the
    pre-activations of the ``V`` table rows (``[P, V, H]``) are computed once and gathered by
    ``ids`` (``[P, T, B]``, member m's ids offset by ``m * V``). Cheaper when ``V < T * B``."""
    if not plan.linears:
        return None
    P, V = table.shape[:2]
    folded = _pre_rows(plan, table, weights, bias)
    return F.embedding(ids.transpose(0, 1), folded.reshape(P * V, -1))  # time first


def _tanh(x: Tensor) -> Tensor:
    # tanh(x) = 2 sigmoid(2x) - 1: on CPU, torch's tanh is about 3x slower than these three ops.
    return torch.sigmoid(x * 2.0).mul_(2.0).sub_(1.0) if x.device.type == "cpu" else torch.tanh(x)


def _tanh_(x: Tensor) -> Tensor:
    return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0) if x.device.type == "cpu" else x.tanh_()


_PROGRAMS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {}
_PROGRAMS_SIZE = 256


def _program(plan: Plan) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The generated batched ``forward`` and ``backward`` of ``plan`` (cached per process)."""
    functions = _PROGRAMS.get(plan.key)
    if functions is None:
        scope: dict[str, Any] = {"torch": torch, "functional": F, "tanh": _tanh, "tanh_": _tanh_}
        for name, source in batched_sources(plan).items():
            exec(compile(source, f"<population {name}: {plan.key[:60]}>", "exec"), scope)
        if len(_PROGRAMS) >= _PROGRAMS_SIZE:
            _PROGRAMS.clear()
        functions = _PROGRAMS[plan.key] = (scope["forward"], scope["backward"])
    return functions


def _finals(states_all: Sequence[Tensor], lengths: Sequence[int] | None) -> list[Tensor]:
    """Each member's states after its own number of steps (``states_all``: ``[T+1, P, B, H]``)."""
    if lengths is None:
        return [s[-1] for s in states_all]
    index = torch.as_tensor(list(lengths), device=states_all[0].device)
    members = torch.arange(len(lengths), device=index.device)
    return [s[index, members] for s in states_all]


class _Sequence(torch.autograd.Function):
    """One layer of every member over the whole sequence: generated forward and hand-derived
    backward (``cells/_compile_codegen.py``, batched), so autograd sees one node per layer."""

    @staticmethod
    def forward(
        ctx: Any,
        plan: Plan,
        lengths: Sequence[int] | None,
        pre: Tensor | None,
        x: Tensor | None,
        diag: Tensor | None,
        *rest: Tensor,
    ) -> Any:
        k = plan.num_states
        init, weights = list(rest[:k]), list(rest[k:])
        T = pre.shape[0] if pre is not None else x.shape[0]  # type: ignore[union-attr]
        pre = pre.clone() if pre is not None else None  # the forward writes activations into it
        pre, acts, states_all, saved = _program(plan)[0](pre, x, init, weights, diag, True, T)
        ctx.plan, ctx.lengths = plan, lengths
        ctx.layout = (len(acts), len(states_all), len(saved))
        ctx.save_for_backward(x, diag, pre, *acts, *states_all, *saved, *weights)
        return (states_all[0][1:], *_finals(states_all, lengths))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_out: Tensor, *d_finals: Tensor) -> Any:
        n_acts, n_states, n_saved = ctx.layout
        x, diag, pre, *rest = ctx.saved_tensors
        acts, rest = rest[:n_acts], rest[n_acts:]
        states_all, rest = rest[:n_states], rest[n_states:]
        saved, weights = rest[:n_saved], rest[n_saved:]
        finals, inject = list(d_finals), {}
        T, lengths = d_out.shape[0], ctx.lengths
        if lengths is not None:  # a member's final-state gradient enters at its own last step
            ends = torch.as_tensor(list(lengths), device=d_out.device)
            for n in sorted(set(lengths)):
                mask = (ends == n).to(d_out.dtype).view(-1, 1, 1)
                if n == T:
                    finals = [d * mask for d in d_finals]
                else:
                    inject[n - 1] = [d * mask for d in d_finals]
            if T not in lengths:
                finals = [torch.zeros_like(d) for d in d_finals]
        d_x, d_states, d_weights, d_pre, d_diag = _program(ctx.plan)[1](
            x, pre, acts, states_all, saved, weights, diag, d_out, finals, inject
        )
        return (None, None, d_pre, d_x, d_diag, *d_states, *d_weights)


def run_sequence(
    plan: Plan,
    pre: Tensor | None,
    x: Tensor | None,
    init: Sequence[Tensor],
    weights: Sequence[Tensor],
    diag: Tensor | None,
    lengths: Sequence[int] | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """:func:`run_layer` through generated code, time first inside: ``pre`` is :func:`hoist_all`'s
    ``[T, P, B, L*H]`` (biases included; overwritten when no gradient is recorded), ``x``
    ``[P, T, B, in]`` is only read when the cell uses ``x`` outside linears. Returns the output
    ``[P, T, B, H]`` (a transposed view) and the final states. Same results as :func:`run_layer`,
    with one autograd node per layer and a hand-derived backward."""
    T = pre.shape[0] if pre is not None else x.shape[1]  # type: ignore[union-attr]
    if lengths is not None and all(n == T for n in lengths):
        lengths = None
    x_t = x.transpose(0, 1) if x is not None else None
    tensors = [pre, x_t, diag, *init, *weights]
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        out, *finals = _Sequence.apply(plan, lengths, pre, x_t, diag, *init, *weights)
        return out.transpose(0, 1), finals
    _, _, states_all, _ = _program(plan)[0](pre, x_t, list(init), list(weights), diag, False, T)
    return states_all[0][1:].transpose(0, 1), _finals(states_all, lengths)


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
    steps_x = x.unbind(1) if plan.x_per_step and x is not None else None
    pending_start = {n: sum(1 for s in plan.linear_sources[n] if s != INPUT_X) for n in plan.linears}
    x_only = [n for n in plan.linears if pending_start[n] == 0]
    block = {name: b for b, name in enumerate(plan.linears)}
    steps = {t.name: t for t in plan.tasks if isinstance(t, NodeStep)}
    fused = _fused_mul_adds(plan)
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
            elif task.name in fused:
                continue  # computed inside its add
            elif task.op == "add" and task.name in muls_of:
                values[task.name] = _add_with_muls(task, values, muls_of[task.name])
            elif task.op == "diag":
                values[task.name] = values[task.inputs[0]] * diags[plan.diags.index(task.name)]
            elif task.op == "blend":  # z * a + (1 - z) * b = b + z * (a - b)
                z, a_, b_ = (values[i] for i in task.inputs)
                values[task.name] = torch.lerp(b_, a_, z)
            else:
                values[task.name] = apply_step_op(task.op, task.attr, [values[i] for i in task.inputs])
        states = [values[o] for o in plan.outputs]
        for i, s in enumerate(states):
            history[i].append(s)
    out = torch.stack(history[0][1:], 1)
    if lengths is None or all(n == T for n in lengths):
        return out, states
    index = torch.as_tensor(list(lengths), device=out.device)
    members = torch.arange(P, device=out.device)
    return out, [torch.stack(h)[index, members] for h in history]
