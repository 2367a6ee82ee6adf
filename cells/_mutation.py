"""Mutation and random cells (being built)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cells._graph import CellGraph


def mutate(graph: CellGraph, rng: np.random.Generator) -> tuple[CellGraph, str]:
    raise NotImplementedError


def random_cell(rng: np.random.Generator, **kwargs: Any) -> CellGraph:
    raise NotImplementedError
