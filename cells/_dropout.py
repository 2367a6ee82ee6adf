"""Dropout whose mask is drawn the same way on every device (lone layers and populations)."""

from __future__ import annotations

import torch
from torch import Tensor


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Inverted dropout whose mask is drawn with ``bernoulli_`` on every device, as
    ``F.dropout`` draws it on the CPU. On CUDA, ``F.dropout`` draws in a fused kernel whose
    random stream a batched population (``workers.train_population``, one generator per
    member) cannot reproduce; with this one, members get their lone trials' masks on GPUs too.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> x = torch.ones(2, 3)
        >>> _ = torch.manual_seed(1); a = dropout(x, 0.5)
        >>> _ = torch.manual_seed(1); b = torch.nn.functional.dropout(x, 0.5)
        >>> torch.equal(a, b), set(a.flatten().tolist()) <= {0.0, 2.0}
        (True, True)
    """
    if not training or p == 0:
        return x
    if p >= 1:
        return torch.zeros_like(x)
    return x * dropout_mask(x, p)


def dropout_mask(like: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """The scaled keep-mask of :func:`dropout` for a tensor shaped like ``like``:
    ``bernoulli_(1 - p)`` divided by ``1 - p``, drawn from ``generator`` (default: the device's)."""
    return torch.empty_like(like).bernoulli_(1 - p, generator=generator).div_(1 - p)
