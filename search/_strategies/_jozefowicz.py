"""The search of Jozefowicz, Zaremba & Sutskever (2015): a top-K list refined and mutated."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

import cells  # mutate and random_cell load NumPy: looked up when first called
from cells import CellGraph
from search._job_model import MAX_TRIALS
from search._strategies._base import (
    MAX_LISTED,
    BaseStrategyConfig,
    Candidate,
    Outcome,
    Prefilter,
    Proposal,
    Refine,
    Strategy,
    entry,
    graph_of,
)


class JozefowiczConfig(BaseStrategyConfig):
    """The paper's search: a list of the best ``top_k`` architectures, seeded with the known
    cells; each step refines a listed architecture (probability ``p_refine``: more
    hyperparameter trials) or mutates one into a new candidate."""

    kind: Literal["jozefowicz"]
    top_k: int = Field(default=100, ge=1, le=MAX_LISTED)
    """Architectures on the list, 1 to 10,000."""
    p_refine: float = Field(default=0.2, ge=0, le=1)
    """Probability (0 to 1) that a step spends more trials on a listed architecture instead of mutating."""
    refine_trials: int = Field(default=5, ge=1, le=MAX_TRIALS)
    """Extra hyperparameter trials per search task when an architecture is refined, 1 to 1000."""
    mutation_p: float | None = Field(default=None, gt=0, le=1)
    """Per-node replacement probability of a mutation, above 0 and at most 1; ``None`` draws it
    afresh per mutation."""


class JozefowiczSearch(Strategy):
    """A list of the best ``top_k`` architectures, seeded with the known cells.

    Each step either refines a scored listed architecture (probability ``p_refine``:
    ``refine_trials`` more hyperparameter trials per search task, which sharpens its
    estimate) or mutates a listed architecture into a new candidate. Seed cells are listed
    before they are scored, so mutation starts at once; a seed that scores nothing (a
    filter stopped it) leaves the list. Baselines are listed when scored but never refined:
    their best value is the yardstick of every score.

    Example:
        >>> from cells import library
        >>> search = JozefowiczSearch([("gru", library.get("gru"))], top_k=2, seed=0)
        >>> first = search.ask()
        >>> first.library_name, first.origin
        ('gru', 'seed')
        >>> search.ask().origin  # the seed is listed: mutate it while it trains
        'mutation'
    """

    kind = "jozefowicz"
    config_class = JozefowiczConfig

    def __init__(
        self,
        seed_cells: Sequence[tuple[str | None, CellGraph]] = (),
        seed: int = 0,
        prefilter: Prefilter | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(seed_cells, seed, prefilter)
        self.config: JozefowiczConfig = self._settings(settings)
        self._listed: list[dict[str, Any]] = []
        """Entries sorted best first; unscored seeds (score ``None``) at the end."""
        self._refining: set[str] = set()

    @property
    def top(self) -> list[tuple[str, float | None]]:
        """``(hash, score)`` of the listed architectures, best first (unscored seeds last)."""
        return [(e["hash"], e["score"]) for e in self._listed]

    def listed(self) -> list[str]:
        return [e["hash"] for e in self._listed]

    def awaiting(self, cell_hash: str) -> bool:
        return super().awaiting(cell_hash) or cell_hash in self._refining

    def _propose(self) -> Proposal | None:
        refinable = [
            e
            for e in self._listed
            if e["score"] is not None and not e["baseline"] and e["hash"] not in self._refining
        ]
        # The draw happens even when nothing is refinable so the random stream stays aligned.
        if self._rng.random() < self.config.p_refine and refinable:
            chosen = refinable[int(self._rng.integers(len(refinable)))]
            self._refining.add(chosen["hash"])
            return Refine(chosen["hash"], self.config.refine_trials)
        screened = self._take_screened()
        if screened is not None:
            return screened
        if not self._listed:
            return None
        parent = self._listed[int(self._rng.integers(len(self._listed)))]
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

    def _next_seed(self) -> Candidate | None:
        seed = super()._next_seed()
        if seed is not None:  # listed while it trains, so it can be mutated at once
            self._listed.append(entry(seed))
        return seed

    def _observe(self, outcome: Outcome, proposed: dict[str, Any] | None) -> None:
        self._refining.discard(outcome.hash)
        listed = next((e for e in self._listed if e["hash"] == outcome.hash), None)
        if listed is not None:
            self._listed.remove(listed)
        record = listed or proposed
        if record is not None and outcome.complete and outcome.score is not None:
            self._listed.append({**record, "score": outcome.score})
        self._truncate()

    def _truncate(self) -> None:
        scored = sorted((e for e in self._listed if e["score"] is not None), key=lambda e: -e["score"])
        waiting = [e for e in self._listed if e["score"] is None]
        self._listed = scored[: self.config.top_k] + waiting

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "listed": self._listed, "refining": sorted(self._refining)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._listed = list(state["listed"])
        self._refining = set(state["refining"])
