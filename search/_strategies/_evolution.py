"""Regularized (aging) evolution, Real et al. (2019), asynchronous as in the paper."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

import cells  # mutate and random_cell load NumPy: looked up when first called
from cells import CellGraph
from search._job_errors import field_error
from search._strategies._base import (
    MAX_LISTED,
    BaseStrategyConfig,
    Candidate,
    Outcome,
    Prefilter,
    Proposal,
    Strategy,
    graph_of,
)


class RegularizedEvolutionConfig(BaseStrategyConfig):
    """Aging evolution (Real et al. 2019): tournament of ``sample_size`` out of the newest
    ``population_size`` architectures, the winner is mutated, the oldest dies."""

    kind: Literal["regularized_evolution"]
    population_size: int = Field(default=100, ge=2, le=MAX_LISTED)
    """Living architectures, 2 to 10,000."""
    sample_size: int = Field(default=25, ge=1, le=MAX_LISTED)
    """Members drawn for each tournament, 1 to ``population_size``."""
    mutation_p: float | None = Field(default=None, gt=0, le=1)
    """Per-node replacement probability of a mutation, above 0 and at most 1; ``None`` draws it
    afresh per mutation."""

    @model_validator(mode="after")
    def _sample_fits(self) -> RegularizedEvolutionConfig:
        if self.sample_size > self.population_size:
            raise field_error(
                "sample_size",
                f"expected at most population_size ({self.population_size}), got {self.sample_size}",
            )
        return self


class RegularizedEvolution(Strategy):
    """A population of the ``population_size`` newest architectures.

    The population starts with the seed cells, then random cells. After that each step
    samples ``sample_size`` members, mutates the best of them, and the child joins the
    population when its outcome arrives, pushing out the oldest member (not the worst:
    that is the "aging" which regularizes). Members that a filter stopped score minus
    infinity in tournaments but still take their place until they age out.

    Example:
        >>> from cells import library
        >>> evolution = RegularizedEvolution([("gru", library.get("gru"))], population_size=2, sample_size=2)
        >>> [evolution.ask().origin for _ in range(2)], evolution.ask()
        (['seed', 'random'], None)
    """

    kind = "regularized_evolution"
    config_class = RegularizedEvolutionConfig

    def __init__(
        self,
        seed_cells: Sequence[tuple[str | None, CellGraph]] = (),
        seed: int = 0,
        prefilter: Prefilter | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(seed_cells, seed, prefilter)
        self.config: RegularizedEvolutionConfig = self._settings(settings)
        self._population: list[dict[str, Any]] = []
        """Oldest first."""
        self._initial = 0
        """Proposals made to fill the first population (seeds and random cells)."""

    @property
    def population(self) -> list[tuple[str, float | None]]:
        """``(hash, score)`` of the living members, oldest first."""
        return [(e["hash"], e["score"]) for e in self._population]

    def listed(self) -> list[str]:
        return [e["hash"] for e in self._population]

    def ask(self) -> Proposal | None:
        proposal = super().ask()
        if isinstance(proposal, Candidate) and proposal.origin in ("seed", "random"):
            self._initial += 1
        return proposal

    def _next_seed(self) -> Candidate | None:
        return super()._next_seed() if self._initial < self.config.population_size else None

    def _propose(self) -> Proposal | None:
        if self._initial < self.config.population_size:
            candidate: Candidate | None = self._first_new(
                lambda: Candidate.of(cells.random_cell(self._rng), "random")
            )
            return candidate
        screened = self._take_screened()
        if screened is not None:
            return screened
        if not self._population:
            return None
        size = min(self.config.sample_size, len(self._population))
        picks = self._rng.choice(len(self._population), size=size, replace=False)
        parent = max((self._population[int(i)] for i in picks), key=_fitness)
        parent_graph = graph_of(parent)

        def draw() -> Candidate:
            child, description = cells.mutate(parent_graph, self._rng, p=self.config.mutation_p)
            return Candidate.of(
                child,
                "mutation",
                parent_hash=parent["hash"],
                mutation=description,
                generation=parent["generation"] + 1,
            )

        return self._new_mutant(draw)

    def _observe(self, outcome: Outcome, proposed: dict[str, Any] | None) -> None:
        if proposed is None:  # told again: successive halving promoted it to a higher rung
            for member in self._population:
                if member["hash"] == outcome.hash:
                    member["score"] = outcome.score
            return
        self._population.append({**proposed, "score": outcome.score})
        del self._population[: max(0, len(self._population) - self.config.population_size)]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "population": self._population, "initial": self._initial}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._population = list(state["population"])
        self._initial = int(state["initial"])


def _fitness(member: dict[str, Any]) -> float:
    return float(member["score"]) if member["score"] is not None else -math.inf
