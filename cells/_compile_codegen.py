"""Code generation for compiled cell layers: a :class:`Plan` -> Python source, exec'd once.

Three functions are generated per cell structure (see ``cells/_compile.py`` for how they are
used). Each is a flat loop over time steps whose body is a short list of tensor calls: no
dict lookups, no graph walking, no per-node Python objects at run time.

* ``forward`` (``cells/_compile_forward.py``): the sequence without autograd, in place.
* ``backward`` (``cells/_compile_backward.py``): the hand-derived backward of ``forward``.
* ``sequence`` (``cells/_compile_sequence.py``): the same computation with out-of-place
  differentiable ops, for plain autograd and for ``torch.compile``.

The generated source is kept on :class:`Program` (``program.source``) for debugging.

:func:`batched_sources` emits ``forward`` and ``backward`` for a population of P member-stacked
layers (``cells/_compile_population.py``): every tensor gains a member dimension after time
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

from cells._compile_backward import backward_source
from cells._compile_forward import forward_source
from cells._compile_plan import Plan
from cells._compile_sequence import sequence_source


class Program:
    """Generated functions and their source for one cell structure.

    Only ``forward`` is compiled (by Python) up front; ``backward`` and ``sequence`` are
    compiled on first use, which keeps building a layer for a new cell quick.
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.sources = {
            "forward": forward_source(plan),
            "backward": backward_source(plan),
            "sequence": sequence_source(plan),
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
    return {"forward": forward_source(plan, True), "backward": backward_source(plan, True)}
