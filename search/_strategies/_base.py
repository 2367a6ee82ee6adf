"""The strategy interface: a strategy proposes architectures and observes their scores.

A strategy is pure logic (no Ray, no database), built from its section of the job file
(its :attr:`Strategy.config_class`, e.g. ``strategy: {kind: jozefowicz, top_k: 10}``): the
driver asks it for the next
:class:`Candidate` (a new cell to evaluate) or :class:`Refine` (more hyperparameter
trials for a known one), evaluates it, and tells it the :class:`Outcome`. Its whole state
is JSON (:meth:`Strategy.state_dict`), saved by the driver so a resumed job proposes
exactly what the uninterrupted job would have.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from cells import CellGraph, canonical_hash
from search._job_model import StrictModel

if TYPE_CHECKING:
    import numpy as np

Origin = Literal["baseline", "seed", "mutation", "random", "fixed"]

MAX_LISTED = 10_000
"""The longest list a strategy keeps (a top-K list, a population)."""

_MAX_PROPOSAL_TRIES = 50
"""New graphs drawn per ask before a strategy concludes it only finds known cells."""


@dataclass(frozen=True)
class Candidate:
    """A new architecture to evaluate.

    ``gated``: goes through the task stages with their thresholds; baselines
    and fixed cells are evaluated on every task regardless. ``parent_hash``: the cell it was
    mutated from; its best hyperparameters become the child's first trial.
    """

    graph: CellGraph
    hash: str
    origin: Origin
    parent_hash: str | None = None
    mutation: str | None = None
    library_name: str | None = None
    generation: int = 0
    gated: bool = True

    @classmethod
    def of(cls, graph: CellGraph, origin: Origin, **fields: Any) -> Candidate:
        return cls(graph=graph, hash=canonical_hash(graph), origin=origin, **fields)


@dataclass(frozen=True)
class Refine:
    """Spend ``trials`` more hyperparameter trials per search task on a known architecture."""

    hash: str
    trials: int


@dataclass(frozen=True)
class Outcome:
    """What the evaluation of an architecture gave.

    ``score``: worst search task relative to the best baseline (``None``: no task could be
    scored). ``complete``: it went through every stage meant for it; ``False`` when a filter
    or a threshold stopped it (its score then covers the stages it reached).
    """

    hash: str
    score: float | None
    complete: bool
    baseline: bool = False


Proposal = Candidate | Refine


@dataclass(frozen=True)
class Prefilter:
    """Screens mutants before they train: ``keep(graphs)`` says which of a batch to keep.

    A strategy with a pre-filter draws ``batch`` new mutants at a time, asks ``keep`` about
    all of them and proposes only the kept ones; the dropped ones are handed to the driver
    (:meth:`Strategy.take_prefiltered`) to be recorded as filtered out. ``reason`` names the
    screen in those records.

    Example:
        >>> keep_first_half = Prefilter(lambda graphs: [i < len(graphs) // 2 for i in range(len(graphs))])
        >>> keep_first_half.keep([None] * 4)
        [True, True, False, False]
    """

    keep: Callable[[list[CellGraph]], list[bool]]
    batch: int = 8
    reason: str = "pre-filter"


class BaseStrategyConfig(StrictModel):
    """A strategy's section of the job file; each strategy's own model adds its settings.

    ``kind`` (a ``Literal`` in each subclass) names the strategy and tells the members of
    the job file's strategy union apart.
    """

    kind: str


class Strategy(ABC):
    """Base class: the seen set (dedup by canonical hash), the seed cells, the random state.

    Subclasses set :attr:`kind` and :attr:`config_class`, implement :meth:`_propose` and
    :meth:`_observe`, and extend :meth:`state_dict` / :meth:`load_state_dict` with their own
    fields. Keyword settings of a subclass's constructor are the fields of its config, with
    its defaults (see :meth:`_settings`).
    """

    kind: ClassVar[str]
    config_class: ClassVar[type[BaseStrategyConfig]]

    def __init__(
        self,
        seed_cells: Sequence[tuple[str | None, CellGraph]] = (),
        seed: int = 0,
        prefilter: Prefilter | None = None,
    ) -> None:
        self._seed_cells = list(seed_cells)
        self.prefilter = prefilter
        self._screened: list[Candidate] = []
        """Mutants the pre-filter kept, proposed before any new one is drawn."""
        self._prefiltered: list[Candidate] = []
        """Mutants the pre-filter dropped, until the driver takes them."""
        import numpy as np  # NumPy loads with the first strategy, not with every job-file check

        self._rng = np.random.default_rng(seed)
        self._seen: set[str] = set()
        self._pending: dict[str, dict[str, Any]] = {}
        """Proposed (or registered) and not yet observed: hash -> entry (see :func:`entry`)."""
        self.duplicates = 0
        """Drawn cells that were already known (cost no training)."""

    @classmethod
    def from_config(
        cls,
        config: BaseStrategyConfig,
        seed_cells: Sequence[tuple[str | None, CellGraph]] = (),
        seed: int = 0,
        prefilter: Prefilter | None = None,
    ) -> Self:
        """The strategy a job's ``strategy`` section describes."""
        return cls(seed_cells, seed, prefilter, **config.model_dump(exclude={"kind"}))

    @classmethod
    def _settings(cls, settings: dict[str, Any]) -> Any:
        """Keyword settings validated into the strategy's config (its defaults filled in)."""
        return cls.config_class.model_validate({"kind": cls.kind, **settings})

    # -- the interface -------------------------------------------------------------------

    def ask(self) -> Proposal | None:
        """The next proposal, or ``None`` when nothing can be proposed until an outcome arrives."""
        proposal = self._next_seed() or self._propose()
        if isinstance(proposal, Candidate):
            self._seen.add(proposal.hash)
            self._pending[proposal.hash] = entry(proposal)
        return proposal

    def tell(self, outcome: Outcome) -> None:
        """Observe the outcome of a proposal (or of a registered architecture such as a baseline)."""
        self._observe(outcome, self._pending.pop(outcome.hash, None))

    def register(self, candidate: Candidate) -> None:
        """Make a cell the driver evaluates itself (a baseline) known: never proposed, observed."""
        self._seen.add(candidate.hash)
        self._pending.setdefault(candidate.hash, entry(candidate))

    def is_known(self, cell_hash: str) -> bool:
        """Proposed or registered before (equivalent graphs share a hash: never proposed twice)."""
        return cell_hash in self._seen

    def awaiting(self, cell_hash: str) -> bool:
        """Whether the strategy still waits for an outcome of this architecture."""
        return cell_hash in self._pending

    def listed(self) -> list[str]:
        """Hashes of the architectures on the strategy's list (top-K list, living population)."""
        return []

    @property
    def finished(self) -> bool:
        """No proposal will ever come again (a fixed list is exhausted)."""
        return False

    def take_prefiltered(self) -> list[Candidate]:
        """The mutants the pre-filter dropped since the last call (never proposed, never trained)."""
        dropped, self._prefiltered = self._prefiltered, []
        return dropped

    # -- for subclasses ------------------------------------------------------------------

    @abstractmethod
    def _propose(self) -> Proposal | None: ...

    @abstractmethod
    def _observe(self, outcome: Outcome, proposed: dict[str, Any] | None) -> None:
        """``proposed``: the entry of the proposal, ``None`` for an outcome of something known
        already (a refinement)."""

    def _next_seed(self) -> Candidate | None:
        while self._seed_cells:
            name, graph = self._seed_cells.pop(0)
            candidate = Candidate.of(graph, "seed", library_name=name)
            if candidate.hash not in self._seen:
                return candidate
        return None

    def _first_new(self, draw: Any) -> Any:
        """Call ``draw()`` (returning a candidate) until one is new; ``None`` after many known ones."""
        for _ in range(_MAX_PROPOSAL_TRIES):
            try:
                candidate = draw()
            except RuntimeError:  # a degenerate parent that mutation cannot change: draw again
                continue
            if candidate.hash not in self._seen:
                return candidate
            self.duplicates += 1
        return None

    def _take_screened(self) -> Candidate | None:
        """A mutant kept by an earlier pre-filter batch, if one waits (call before drawing a parent)."""
        return self._screened.pop(0) if self._screened else None

    def _new_mutant(self, draw: Callable[[], Candidate]) -> Candidate | None:
        """A new mutant from ``draw``. With a pre-filter, a batch of new mutants is drawn, the
        worst are dropped (kept for :meth:`take_prefiltered`) and the rest wait their turn."""
        if self.prefilter is None:
            candidate: Candidate | None = self._first_new(draw)
            return candidate
        batch: list[Candidate] = []
        for _ in range(self.prefilter.batch):
            candidate = self._first_new(draw)
            if candidate is None:
                break
            self._seen.add(candidate.hash)  # not drawn twice within the batch, nor ever again
            batch.append(candidate)
        if not batch:
            return None
        keep = self.prefilter.keep([c.graph for c in batch])
        self._prefiltered.extend(c for c, kept in zip(batch, keep, strict=True) if not kept)
        self._screened.extend(c for c, kept in zip(batch, keep, strict=True) if kept)
        return self._take_screened()

    # -- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue, as JSON-ready data."""
        return {
            "kind": self.kind,
            "rng": rng_state(self._rng),
            "seen": sorted(self._seen),
            "pending": list(self._pending.values()),
            "seed_cells": [[name, graph.model_dump(mode="json")] for name, graph in self._seed_cells],
            "duplicates": self.duplicates,
            "screened": [_candidate_state(c) for c in self._screened],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"strategy state is for {state.get('kind')!r}, not {self.kind!r}")
        self._rng = rng_from_state(state["rng"])
        self._seen = set(state["seen"])
        self._pending = {e["hash"]: e for e in state["pending"]}
        self._seed_cells = [(name, CellGraph.parse(graph)) for name, graph in state["seed_cells"]]
        self.duplicates = int(state["duplicates"])
        self._screened = [_candidate_from_state(c) for c in state.get("screened", [])]


def entry(candidate: Candidate, score: float | None = None) -> dict[str, Any]:
    """A JSON record of a candidate in a strategy's lists."""
    return {
        "hash": candidate.hash,
        "graph": candidate.graph.model_dump(mode="json"),
        "library_name": candidate.library_name,
        "generation": candidate.generation,
        "baseline": candidate.origin == "baseline",
        "score": score,
    }


def _candidate_state(candidate: Candidate) -> dict[str, Any]:
    return {
        "graph": candidate.graph.model_dump(mode="json"),
        "origin": candidate.origin,
        "parent_hash": candidate.parent_hash,
        "mutation": candidate.mutation,
        "generation": candidate.generation,
    }


def _candidate_from_state(state: dict[str, Any]) -> Candidate:
    graph = CellGraph.parse(state["graph"])
    fields = {k: v for k, v in state.items() if k not in ("graph", "origin")}
    return Candidate.of(graph, state["origin"], **fields)


def graph_of(record: dict[str, Any]) -> CellGraph:
    return CellGraph.parse(record["graph"])


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The generator's state as JSON (its 128-bit integers as strings, safe in any JSON store)."""
    return _ints_to_str(rng.bit_generator.state)


def rng_from_state(state: dict[str, Any]) -> np.random.Generator:
    import numpy as np

    restored = _str_to_ints(state)
    generator = np.random.default_rng()
    if restored["bit_generator"] != type(generator.bit_generator).__name__:
        raise ValueError(f"random state of {restored['bit_generator']!r} cannot be restored")
    generator.bit_generator.state = restored
    return generator


def _ints_to_str(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _ints_to_str(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _str_to_ints(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _str_to_ints(v) for k, v in value.items()}
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value
