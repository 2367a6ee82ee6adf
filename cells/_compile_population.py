"""The batched layer of a population: P members' weights stacked, one generated time loop.

The layer follows the fused layout of :func:`cells.build_layer` (``cells/_compile_plan.py``):
one weight matrix per input source, one bias vector and one diag matrix per layer, here with
a leading member dimension. Every ``linear`` term that reads only ``x`` is one batched matrix
product over all steps and members before the loop (:func:`hoist_all`, time first:
``[T, P, B, L*H]``); each step adds one ``baddbmm`` per other source and applies the cell's
elementwise ops to ``[P, B, H]`` tensors, so Python's per-op overhead is paid once for all
members.

:func:`run_sequence` runs the batched code generated for the cell
(:func:`~cells._compile_codegen.batched_sources`) as one ``torch.autograd.Function`` per layer
with a hand-derived backward, as the lone layer's fused path: no autograd graph per step,
each step's elementwise derivatives and one ``d_pre @ W`` per source, the recurrent weights'
gradients one ``bmm`` over all steps. Autograd only differentiates the hoist (so an embedding
folded into it and the biases need nothing special). :class:`PopulationLayer` is the public
face of these functions for one cell.

Example:
    >>> import torch
    >>> from cells import build_layer, build_population_layer, library
    >>> solo = [build_layer(library.get("gru"), 4, 4) for _ in range(3)]
    >>> weights = [torch.stack([s.layers[0].weights[j] for s in solo]) for j in range(2)]
    >>> bias = torch.stack([s.layers[0].bias for s in solo])
    >>> x = torch.randn(3, 5, 2, 4)  # [P, T, B, in]
    >>> layer = build_population_layer(library.get("gru"))
    >>> pre = layer.hoist(x, weights, bias)
    >>> out, _ = layer.run(pre, None, [torch.zeros(3, 2, 4)], weights, None)
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

from cells._compile_cache import CACHE
from cells._compile_codegen import batched_sources
from cells._compile_plan import Plan, Run
from cells._graph import CellGraph


def _rows(run: Run, H: int) -> slice:
    return slice(run.row * H, (run.row + run.stop - run.start) * H)


def _cols(start: int, stop: int, H: int) -> slice:
    return slice(start * H, stop * H)


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
    """Run one layer of every member over the sequence, time first inside.

    ``pre`` is :func:`hoist_all`'s ``[T, P, B, L*H]`` (biases included; overwritten when no
    gradient is recorded), ``x`` ``[P, T, B, in]`` is only read when the cell uses ``x``
    outside linears; ``init``: one ``[P, B, H]`` tensor per state. Returns the output
    ``[P, T, B, H]`` (a transposed view) and the final states; with ``lengths`` (one per
    member) member m's final states are those after its own ``lengths[m]`` steps (the rest is
    padding). One autograd node per layer, with a hand-derived backward."""
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


class PopulationLayer:
    """The batched layer of one cell structure, for P member-stacked copies of a
    :class:`~cells.CellLayer` layer; build it with :func:`build_population_layer`.

    Parameters are the lone layer's, stacked along a leading member dimension: one weight
    per source (``[P, rows, in]``, :attr:`num_weights` of them), the bias ``[P, L*H]`` and the
    diag ``[P, D, H]`` (or None).
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    @property
    def num_weights(self) -> int:
        """Fused weight matrices per layer (one per input source of the linears)."""
        return len(self.plan.weight_sources)

    @property
    def hoists_x(self) -> bool:
        """Whether some linear reads x, so that :meth:`hoist` does a product (else it only
        broadcasts the biases, and folding an embedding into it gains nothing)."""
        return self.plan.hoisted is not None

    @property
    def reads_x_per_step(self) -> bool:
        """Whether the cell reads x outside linears, so that :meth:`run` needs ``x``."""
        return self.plan.x_per_step

    def hoist(self, x: Tensor, weights: Sequence[Tensor], bias: Tensor) -> Tensor | None:
        """:func:`hoist_all`: every step's pre-activations ``[T, P, B, L*H]`` from ``x`` ``[P, T, B, in]``."""
        return hoist_all(self.plan, x, weights, bias)

    def hoist_tokens(
        self, table: Tensor, ids: Tensor, weights: Sequence[Tensor], bias: Tensor
    ) -> Tensor | None:
        """:func:`hoist_tokens`: :meth:`hoist` of an embedding ``table[ids]``, folded."""
        return hoist_tokens(self.plan, table, ids, weights, bias)

    def run(
        self,
        pre: Tensor | None,
        x: Tensor | None,
        init: Sequence[Tensor],
        weights: Sequence[Tensor],
        diag: Tensor | None,
        lengths: Sequence[int] | None = None,
    ) -> tuple[Tensor, list[Tensor]]:
        """:func:`run_sequence`: the output ``[P, T, B, H]`` and each member's final states."""
        return run_sequence(self.plan, pre, x, init, weights, diag, lengths)


def build_population_layer(graph: CellGraph) -> PopulationLayer:
    """The batched layer of ``graph`` (its analysis shared with :func:`cells.build_layer`'s
    compile cache; the generated batched code is cached per process)."""
    return PopulationLayer(CACHE.program(graph).plan)
