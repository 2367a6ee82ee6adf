"""The population layer (``cells/_compile_population.py``): P member-stacked layers in one
batched loop give each member's compiled layer, and the generated code with its hand-derived
backward gives the autograd oracle (``tests/_population_oracle.py``): outputs, final states
and every gradient, with and without per-member lengths.

The comparisons run in float64, as the population equivalence tests do.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _population_oracle import hoist, run_layer
from hypothesis import given, settings
from hypothesis import strategies as st

from cells import CellGraph, build_layer, library, mutate, random_cell
from cells._compile_population import hoist_all, run_sequence

pytestmark = pytest.mark.usefixtures("float64_one_thread")


def _random_or_mutant(rng: np.random.Generator, mutant: bool) -> CellGraph:
    """A random cell, or a one-step mutant of a random library cell."""
    if mutant:
        return mutate(library.get(str(rng.choice(library.names()))), rng)[0]
    return random_cell(rng)


def check_layer_against_compiled(cell: CellGraph, seed: int, lengths: list[int] | None) -> None:
    """Outputs, final states and every gradient of a 2-member population layer equal the
    compiled layer of each member (padding steps excluded)."""
    P, T, B, H = 2, 5, 3, 4
    torch.manual_seed(seed)
    alone = [build_layer(cell, H, H, mode="fused") for _ in range(P)]
    plan = alone[0].program.plan
    weights = [
        torch.stack([a.layers[0].weights[j].detach() for a in alone]).requires_grad_()
        for j in range(len(plan.weight_sources))
    ]
    bias = torch.stack([a.layers[0].bias.detach() for a in alone]).requires_grad_()
    diag = torch.stack([a.layers[0].diag.detach() for a in alone]).requires_grad_() if plan.diags else None
    x = (0.5 * torch.randn(P, T, B, H)).requires_grad_()
    init = [0.5 * torch.randn(P, B, H) for _ in range(cell.num_states)]
    out, finals = run_layer(plan, hoist(plan, x, weights, bias), x, init, weights, bias, diag, lengths)
    d_out = torch.randn_like(out)
    for m, length in enumerate(lengths or [T] * P):
        d_out[m, length:] = 0.0  # padding: no gradient, as a masked loss gives
    ((out * d_out).sum() + sum((f * f).sum() for f in finals)).backward()
    for m in range(P):
        length = T if lengths is None else lengths[m]
        x_m = x[m, :length].detach().requires_grad_()
        out_m, finals_m = alone[m](x_m, tuple(s[m][None] for s in init))
        if not (out_m.isfinite().all() and all(f.isfinite().all() for f in finals_m)):
            return  # an exploding cell: nothing to compare
        ((out_m * d_out[m, :length]).sum() + sum((f * f).sum() for f in finals_m)).backward()
        assert torch.allclose(out[m, :length], out_m)
        assert all(torch.allclose(f[m], f_m[0]) for f, f_m in zip(finals, finals_m, strict=True))
        assert x.grad is not None and torch.allclose(x.grad[m, :length], x_m.grad)  # type: ignore[arg-type]
        layer = alone[m].layers[0]
        for j, w in enumerate(weights):
            assert torch.allclose(w.grad[m], layer.weights[j].grad), j  # type: ignore[index]
        assert torch.allclose(bias.grad[m], layer.bias.grad)  # type: ignore[index]
        if diag is not None:
            assert torch.allclose(diag.grad[m], layer.diag.grad)  # type: ignore[index]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.booleans(), st.sampled_from([None, [5, 3]]))
def test_layer_matches_the_compiled_layer_on_random_cells(
    seed: int, mutant: bool, lengths: list[int] | None
) -> None:
    cell = _random_or_mutant(np.random.default_rng(seed), mutant)
    check_layer_against_compiled(cell, seed, lengths)


SHARED_MUL = CellGraph.parse(
    {
        "name": "shared-mul",
        "num_states": 1,
        "nodes": [
            {"name": "a", "op": "linear", "inputs": ["x", "h_prev_0"]},
            {"name": "s", "op": "sigmoid", "inputs": ["a"]},
            {"name": "m", "op": "mul", "inputs": ["s", "h_prev_0"]},  # read by a linear and an add
            {"name": "b", "op": "linear", "inputs": ["m"]},
            {"name": "c", "op": "add", "inputs": ["m", "b"]},
            {"name": "h", "op": "tanh", "inputs": ["c"]},
        ],
        "outputs": ["h"],
    }
)


@pytest.mark.parametrize("name", ["shared-mul", *library.names()])
def test_layer_matches_the_compiled_layer_on_chosen_cells(name: str) -> None:
    check_layer_against_compiled(SHARED_MUL if name == "shared-mul" else library.get(name), 0, [4, 5])


def check_sequence_against_autograd(cell: CellGraph, seed: int, lengths: list[int] | None) -> None:
    """The generated layer (:func:`run_sequence`: hand-derived backward) gives the outputs,
    final states and every gradient (x, initial states, weights, bias, diag) of the autograd
    layer (:func:`run_layer`), padding steps included."""
    P, T, B, H = 3, 5, 2, 4
    torch.manual_seed(seed)
    solo = build_layer(cell, H, H, mode="fused")
    plan = solo.program.plan
    weights = [0.5 * torch.randn(P, len(rows) * H, H) for rows in plan.weight_rows]
    bias = torch.randn(P, len(plan.linears) * H)
    diag = torch.randn(P, len(plan.diags), H) if plan.diags else None
    x = 0.5 * torch.randn(P, T, B, H)
    init = [0.5 * torch.randn(P, B, H) for _ in range(cell.num_states)]
    d_out = torch.randn(P, T, B, H)
    d_finals = [torch.randn(P, B, H) for _ in range(cell.num_states)]
    results = []
    for generated in (False, True):
        leaves = [t.clone().requires_grad_() for t in (x, bias, *weights, *init)]
        x_, bias_, *rest = leaves
        weights_, init_ = rest[: len(weights)], rest[len(weights) :]
        diag_ = diag.clone().requires_grad_() if diag is not None else None
        if generated:
            pre = hoist_all(plan, x_, weights_, bias_)
            out, finals = run_sequence(plan, pre, x_, init_, weights_, diag_, lengths)
        else:
            out, finals = run_layer(
                plan, hoist(plan, x_, weights_, bias_), x_, init_, weights_, bias_, diag_, lengths
            )
        loss = (out * d_out).sum() + sum((f * d).sum() for f, d in zip(finals, d_finals, strict=True))
        loss.backward()
        grads = [t.grad if t.grad is not None else torch.zeros_like(t) for t in leaves]
        if diag_ is not None:
            grads.append(diag_.grad if diag_.grad is not None else torch.zeros_like(diag_))
        results.append((out.detach(), [f.detach() for f in finals], grads))
    (out_a, finals_a, grads_a), (out_g, finals_g, grads_g) = results
    if not all(t.isfinite().all() for t in (out_a, *finals_a, *grads_a)):
        return  # an exploding cell: nothing to compare
    if max(float(t.abs().max()) for t in (out_a, *finals_a, *grads_a) if t.numel()) > 1e6:
        # Exploding but still finite (values near 1e70 were seen): float32 sums in another order
        # differ there by far more than allclose's absolute tolerance; nothing to learn from it.
        return
    assert torch.allclose(out_g, out_a)
    assert all(torch.allclose(f, g) for f, g in zip(finals_g, finals_a, strict=True))
    for k, (g, a) in enumerate(zip(grads_g, grads_a, strict=True)):
        assert torch.allclose(g, a), k


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.booleans(), st.sampled_from([None, [5, 3, 1], [2, 4, 4]]))
def test_generated_layer_matches_autograd_on_random_cells(
    seed: int, mutant: bool, lengths: list[int] | None
) -> None:
    cell = _random_or_mutant(np.random.default_rng(seed), mutant)
    check_sequence_against_autograd(cell, seed, lengths)


@pytest.mark.parametrize("name", ["shared-mul", *library.names()])
def test_generated_layer_matches_autograd_on_chosen_cells(name: str) -> None:
    check_sequence_against_autograd(SHARED_MUL if name == "shared-mul" else library.get(name), 1, [5, 3, 2])


def test_generated_layer_runs_without_gradients() -> None:
    """Validation's path (no autograd): the same outputs and final states as with gradients."""
    P, T, B, H = 2, 4, 3, 6
    solo = build_layer(library.get("lstm"), H, H, mode="fused")
    plan = solo.program.plan
    weights = [torch.randn(P, len(rows) * H, H).requires_grad_() for rows in plan.weight_rows]
    bias = torch.randn(P, len(plan.linears) * H)
    x, init = torch.randn(P, T, B, H), [torch.zeros(P, B, H)] * 2
    out, finals = run_sequence(plan, hoist_all(plan, x, weights, bias), None, init, weights, None, [4, 2])
    with torch.no_grad():
        out_ng, finals_ng = run_sequence(
            plan, hoist_all(plan, x, weights, bias), None, init, weights, None, [4, 2]
        )
    assert out.requires_grad and not out_ng.requires_grad
    assert torch.allclose(out, out_ng) and all(
        torch.allclose(a, b) for a, b in zip(finals, finals_ng, strict=True)
    )
    expected, _ = run_layer(plan, hoist(plan, x, weights, bias), x, init, weights, bias, None, [4, 2])
    assert torch.allclose(out, expected)
    assert torch.equal(finals[0][1], out[1, 1]) and torch.equal(finals[0][0], out[0, 3])
