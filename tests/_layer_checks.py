"""Checks shared by the compiled-layer tests: runs with gradients, weight copies, comparisons
against the per-node ReferenceLayer. Comparisons run in float64 so that 1e-5 is a statement
about the maths, not about rounding."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import assume
from torch import Tensor, nn

from cells import CellGraph, CellLayer, ReferenceLayer, build_layer

F64 = torch.float64
TOL = 1e-5
EAGER_MODES = ("fused", "autograd", "auto")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def cuda(test: Any) -> Any:
    """Marks a test as a GPU test (``pytest -m gpu`` selects it) that skips without CUDA."""
    return pytest.mark.gpu(needs_cuda(test))


def close(a: Tensor, b: Tensor, tol: float = TOL) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=tol, rtol=tol))


def copy_weights(src: dict[str, Tensor], dst: dict[str, Tensor]) -> None:
    assert src.keys() == dst.keys()
    with torch.no_grad():
        for name, value in src.items():
            dst[name].copy_(value)


def run_with_grads(
    layer: nn.Module, x: Tensor, state: tuple[Tensor, ...] | None, seed: int = 0
) -> tuple[Tensor, tuple[Tensor, ...], Tensor, list[Tensor]]:
    """Output, final states, and gradients of a random linear loss on output and states
    w.r.t. the input and the initial states."""
    x = x.detach().clone().requires_grad_()
    state = None if state is None else tuple(s.detach().clone().requires_grad_() for s in state)
    out, final = layer(x, state)
    gen = torch.Generator().manual_seed(seed)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype).to(out.device)).sum()
    for s in final:
        loss = loss + (s * torch.randn(s.shape, generator=gen, dtype=s.dtype).to(s.device)).sum()
    loss.backward()
    # A state (or input) the cell never reads gets no gradient at all from the reference.
    state_grads = [zero_if_none(s.grad, s) for s in state] if state is not None else []
    return out.detach(), tuple(s.detach() for s in final), zero_if_none(x.grad, x), state_grads


def zero_if_none(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad


def assert_same_run(a: tuple[Any, ...], b: tuple[Any, ...], tol: float = TOL) -> None:
    out_a, final_a, gx_a, gs_a = a
    out_b, final_b, gx_b, gs_b = b
    assert close(out_a, out_b, tol), (out_a - out_b).abs().max()
    assert len(final_a) == len(final_b)
    for fa, fb in zip(final_a, final_b, strict=True):
        assert close(fa, fb, tol), (fa - fb).abs().max()
    assert close(gx_a, gx_b, tol), (gx_a - gx_b).abs().max()
    for ga, gb in zip(gs_a, gs_b, strict=True):
        assert close(ga, gb, tol), (ga - gb).abs().max()


def reference_pair(
    graph: CellGraph, input_size: int, hidden: int, layers: int, mode: str, device: str = "cpu"
) -> tuple[ReferenceLayer, CellLayer]:
    ref = ReferenceLayer(graph, input_size, hidden, layers).to(device, F64)
    fast = build_layer(graph, input_size, hidden, layers, mode=mode).to(device, F64)  # type: ignore[arg-type]
    for layer in range(layers):
        copy_weights(ref.node_parameters(layer), fast.node_parameters(layer))
    return ref, fast


def assert_matches_reference(
    graph: CellGraph,
    mode: str,
    *,
    input_size: int = 5,
    hidden: int = 5,
    layers: int = 2,
    steps: int = 6,
    device: str = "cpu",
    max_magnitude: float | None = None,
) -> None:
    ref, fast = reference_pair(graph, input_size, hidden, layers, mode, device)
    torch.manual_seed(1)
    x = torch.randn(steps, 3, input_size, dtype=F64, device=device)
    state = tuple(torch.randn(layers, 3, hidden, dtype=F64, device=device) for _ in range(graph.num_states))
    expected = run_with_grads(ref, x, state)
    if max_magnitude is not None:
        # Cells without squashing can blow up; two correct formulas then round differently.
        values = [expected[0], *expected[1], expected[2], *expected[3]]
        assume(all(bool(v.abs().max() < max_magnitude) for v in values))
    assert_same_run(expected, run_with_grads(fast, x, state))
    for layer in range(layers):
        ref_grads = {k: zero_if_none(v.grad, v) for k, v in ref.node_parameters(layer).items()}
        fast_grads = fast.node_gradients(layer)
        assert ref_grads.keys() == fast_grads.keys()
        for name, g in ref_grads.items():
            assert close(g, fast_grads[name]), (graph.name, mode, layer, name)
