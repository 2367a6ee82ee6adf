"""NAS-Bench-NLP recipe import and export (being built)."""

from __future__ import annotations

from typing import Any

from cells._graph import CellGraph


def from_nasbench_recipe(recipe: dict[str, Any], name: str = "recipe") -> CellGraph:
    raise NotImplementedError


def to_nasbench_recipe(graph: CellGraph) -> dict[str, Any]:
    raise NotImplementedError
