"""Two strategies without memory: random cells, and a fixed list of cells."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cells import CellGraph, random_cell
from cells._mutation import DEFAULT_MAX_NODES
from search._strategies._base import Candidate, Outcome, Proposal, Strategy


class RandomSearch(Strategy):
    """The seed cells, then random cells (``num_states``: ``None`` draws 1-3 per cell).

    Example:
        >>> search = RandomSearch(num_states=1, max_nodes=6, seed=0)
        >>> cell = search.ask().graph
        >>> cell.num_states, len(cell.nodes) <= 6
        (1, True)
    """

    kind = "random"

    def __init__(
        self,
        seed_cells: Sequence[tuple[str | None, CellGraph]] = (),
        num_states: int | None = None,
        max_nodes: int = DEFAULT_MAX_NODES,
        seed: int = 0,
    ) -> None:
        super().__init__(seed_cells, seed)
        self.num_states = num_states
        self.max_nodes = max_nodes

    def _propose(self) -> Proposal | None:
        def draw() -> Candidate:
            cell = random_cell(self._rng, num_states=self.num_states, max_nodes=self.max_nodes)
            return Candidate.of(cell, "random")

        return self._first_new(draw)  # type: ignore[no-any-return]

    def _observe(self, outcome: Outcome, proposed: dict[str, Any] | None) -> None:
        pass


class FixedCells(Strategy):
    """No search: each listed cell once, on every task (no thresholds), e.g. the paper's table.

    Example:
        >>> from cells import library
        >>> fixed = FixedCells([("lstm", library.get("lstm")), ("gru", library.get("gru"))])
        >>> [fixed.ask().library_name, fixed.ask().library_name], fixed.ask(), fixed.finished
        (['lstm', 'gru'], None, True)
    """

    kind = "fixed"

    def __init__(self, cells: Sequence[tuple[str | None, CellGraph]], seed: int = 0) -> None:
        super().__init__((), seed)
        self._cells = list(cells)

    def _propose(self) -> Proposal | None:
        while self._cells:
            name, graph = self._cells.pop(0)
            candidate = Candidate.of(graph, "fixed", library_name=name, gated=False)
            if candidate.hash not in self._seen:
                return candidate
            self.duplicates += 1
        return None

    def _observe(self, outcome: Outcome, proposed: dict[str, Any] | None) -> None:
        pass

    @property
    def finished(self) -> bool:
        return not self._cells

    def state_dict(self) -> dict[str, Any]:
        cells = [[name, graph.model_dump(mode="json")] for name, graph in self._cells]
        return {**super().state_dict(), "cells": cells}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._cells = [(name, CellGraph.parse(graph)) for name, graph in state["cells"]]
