"""The model around a cell: input embedding or projection, a stack of cell layers, an output layer.

Example:
    >>> import torch
    >>> from cells import library
    >>> factory = cell_layer_factory(library.get("gru"))
    >>> model = RecurrentModel("tokens", 10, 10, hidden_size=8, layer_factory=factory)
    >>> logits, state = model(torch.zeros(5, 3, dtype=torch.long))
    >>> tuple(logits.shape), len(state)
    ((5, 3, 10), 1)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

import torch
from torch import Tensor, nn

from cells import CellGraph, build_layer, dropout
from workers._hparams import HyperParams
from workers._task import Task

State = tuple[Tensor, ...]


class LayerFactory(Protocol):
    """Builds the recurrent stack: ``(input_size, hidden_size, num_layers, dropout) -> layer`` with
    torch.nn.LSTM's calling convention (``forward(x, state=None) -> (output, state tuple)``)."""

    def __call__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> nn.Module: ...


def cell_layer_factory(cell: CellGraph) -> LayerFactory:
    """Layers of ``cell`` built by :func:`cells.build_layer`."""

    def factory(input_size: int, hidden_size: int, num_layers: int, dropout: float) -> nn.Module:
        return build_layer(cell, input_size, hidden_size, num_layers, dropout)

    return factory


def torch_lstm_factory(input_size: int, hidden_size: int, num_layers: int, dropout: float) -> nn.Module:
    """torch.nn.LSTM, the speed reference for compiled cells."""
    return nn.LSTM(input_size, hidden_size, num_layers, dropout=dropout if num_layers > 1 else 0.0)


class _Dropout(nn.Dropout):
    """``nn.Dropout`` drawing its mask as on the CPU on every device (see :func:`cells.dropout`)."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)


class RecurrentModel(nn.Module):
    """Embedding (tokens) or linear projection (frames) to the hidden size, the recurrent layers
    (dropout between them), and a linear output layer; dropout also on the embedding and before
    the output layer (Zaremba et al. 2014), so ``dropout=0`` turns it all off.

    ``tie_weights``: the output layer reads the embedding's matrix (Press & Wolf 2017), for token
    inputs whose vocabulary is also the output's; ``parameters()`` then holds the matrix once,
    as ``encoder.weight``.
    """

    def __init__(
        self,
        input_kind: Literal["tokens", "frames"],
        input_size: int,
        output_size: int,
        hidden_size: int,
        layer_factory: LayerFactory,
        num_layers: int = 1,
        dropout: float = 0.0,
        tie_weights: bool = False,
    ) -> None:
        super().__init__()
        if tie_weights and (input_kind != "tokens" or input_size != output_size):
            raise ValueError(
                "tie_weights: expected token inputs with as many classes as input tokens, got "
                f"{input_kind} inputs of size {input_size} and {output_size} outputs"
            )
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.encoder = (
            nn.Embedding(input_size, hidden_size)
            if input_kind == "tokens"
            else nn.Linear(input_size, hidden_size)
        )
        self.rnn = layer_factory(hidden_size, hidden_size, num_layers, dropout)
        self.drop = _Dropout(dropout)
        self.decoder = nn.Linear(hidden_size, output_size)
        self.tied = tie_weights
        if tie_weights:
            self.decoder.weight = self.encoder.weight  # [vocabulary, hidden] both

    def forward(self, inputs: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """``inputs`` ``[T, B]`` tokens or ``[T, B, D]`` frames -> (logits ``[T, B, output_size]``, state)."""
        x = self.drop(self.encoder(inputs))
        out, state = self.rnn(x, state)
        return self.decoder(self.drop(out)), tuple(state)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _build(
    task: Task, factory: LayerFactory, hidden_size: int, num_layers: int, dropout: float, tied: bool
) -> RecurrentModel:
    return RecurrentModel(
        task.input_kind, task.input_size, task.output_size, hidden_size, factory, num_layers, dropout, tied
    )


def hidden_size_for_budget(
    task: Task,
    cell: CellGraph | None,
    num_layers: int,
    param_budget: int,
    layer_factory: LayerFactory | None = None,
    tie_weights: bool = False,
) -> int:
    """The largest hidden size whose model (embedding and output layer included) has at most
    ``param_budget`` parameters.

    A model's parameter count is a quadratic in the hidden size (weights H x H, H x in,
    biases H, embedding and output layer H x vocabulary), so three tiny builds pin it down
    exactly; raises :class:`ValueError` when even hidden size 1 is over budget.
    """
    factory = layer_factory or cell_layer_factory(_need_cell(cell))
    with torch.random.fork_rng(devices=[]):  # sizing must not move the trial's random stream
        c0, c1, c2 = (
            count_parameters(_build(task, factory, h, num_layers, 0.0, tie_weights)) for h in (1, 2, 3)
        )
    # P(h) = a h^2 + b h + c through (1, c0), (2, c1), (3, c2).
    a = (c2 - 2 * c1 + c0) / 2
    b = c1 - c0 - 3 * a
    c = c0 - a - b

    def count(h: int) -> float:
        return a * h * h + b * h + c

    if count(1) > param_budget:
        raise ValueError(
            f"param_budget {param_budget} is below the smallest model "
            f"(hidden size 1 has {c0} parameters on task {task.name!r})"
        )
    low, high = 1, 2
    while count(high) <= param_budget:
        low, high = high, high * 2
    while high - low > 1:  # count(low) <= budget < count(high)
        mid = (low + high) // 2
        low, high = (mid, high) if count(mid) <= param_budget else (low, mid)
    return low


def model_for(
    task: Task, cell: CellGraph | None, hparams: HyperParams, layer_factory: LayerFactory | None = None
) -> RecurrentModel:
    """The model of one trial: sized from ``hidden_size`` or ``param_budget``, weights tied when
    ``tie_weights`` is set, initialised
    uniformly in ``[-init_scale, init_scale]`` when set, forget-gate biases overridden when
    ``forget_bias`` is set. Draws from torch's global generator: seed it first.

    ``layer_factory`` replaces the cell's layers (e.g. :func:`torch_lstm_factory`).
    """
    factory = layer_factory or cell_layer_factory(_need_cell(cell))
    hidden_size = hparams.hidden_size
    if hidden_size is None:
        assert hparams.param_budget is not None  # HyperParams sets one of the two
        hidden_size = hidden_size_for_budget(
            task, cell, hparams.num_layers, hparams.param_budget, factory, hparams.tie_weights
        )
    model = _build(task, factory, hidden_size, hparams.num_layers, hparams.dropout, hparams.tie_weights)
    if hparams.init_scale is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.uniform_(-hparams.init_scale, hparams.init_scale)
    if hparams.forget_bias is not None:
        set_forget_bias(model.rnn, cell, hparams.forget_bias)
    return model


def set_forget_bias(layer: nn.Module, cell: CellGraph | None, value: float) -> None:
    """Set the bias of every ``forget_gate``-tagged linear node in every layer to ``value``
    (for torch.nn.LSTM: its forget-gate slice, with the duplicate hidden bias zeroed)."""
    with torch.no_grad():
        if isinstance(layer, nn.LSTM):
            h = layer.hidden_size
            for i in range(layer.num_layers):
                getattr(layer, f"bias_ih_l{i}")[h : 2 * h] = value
                getattr(layer, f"bias_hh_l{i}")[h : 2 * h] = 0.0
            return
        set_bias: Callable[[str, float], None] | None = getattr(layer, "set_bias", None)
        if set_bias is not None:
            set_bias("forget_gate", value)
            return
        cell = _need_cell(cell)
        gates = [n.name for n in cell.nodes if n.op == "linear" and n.tag == "forget_gate"]
        for i in range(layer.num_layers):  # type: ignore[arg-type]
            params = layer.node_parameters(i)  # type: ignore[operator]
            for name in gates:
                params[f"{name}.bias"].fill_(value)


def _need_cell(cell: CellGraph | None) -> CellGraph:
    if cell is None:
        raise ValueError("a cell graph is needed unless a layer_factory is given")
    return cell
