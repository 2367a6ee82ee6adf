"""Two strategies without memory: random cells, and a fixed list of cells."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

import cells  # mutate and random_cell load NumPy: looked up when first called
from cells import CellGraph
from search._cell_entries import MAX_CELL_ENTRIES, check_cells, resolve_cell_entry
from search._job_errors import field_error
from search._strategies._base import BaseStrategyConfig, Candidate, Outcome, Prefilter, Proposal, Strategy


class RandomConfig(BaseStrategyConfig):
    """Random cells: ``num_states`` states (``None``: drawn per cell, 1-3), up to ``max_nodes`` nodes."""

    kind: Literal["random"]
    num_states: int | None = Field(default=None, ge=1, le=3)
    """States of each cell, 1 to 3; ``None``: drawn per cell."""
    max_nodes: int = Field(default=12, ge=1, le=64)
    """Nodes of a cell at most, 1 to 64 and at least ``num_states`` (each state needs its node)."""

    @model_validator(mode="after")
    def _room_for_states(self) -> RandomConfig:
        if self.num_states is not None and self.max_nodes < self.num_states:
            raise field_error(
                "max_nodes", f"expected at least num_states ({self.num_states}), got {self.max_nodes}"
            )
        return self


class FixedConfig(BaseStrategyConfig):
    """No search: evaluate exactly ``cells`` (library names or cell JSON files) on every task."""

    kind: Literal["fixed"]
    cells: list[str] = Field(min_length=1, max_length=MAX_CELL_ENTRIES)
    """1 to 1000 library cell names or cell JSON files."""

    @field_validator("cells", mode="after")
    @classmethod
    def _cells_exist(cls, cells: list[str], info: ValidationInfo) -> list[str]:
        return check_cells(cells, (info.context or {}).get("base_dir"))


class RandomSearch(Strategy):
    """The seed cells, then random cells (``num_states``: ``None`` draws 1-3 per cell).

    Example:
        >>> search = RandomSearch(num_states=1, max_nodes=6, seed=0)
        >>> cell = search.ask().graph
        >>> cell.num_states, len(cell.nodes) <= 6
        (1, True)
    """

    kind = "random"
    config_class = RandomConfig

    def __init__(
        self,
        seed_cells: Sequence[tuple[str | None, CellGraph]] = (),
        seed: int = 0,
        prefilter: Prefilter | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(seed_cells, seed)  # random cells are never screened: ``prefilter`` is unused
        self.config: RandomConfig = self._settings(settings)

    def _propose(self) -> Proposal | None:
        def draw() -> Candidate:
            config = self.config
            cell = cells.random_cell(self._rng, num_states=config.num_states, max_nodes=config.max_nodes)
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
    config_class = FixedConfig

    def __init__(self, cells: Sequence[tuple[str | None, CellGraph]], seed: int = 0) -> None:
        super().__init__((), seed)
        self._cells = list(cells)

    @classmethod
    def from_config(
        cls,
        config: BaseStrategyConfig,
        seed_cells: Sequence[tuple[str | None, CellGraph]] = (),
        seed: int = 0,
        prefilter: Prefilter | None = None,
    ) -> Self:
        """The job's ``cells``, resolved (its seed cells and pre-filter do not apply)."""
        assert isinstance(config, FixedConfig)
        return cls([resolve_cell_entry(cell) for cell in config.cells], seed=seed)

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
