"""Search strategies: which architectures to evaluate next, as pure, serializable logic.

Example:
    >>> from search._jobspec import JobSpec
    >>> spec = JobSpec.from_yaml_text('''
    ... name: demo
    ... strategy: {kind: regularized_evolution, population_size: 10, sample_size: 3}
    ... tasks: [{name: memorize}]
    ... budget: {max_architectures: 20}
    ... ''')
    >>> strategy = make_strategy(spec)
    >>> strategy.kind, strategy.ask().library_name
    ('regularized_evolution', 'lstm')
"""

from __future__ import annotations

from typing import Any

from cells import CellGraph
from search._jobspec import JobSpec
from search._strategies._base import Candidate, Outcome, Prefilter, Proposal, Refine, Strategy
from search._strategies._evolution import RegularizedEvolution
from search._strategies._jozefowicz import JozefowiczSearch
from search._strategies._scoring import best_of, relative_value, worst_task_score
from search._strategies._simple import FixedCells, RandomSearch
from search._strategies._stages import Stages, TaskProgress

STRATEGIES: dict[str, type[Strategy]] = {
    cls.kind: cls for cls in (JozefowiczSearch, RegularizedEvolution, RandomSearch, FixedCells)
}


PREFILTER_BATCH = 8
"""Mutants screened at once by a job's pre-filter unless its ``prefilter.batch`` says otherwise."""


def make_prefilter(spec: JobSpec) -> Prefilter | None:
    """The zero-cost screen of a job's ``prefilter`` settings (``None``: off, the default).

    ``prefilter`` holds :class:`workers.PrefilterConfig` fields plus ``enabled`` (default true
    once the section is there) and ``batch`` (mutants scored together; the worst
    ``floor(fraction * batch)`` of each batch are dropped). Cells are scored on the job's
    first task (the filter task in the paper's pipeline), on the CPU.
    """
    if spec.prefilter is None:
        return None
    from workers._prefilter import PrefilterConfig, drop_worst
    from workers._task import TaskSpec

    settings = dict(spec.prefilter)
    enabled = settings.pop("enabled", True)
    batch = settings.pop("batch", PREFILTER_BATCH)
    if not isinstance(enabled, bool):
        raise ValueError(f"prefilter.enabled: expected true or false, got {enabled!r}")
    if not enabled:
        return None
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 2:
        raise ValueError(f"prefilter.batch: expected an integer of at least 2, got {batch!r}")
    try:
        config = PrefilterConfig.model_validate(settings)
    except ValueError as exc:
        raise ValueError(f"prefilter: {exc}") from None
    first = spec.tasks[0]
    task_spec = TaskSpec(name=first.name, settings=first.settings)
    resolved: list[Any] = []  # the task is built once, on first use (it may load data)

    def keep(graphs: list[CellGraph]) -> list[bool]:
        if not resolved:
            from workers._evaluate import resolve_task

            resolved.append(resolve_task(task_spec))
        kept = drop_worst(
            graphs,
            config.fraction,
            resolved[0],
            proxy=config.proxy,
            hidden_size=config.hidden_size,
            batches=config.batches,
            seed=config.seed,
            batch_size=config.batch_size,
            device="cpu",
        )
        kept_ids = {id(g) for g in kept}
        return [id(g) in kept_ids for g in graphs]

    reason = f"pre-filter: {config.proxy} score in the worst {config.fraction:g} of a batch of {batch}"
    return Prefilter(keep=keep, batch=batch, reason=reason)


def make_strategy(spec: JobSpec) -> Strategy:
    """The strategy a job asks for, seeded with the job's seed cells and seed."""
    settings = spec.strategy
    seeds = spec.seed_graphs
    if settings.kind == "jozefowicz":
        return JozefowiczSearch(
            seeds,
            top_k=settings.top_k,
            p_refine=settings.p_refine,
            refine_trials=settings.refine_trials,
            mutation_p=settings.mutation_p,
            seed=spec.seed,
            prefilter=make_prefilter(spec),
        )
    if settings.kind == "regularized_evolution":
        return RegularizedEvolution(
            seeds,
            population_size=settings.population_size,
            sample_size=settings.sample_size,
            mutation_p=settings.mutation_p,
            seed=spec.seed,
            prefilter=make_prefilter(spec),
        )
    if settings.kind == "random":
        return RandomSearch(
            seeds, num_states=settings.num_states, max_nodes=settings.max_nodes, seed=spec.seed
        )
    from search._jobspec import _resolved

    return FixedCells([_resolved(cell) for cell in settings.cells], seed=spec.seed)


__all__ = [
    "PREFILTER_BATCH",
    "STRATEGIES",
    "Candidate",
    "FixedCells",
    "JozefowiczSearch",
    "Outcome",
    "Prefilter",
    "Proposal",
    "RandomSearch",
    "Refine",
    "RegularizedEvolution",
    "Stages",
    "Strategy",
    "TaskProgress",
    "best_of",
    "make_prefilter",
    "make_strategy",
    "relative_value",
    "worst_task_score",
]
