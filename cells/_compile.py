"""Compilation of cell graphs to fast PyTorch layers with torch.nn.LSTM's calling convention.

:func:`build_layer` turns a :class:`~cells.CellGraph` into a multi-layer recurrent module.
How the time loop runs is the ``mode``:

``"fused"``
    The generic fast path (any valid graph). The cell is analysed once into a fused layout
    (``cells/_compile_plan.py``) and turned into generated Python code
    (``cells/_compile_codegen.py``): every linear term that reads only ``x`` is one matrix
    product over all ``T * B`` rows before the loop (biases folded in); linears reading the
    same input share one product per step, added in place into the pre-activations; linears
    followed by the same activation are contiguous so one call covers them (the i, f, o
    gates of an LSTM are one ``sigmoid_``). The sequence runs as one hand-written
    ``torch.autograd.Function``: the forward runs without autograd and keeps what the
    backward needs; the backward is derived per op and does per step only the elementwise
    derivatives and one ``d_pre @ W`` per input, while the gradients of all weights and
    biases are single matrix products over all steps at the end (autograd would do one
    small weight-gradient product per step).
``"native"``
    Graphs that are exactly an LSTM or a GRU (in PyTorch's cell layout, any node names or
    order, any ``bias_init``) run on PyTorch's own kernels (oneDNN on CPU, cuDNN on GPU),
    with the weights gathered from the same fused parameters. Other graphs are refused.
``"auto"`` (default)
    The best eager path, nothing to compile: ``"native"`` for an LSTM (and for a GRU on
    CUDA), otherwise ``"fused"`` (PyTorch's CPU GRU is slower than the fused path).
    :meth:`CellLayer.path` says which path a device gets.
``"autograd"``
    The same hoisted and fused computation written with ordinary differentiable ops.
``"compile"``
    ``torch.compile`` of the ``"autograd"`` sequence (unrolled over time), for long GPU
    jobs where the first-call compile time is amortised. Compiled functions are cached per
    process (see below) and inductor keeps its own on-disk cache of generated kernels.

Choosing the path: ``python benchmarks/cell_speed.py`` measures each path's throughput
against torch.nn.LSTM / torch.nn.GRU. ``"auto"`` never compiles: short CPU trials want the
fused path, and ``"compile"`` is for long GPU trials, where the per-step kernel launches of
the eager paths dominate and the trials of one cell share one compiled function.

Caching: the analysis and generated code are cached per process by the graph's structure
(``cells/_compile_cache.py``); :func:`~cells.compile_cache_info` reports hits and misses.
Native kernels: ``cells/_compile_native.py``; the batched layer of a population of
same-shape members: ``cells/_compile_population.py``.

Example:
    >>> import torch
    >>> from cells import build_layer, library
    >>> layer = build_layer(library.get("gru-cho"), input_size=4, hidden_size=8, num_layers=2)
    >>> out, (h,) = layer(torch.randn(5, 3, 4))
    >>> tuple(out.shape), tuple(h.shape)
    ((5, 3, 8), (2, 3, 8))
    >>> sorted(layer.node_parameters(0))[:2]
    ['n_lin.bias', 'n_lin.weight.rh']
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from cells._compile_cache import CACHE
from cells._compile_codegen import Program
from cells._compile_native import native_indices, native_kind
from cells._compile_plan import relabel
from cells._dropout import dropout
from cells._graph import INPUT_X, CellGraph, CellGraphError

Mode = Literal["auto", "native", "fused", "autograd", "compile"]
MODES: tuple[str, ...] = ("auto", "native", "fused", "autograd", "compile")


def build_layer(
    graph: CellGraph,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    dropout: float = 0.0,
    *,
    mode: Mode = "auto",
    compile_backend: str = "inductor",
) -> CellLayer:
    """A recurrent layer running ``graph`` with torch.nn.LSTM's calling convention.

    ``forward(x, state=None) -> (output, state)`` with ``x`` of shape ``[T, B, input_size]``,
    output ``[T, B, hidden_size]`` and state a tuple of ``graph.num_states`` tensors
    ``[num_layers, B, hidden_size]`` (zeros when None). ``dropout`` applies between layers.
    See the module docstring for ``mode``; ``compile_backend`` is the ``torch.compile``
    backend used by ``mode="compile"`` (``"aot_eager"`` compiles in seconds, for debugging).

    Example:
        >>> import torch
        >>> from cells import build_layer, library
        >>> layer = build_layer(library.get("lstm"), input_size=3, hidden_size=5)
        >>> out, (h, c) = layer(torch.randn(7, 2, 3))
        >>> tuple(out.shape), tuple(c.shape)
        ((7, 2, 5), (1, 2, 5))
    """
    return CellLayer(
        graph, input_size, hidden_size, num_layers, dropout, mode=mode, compile_backend=compile_backend
    )


class _LayerParameters(nn.Module):
    def __init__(self, weights: list[Tensor], bias: Tensor, diag: Tensor | None) -> None:
        super().__init__()
        self.weights = nn.ParameterList([nn.Parameter(w) for w in weights])
        self.bias = nn.Parameter(bias)
        self.diag = nn.Parameter(diag) if diag is not None else None


class CellLayer(nn.Module):
    """A compiled multi-layer cell; build it with :func:`build_layer`.

    Parameters live fused (one weight matrix per input of the linears, one bias vector, one
    diag matrix per layer); :meth:`node_parameters` gives per-node views of them with the
    names :class:`~cells.ReferenceLayer` uses.
    """

    # Index buffers that gather PyTorch's gate order from the fused parameters (native path).
    _native_x: Tensor
    _native_h: Tensor
    _native_b: Tensor
    _native_bhn: Tensor

    def __init__(
        self,
        graph: CellGraph,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        *,
        mode: Mode = "auto",
        compile_backend: str = "inductor",
    ) -> None:
        super().__init__()
        _check_sizes(graph, input_size, hidden_size, num_layers, dropout, mode)
        self.graph = graph
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_states = graph.num_states
        self.dropout = float(dropout)
        self.compile_backend = compile_backend
        self.program = CACHE.program(graph)
        plan = self.program.plan
        self._canonical = relabel(graph)
        self.mode: str = mode
        self.native_kind = native_kind(graph) if mode in ("auto", "native") else None
        """The library cell ("lstm", "gru") this cell is exactly, so PyTorch's kernels can run it."""
        if mode == "native" and self.native_kind is None:
            raise ValueError(
                f"mode='native': cell {graph.name!r} is not an LSTM or GRU in PyTorch's layout; "
                "use mode='fused' or 'auto'"
            )

        bound = 1 / math.sqrt(hidden_size)
        H = hidden_size
        self.layers = nn.ModuleList()
        for layer in range(num_layers):
            fan_in = input_size if layer == 0 else hidden_size
            weights = [
                torch.empty(len(rows) * H, fan_in if src == INPUT_X else H).uniform_(-bound, bound)
                for src, rows in zip(plan.weight_sources, plan.weight_rows, strict=True)
            ]
            bias = torch.empty(len(plan.linears) * H).uniform_(-bound, bound)
            diag = torch.empty(len(plan.diags), H).uniform_(-bound, bound) if plan.diags else None
            self.layers.append(_LayerParameters(weights, bias, diag))
        with torch.no_grad():
            for node in graph.nodes:
                if node.op == "linear" and node.attrs.get("bias_init") is not None:
                    for layer in range(num_layers):
                        self._bias_view(layer, node.name).fill_(node.attrs["bias_init"])
        if self.native_kind is not None:
            for name, index in native_indices(self.native_kind, graph, plan, self._canonical, H).items():
                self.register_buffer(name, index, persistent=False)

    # -- parameters by node ---------------------------------------------------------------

    def _bias_view(self, layer: int, node: str) -> Tensor:
        block = self.program.plan.linears.index(self._canonical[node])
        H = self.hidden_size
        return self.layers[layer].bias[block * H : (block + 1) * H]  # type: ignore[index]

    def node_parameters(self, layer: int) -> dict[str, Tensor]:
        """Per-node views of layer ``layer``'s parameters, named like ReferenceLayer's:
        ``"{node}.weight.{input}"`` ([hidden, in]), ``"{node}.bias"`` and ``"{node}.diag"``
        ([hidden]). The views alias the fused parameters, so ``view.copy_(w)`` under
        ``torch.no_grad()`` sets the weights.
        """
        params = self._layer_params(layer)
        diag = params.diag
        return self._node_views(layer, list(params.weights), params.bias, diag)

    def node_gradients(self, layer: int) -> dict[str, Tensor]:
        """The same views as :meth:`node_parameters` over the parameters' ``.grad`` (after a
        backward pass), e.g. for per-gate gradient norms."""
        params = self._layer_params(layer)

        def grad_of(t: Tensor) -> Tensor:
            if t.grad is None:
                if t.numel() == 0:  # the empty bias of a cell without linears
                    return torch.zeros_like(t)
                raise RuntimeError(f"layer {layer} has no gradients yet: run a backward pass first")
            return t.grad

        diag = grad_of(params.diag) if params.diag is not None else None
        return self._node_views(layer, [grad_of(w) for w in params.weights], grad_of(params.bias), diag)

    def _layer_params(self, layer: int) -> _LayerParameters:
        if not 0 <= layer < self.num_layers:
            raise IndexError(f"layer: expected 0..{self.num_layers - 1}, got {layer}")
        return self.layers[layer]  # type: ignore[return-value]

    def _node_views(
        self, layer: int, weights: list[Tensor], bias: Tensor, diag: Tensor | None
    ) -> dict[str, Tensor]:
        plan = self.program.plan
        H = self.hidden_size
        views: dict[str, Tensor] = {}
        for node in self.graph.nodes:
            canon = self._canonical[node.name]
            if node.op == "linear":
                for src in node.inputs:
                    j = plan.weight_sources.index(self._canonical[src])
                    row = plan.weight_rows[j].index(canon)
                    views[f"{node.name}.weight.{src}"] = weights[j][row * H : (row + 1) * H]
                block = plan.linears.index(canon)
                views[f"{node.name}.bias"] = bias[block * H : (block + 1) * H]
            elif node.op == "diag":
                views[f"{node.name}.diag"] = diag[plan.diags.index(canon)]  # type: ignore[index]
        return views

    def set_bias(self, tag: str, value: float) -> int:
        """Set the bias of every linear node tagged ``tag`` (e.g. ``"forget_gate"``) to
        ``value`` in all layers; returns how many nodes had the tag (0 is not an error:
        a GRU has no forget gate).

        Example:
            >>> from cells import build_layer, library
            >>> layer = build_layer(library.get("lstm"), 4, 4)
            >>> layer.set_bias("forget_gate", 1.0)
            1
            >>> layer.node_parameters(0)["f_lin.bias"].tolist()
            [1.0, 1.0, 1.0, 1.0]
        """
        nodes = [n.name for n in self.graph.nodes if n.op == "linear" and n.tag == tag]
        with torch.no_grad():
            for layer in range(self.num_layers):
                for name in nodes:
                    self._bias_view(layer, name).fill_(value)
        return len(nodes)

    def __getstate__(self) -> dict[str, Any]:
        # Generated functions do not pickle; the program is rebuilt (or found in the cache).
        state = self.__dict__.copy()
        state.pop("program", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.program = CACHE.program(self.graph)

    def extra_repr(self) -> str:
        return (
            f"cell={self.graph.name!r}, input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"num_layers={self.num_layers}, dropout={self.dropout}, mode={self.mode!r}"
        )

    # -- forward --------------------------------------------------------------------------

    def forward(
        self, x: Tensor, state: Sequence[Tensor] | Tensor | None = None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        states = self._check_input(x, state)
        device_type = x.device.type
        path = self.path(x.device)
        autocast = torch.is_autocast_enabled(device_type) and path != "native"
        if autocast:
            # Run the whole sequence in the autocast dtype (as cuDNN's RNN does) rather than
            # letting autocast cast op by op inside the time loop.
            dtype = torch.get_autocast_dtype(device_type)
            x = x.to(dtype)
            states = [s.to(dtype) for s in states]
        finals: list[list[Tensor]] = []
        inp = x
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0:
                inp = dropout(inp, self.dropout, self.training)
            init = [s[layer] for s in states]
            params = self._layer_params(layer)
            weights: list[Tensor] = list(params.weights)
            bias: Tensor = params.bias
            diag: Tensor | None = params.diag
            if autocast:
                weights = [w.to(dtype) for w in weights]
                bias = bias.to(dtype)
                diag = diag.to(dtype) if diag is not None else None
            with torch.autocast(device_type, enabled=False) if autocast else nullcontext():
                inp, last = self._run(path, inp, init, weights, bias, diag)
            finals.append(last)
        return inp, tuple(torch.stack([f[i] for f in finals]) for i in range(self.num_states))

    def path(self, device: torch.device | str = "cpu") -> str:
        """How a forward call on ``device`` runs: "native", "fused", "autograd" or "compile".

        ``mode="auto"`` takes PyTorch's kernel for an LSTM everywhere (oneDNN on CPU is
        faster than the fused path) and for a GRU on CUDA (cuDNN), but the fused path for a
        GRU on CPU, where it is faster than PyTorch's GRU.

        Example:
            >>> from cells import build_layer, library
            >>> build_layer(library.get("gru"), 4, 4).path("cpu")
            'fused'
        """
        if self.mode != "auto":
            return self.mode
        if self.native_kind == "lstm" or (self.native_kind == "gru" and torch.device(device).type == "cuda"):
            return "native"
        return "fused"

    def _run(
        self,
        path: str,
        x: Tensor,
        init: list[Tensor],
        weights: list[Tensor],
        bias: Tensor,
        diag: Tensor | None,
    ) -> tuple[Tensor, list[Tensor]]:
        program = self.program
        if path == "native":
            return self._run_native(x, init, weights, bias)
        if path == "autograd":
            out, last = program.sequence(x, init, weights, bias, diag)
            return out, list(last)
        if path == "compile":
            key = (self.input_size, self.hidden_size, x.device.type, x.dtype)
            compiled = CACHE.compiled_sequence(program, key, self.compile_backend)
            out, last = compiled(x, init, weights, bias, diag)
            return out, list(last)
        tensors = [x, bias, diag, *init, *weights]
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
            out, *last = _FusedSequence.apply(program, *tensors)
            return out, last
        _, _, states_all, _ = program.forward(x, init, weights, bias, diag, False)
        return states_all[0][1:], [s[-1] for s in states_all]

    def _run_native(
        self, x: Tensor, init: list[Tensor], weights: list[Tensor], bias: Tensor
    ) -> tuple[Tensor, list[Tensor]]:
        plan = self.program.plan
        w_x = weights[plan.weight_sources.index(INPUT_X)]
        w_h = weights[plan.weight_sources.index("h_prev_0")]
        w_ih = w_x.index_select(0, self._native_x)
        w_hh = w_h.index_select(0, self._native_h)
        b_ih = bias.index_select(0, self._native_b)
        H = self.hidden_size
        with warnings.catch_warnings():
            # cuDNN notes that gathered weights are not one flat buffer and copies them per call.
            warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
            if self.native_kind == "lstm":
                b_hh = bias.new_zeros(4 * H)
                params = [w_ih, w_hh, b_ih, b_hh]
                hx = (init[0].unsqueeze(0), init[1].unsqueeze(0))
                out, h, c = torch.lstm(x, hx, params, True, 1, 0.0, self.training, False, False)
                return out, [h[0], c[0]]
            # GRU: PyTorch's n gate adds b_hn inside the reset product; that is our n_h's bias.
            b_hh = torch.cat([bias.new_zeros(2 * H), bias.index_select(0, self._native_bhn)])
            params = [w_ih, w_hh, b_ih, b_hh]
            out, h = torch.gru(x, init[0].unsqueeze(0), params, True, 1, 0.0, self.training, False, False)
            return out, [h[0]]

    def _check_input(self, x: Tensor, state: Sequence[Tensor] | Tensor | None) -> list[Tensor]:
        if x.dim() != 3:
            raise ValueError(
                f"input: expected a tensor [T, B, input_size={self.input_size}] (sequence first), "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[2] != self.input_size:
            raise ValueError(
                f"input: expected feature size (last dimension) {self.input_size}, got {x.shape[2]} "
                f"(shape {tuple(x.shape)})"
            )
        if x.shape[0] == 0:
            raise ValueError("input: the sequence is empty (T=0)")
        expected = (self.num_layers, x.shape[1], self.hidden_size)
        if state is None:
            zeros = x.new_zeros(expected)
            return [zeros] * self.num_states
        if isinstance(state, Tensor):
            state = (state,)
        if len(state) != self.num_states:
            raise ValueError(
                f"state: expected a tuple of {self.num_states} tensors (one per cell state), got {len(state)}"
            )
        for i, s in enumerate(state):
            if tuple(s.shape) != expected:
                raise ValueError(
                    f"state[{i}]: expected shape [num_layers={expected[0]}, batch={expected[1]}, "
                    f"hidden_size={expected[2]}], got {tuple(s.shape)}"
                )
        return list(state)


class _FusedSequence(torch.autograd.Function):
    """One layer over the whole sequence: generated forward, hand-derived backward."""

    @staticmethod
    def forward(
        ctx: Any, program: Program, x: Tensor, bias: Tensor, diag: Tensor | None, *rest: Tensor
    ) -> Any:
        k = program.plan.num_states
        init, weights = list(rest[:k]), list(rest[k:])
        pre, acts, states_all, saved = program.forward(x, init, weights, bias, diag, True)
        ctx.program = program
        ctx.layout = (len(acts), len(states_all), len(saved), len(weights))
        ctx.save_for_backward(x, bias, diag, pre, *acts, *states_all, *saved, *weights)
        return (states_all[0][1:], *(s[-1] for s in states_all))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_out: Tensor, *d_finals: Tensor) -> Any:
        n_acts, n_states, n_saved, _ = ctx.layout
        x, bias, diag, pre, *rest = ctx.saved_tensors
        acts, rest = rest[:n_acts], rest[n_acts:]
        states_all, rest = rest[:n_states], rest[n_states:]
        saved, weights = rest[:n_saved], rest[n_saved:]
        with torch.autocast(x.device.type, enabled=False):
            d_x, d_states, d_weights, d_bias, d_diag = ctx.program.backward(
                x,
                pre,
                acts,
                states_all,
                saved,
                weights,
                bias,
                diag,
                d_out,
                list(d_finals),
                ctx.needs_input_grad[1],
            )
        return (None, d_x, d_bias, d_diag, *d_states, *d_weights)


# -- checks ---------------------------------------------------------------------------------


def _check_sizes(
    graph: CellGraph, input_size: int, hidden_size: int, num_layers: int, dropout: float, mode: str
) -> None:
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if graph.requires_input_equals_hidden and input_size != hidden_size:
        raise CellGraphError(
            f"cell {graph.name!r} uses x outside linear nodes, so input_size ({input_size}) must "
            f"equal hidden_size ({hidden_size}); project the input first"
        )
