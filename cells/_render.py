"""Rendering: equations (text, LaTeX) and Graphviz DOT (being built)."""

from __future__ import annotations

from typing import Literal

from cells._graph import CellGraph


def to_equations(graph: CellGraph, format: Literal["text", "latex"] = "text") -> str:
    raise NotImplementedError


def to_dot(graph: CellGraph) -> str:
    raise NotImplementedError
