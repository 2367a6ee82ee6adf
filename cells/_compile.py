"""Compilation of cell graphs to fast PyTorch layers (being built: see tests/test_compile.py)."""

from __future__ import annotations

from torch import nn

from cells._graph import CellGraph
from cells._reference import ReferenceLayer


def build_layer(
    graph: CellGraph, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0
) -> nn.Module:
    """Temporary: the reference layer until the compiled one lands."""
    return ReferenceLayer(graph, input_size, hidden_size, num_layers, dropout)
