"""Adam and SGD over member-stacked parameters, with a learning rate and a clipping norm per member.

One optimizer over ``[P, ...]`` tensors does what P separate ``torch.optim`` optimizers would
(the same update formulas as ``torch.optim.Adam`` / ``SGD`` with default settings), but in a
handful of tensor ops, and its state is per member by construction: a member's moments only
ever see that member's gradients, so one member's NaN cannot reach another.

Example:
    >>> import torch
    >>> w = torch.ones(2, 3, requires_grad=True)
    >>> opt = PopulationOptimizer("sgd", learning_rates=[0.1, 1.0], max_grad_norms=[None, None])
    >>> w.grad = torch.ones(2, 3)
    >>> opt.step({"w": w})
    >>> [round(v, 4) for v in w[:, 0].tolist()]
    [0.9, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8
"""torch.optim.Adam's defaults."""

_FUSED_ADAM = getattr(torch, "_fused_adam_", None)
"""The kernel behind ``torch.optim.Adam(fused=True)`` (CPU and CUDA), if this torch has it."""


def _per_member(values: Tensor, like: Tensor) -> Tensor:
    """``[P]`` -> ``[P, 1, 1, ...]`` broadcasting against ``like``."""
    return values.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


class PopulationOptimizer:
    """Gradient clipping by each member's global norm, then an Adam or SGD step per member."""

    def __init__(
        self,
        kind: Literal["adam", "sgd"],
        learning_rates: Sequence[float],
        max_grad_norms: Sequence[float | None],
        device: torch.device | str = "cpu",
    ) -> None:
        if kind not in ("adam", "sgd"):
            raise ValueError(f"optimizer: expected 'adam' or 'sgd', got {kind!r}")
        if len(learning_rates) != len(max_grad_norms):
            raise ValueError("learning_rates and max_grad_norms: one value per member")
        self.kind = kind
        self.learning_rates = torch.tensor(list(learning_rates), dtype=torch.float64, device=device)
        norms = [math.inf if n is None else n for n in max_grad_norms]
        self.max_grad_norms = torch.tensor(norms, dtype=torch.float64, device=device)
        self.state: dict[str, dict[str, Tensor]] = {}
        self.steps: dict[str, int] = {}
        self.unfused = False
        """Use the plain tensor-op Adam even where the fused kernel exists (tests compare them)."""

    def keep(self, members: Sequence[int]) -> None:
        """Keep only ``members`` (indices into the current members), in that order."""
        index = torch.as_tensor(list(members), device=self.learning_rates.device)
        self.learning_rates = self.learning_rates.index_select(0, index)
        self.max_grad_norms = self.max_grad_norms.index_select(0, index)
        self.state = {
            name: {k: v.index_select(0, index.to(v.device)) for k, v in moments.items()}
            for name, moments in self.state.items()
        }

    def _norms(self, parameters: dict[str, Tensor]) -> Tensor:
        """Each member's global gradient norm over all parameters, ``[P]``."""
        grads = [p.grad for p in parameters.values() if p.grad is not None]
        if not grads:
            return self.max_grad_norms.new_zeros(self.max_grad_norms.shape)
        return torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads]).norm(dim=0)

    def clip(self, parameters: dict[str, Tensor]) -> Tensor:
        """Scale each member's gradients to at most its norm; returns the norms before clipping.

        As ``torch.nn.utils.clip_grad_norm_``: factor ``max_norm / (norm + 1e-6)``, at most 1.
        """
        grads = [p.grad for p in parameters.values() if p.grad is not None]
        norms = self._norms(parameters)
        factor = (self.max_grad_norms.to(norms.dtype) / (norms + 1e-6)).clamp(max=1.0)
        if bool((factor < 1.0).any()):
            for g in grads:
                g.mul_(_per_member(factor, g))
        return norms

    @torch.no_grad()
    def step(self, parameters: dict[str, Tensor]) -> None:
        """Clip, then update every parameter that has a gradient."""
        if self.kind == "adam" and _FUSED_ADAM is not None and not self.unfused:
            self._fused_adam_step(parameters)
            return
        self.clip(parameters)
        for name, p in parameters.items():
            g = p.grad
            if g is None:  # as torch.optim: no gradient, no update and no state change
                continue
            rates = self.learning_rates.to(p.device)
            if self.kind == "sgd":
                p.sub_(g * _per_member(rates, p))
                continue
            exp_avg, exp_avg_sq = self._moments(name, p)
            step = self.steps[name] = self.steps.get(name, 0) + 1
            exp_avg.lerp_(g, 1 - BETA1)
            exp_avg_sq.mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
            step_size = _per_member(rates / (1 - BETA1**step), p)  # in float64, as torch's Python float
            denom = (exp_avg_sq.sqrt() / (1 - BETA2**step) ** 0.5).add_(EPS)
            p.sub_((exp_avg / denom).mul_(step_size))

    def _moments(self, name: str, p: Tensor) -> tuple[Tensor, Tensor]:
        state = self.state.get(name)
        if state is None:
            state = self.state[name] = {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
        return state["exp_avg"], state["exp_avg_sq"]

    def _fused_adam_step(self, parameters: dict[str, Tensor]) -> None:
        """torch.optim.Adam(fused=True)'s kernel, once per member (its own learning rate): one
        pass over the memory instead of a dozen."""
        assert _FUSED_ADAM is not None
        self.clip(parameters)
        names = [name for name, p in parameters.items() if p.grad is not None]
        if not names:
            return
        params = [parameters[name] for name in names]
        moments = [self._moments(name, p) for name, p in zip(names, params, strict=True)]
        steps = []
        for name, p in zip(names, params, strict=True):
            self.steps[name] = self.steps.get(name, 0) + 1
            # float32 whatever the parameters' dtype, as torch.optim.Adam(fused=True) keeps it:
            # the CUDA kernel reads the step as float32 (a float64 step reads as garbage there).
            steps.append(torch.tensor(float(self.steps[name]), dtype=torch.float32, device=p.device))
        for m, rate in enumerate(self.learning_rates.tolist()):
            _FUSED_ADAM(
                [p[m] for p in params],
                [p.grad[m] for p in params],  # type: ignore[index]
                [avg[m] for avg, _ in moments],
                [avg_sq[m] for _, avg_sq in moments],
                [],
                steps,
                amsgrad=False,
                lr=rate,
                beta1=BETA1,
                beta2=BETA2,
                weight_decay=0.0,
                eps=EPS,
                maximize=False,
                grad_scale=None,
                found_inf=None,
            )
