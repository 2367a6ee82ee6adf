"""A population of :class:`~workers.RecurrentModel` s of one cell and one shape as one batched model.

Each member is first built exactly as its trial alone would build it (:func:`workers.model_for`
under ``torch.manual_seed(seed)``), so initial weights, ``init_scale`` and ``forget_bias``
match by construction; the members' parameters are then stacked along a new leading
dimension. Parameter names are those of the single model (``encoder.weight``,
``rnn.layers.0.weights.1``, ``decoder.bias``, ...), so ``population.parameters[name][m]`` is
member m's ``dict(model.named_parameters())[name]``.

Example:
    >>> import torch
    >>> from cells import library
    >>> from workers import HyperParams, make_task, model_for
    >>> task = make_task("arith", valid_size=8, test_size=8)
    >>> models = []
    >>> for seed in (0, 1):
    ...     _ = torch.manual_seed(seed)
    ...     models.append(model_for(task, library.get("gru"), HyperParams(hidden_size=8, seed=seed)))
    >>> population = PopulationModel(models, task.input_kind)
    >>> tokens = torch.randint(task.input_size, (5, 3))
    >>> logits, _ = population(tokens)
    >>> torch.allclose(logits[1], models[1](tokens)[0], atol=1e-6)
    True
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from cells import CellLayer, build_population_layer
from workers._model import RecurrentModel

Dropout = Callable[[Tensor], Tensor]
"""Applied at each dropout site in order (embedding, between layers, before the decoder)."""

PopulationState = list[list[Tensor]]
"""``state[layer][i]``: member-stacked state i of a layer, ``[P, B, H]``."""


class PopulationModel:
    """Stacked parameters of P same-shape models of one cell and their batched forward.

    ``forward(inputs, state=None, lengths=None, dropout=None) -> (logits [P, T, B, out], state)``
    where ``inputs`` is ``[P, T, B]`` tokens / ``[P, T, B, D]`` frames, or one batch shared by
    every member (``[T, B]`` / ``[T, B, D]``).
    """

    def __init__(self, models: Sequence[RecurrentModel], input_kind: Literal["tokens", "frames"]) -> None:
        if not models:
            raise ValueError("models: a population needs at least one member")
        first = models[0]
        if not isinstance(first.rnn, CellLayer):
            raise TypeError("population training needs cell layers built by cells.build_layer")
        shapes = {tuple((n, tuple(p.shape)) for n, p in m.named_parameters()) for m in models}
        if len(shapes) != 1 or len({m.tied for m in models}) != 1:
            raise ValueError("models: members differ in shape (layers, hidden size, cell or tied weights)")
        self.input_kind = input_kind
        self.layer = build_population_layer(first.rnn.graph)
        """The batched code of every layer (all layers share one cell and shape)."""
        self.num_layers = first.num_layers
        self.hidden_size = first.hidden_size
        self.num_states = first.rnn.num_states
        self.parameters: dict[str, Tensor] = {
            name: torch.stack([dict(m.named_parameters())[name].detach() for m in models]).requires_grad_()
            for name, _ in first.named_parameters()
        }
        self.training = True

    @property
    def size(self) -> int:
        """Number of members."""
        return next(iter(self.parameters.values())).shape[0]

    def keep(self, members: Sequence[int]) -> None:
        """Keep only ``members`` (indices into the current members), in that order; gradients too."""
        index = self._index(members)
        kept = {}
        for name, p in self.parameters.items():
            kept[name] = p.detach().index_select(0, index).requires_grad_()
            if p.grad is not None:
                kept[name].grad = p.grad.index_select(0, index)
        self.parameters = kept

    def select(self, members: Sequence[int]) -> PopulationModel:
        """A copy holding only ``members`` (for evaluation; the copy's parameters need no gradient)."""
        index = self._index(members)
        chosen = copy.copy(self)
        chosen.parameters = {name: p.detach().index_select(0, index) for name, p in self.parameters.items()}
        return chosen

    def _index(self, members: Sequence[int]) -> Tensor:
        return torch.as_tensor(list(members), device=next(iter(self.parameters.values())).device)

    def to(self, device: torch.device | str) -> PopulationModel:
        self.parameters = {n: p.detach().to(device).requires_grad_() for n, p in self.parameters.items()}
        return self

    def _layer(self, layer: int) -> tuple[list[Tensor], Tensor, Tensor | None]:
        p = self.parameters
        prefix = f"rnn.layers.{layer}"
        weights = [p[f"{prefix}.weights.{j}"] for j in range(self.layer.num_weights)]
        return weights, p[f"{prefix}.bias"], p.get(f"{prefix}.diag")

    def forward(
        self,
        inputs: Tensor,
        state: PopulationState | None = None,
        lengths: Sequence[int] | None = None,
        dropout: Dropout | None = None,
    ) -> tuple[Tensor, PopulationState]:
        p, P, H = self.parameters, self.size, self.hidden_size
        shared = inputs.dim() == (2 if self.input_kind == "tokens" else 3)
        T, B = inputs.shape[int(not shared)], inputs.shape[1 + int(not shared)]
        if state is None:
            zeros = p["decoder.bias"].new_zeros(P, B, H)
            state = [[zeros] * self.num_states for _ in range(self.num_layers)]
        x: Tensor | None
        folded = None  # layer 0's pre-activations, when the embedding folds into its x-weights
        if self.input_kind == "tokens":
            table = p["encoder.weight"]  # [P, V, H]
            V = table.shape[1]
            offsets = torch.arange(P, device=inputs.device).view(P, 1, 1) * V
            ids = (inputs.unsqueeze(0) if shared else inputs) + offsets  # member m reads rows m*V..
            if dropout is None and self.layer.hoists_x and V < T * B:
                # No dropout on the embedding: the x-products of V table rows per member, gathered
                # by token, instead of T*B rows' products.
                weights, bias, _ = self._layer(0)
                folded = self.layer.hoist_tokens(table, ids, weights, bias)
            needs_x = folded is None or self.layer.reads_x_per_step
            x = F.embedding(ids, table.reshape(P * V, H)) if needs_x else None
        else:
            frames = inputs.unsqueeze(0).expand(P, *inputs.shape) if shared else inputs
            rows = frames.reshape(P, T * B, frames.shape[-1])
            x = torch.baddbmm(p["encoder.bias"][:, None, :], rows, p["encoder.weight"].transpose(1, 2))
            x = x.view(P, T, B, H)
        if dropout is not None and x is not None:
            x = dropout(x)
        finals: PopulationState = []
        for layer in range(self.num_layers):
            if layer > 0 and dropout is not None:
                assert x is not None
                x = dropout(x)
            weights, bias, diag = self._layer(layer)
            pre: Tensor | None
            if layer == 0 and folded is not None:
                pre = folded
            else:
                assert x is not None
                pre = self.layer.hoist(x, weights, bias)
            x_step = x if self.layer.reads_x_per_step else None
            x, last = self.layer.run(pre, x_step, state[layer], weights, diag, lengths)
            finals.append(last)
        assert x is not None
        if dropout is not None:
            x = dropout(x)
        outputs = p["decoder.bias"].shape[1]
        # A tied model has no decoder.weight of its own (parameters() lists the matrix once).
        decoder = p["decoder.weight"] if "decoder.weight" in p else p["encoder.weight"]
        logits = torch.baddbmm(p["decoder.bias"][:, None, :], x.reshape(P, T * B, H), decoder.transpose(1, 2))
        return logits.view(P, T, B, outputs), finals

    __call__ = forward
