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

from search._jobspec import JobSpec
from search._strategies._base import Candidate, Outcome, Proposal, Refine, Strategy
from search._strategies._evolution import RegularizedEvolution
from search._strategies._jozefowicz import JozefowiczSearch
from search._strategies._scoring import best_of, relative_value, worst_task_score
from search._strategies._simple import FixedCells, RandomSearch
from search._strategies._stages import Stages, TaskProgress

STRATEGIES: dict[str, type[Strategy]] = {
    cls.kind: cls for cls in (JozefowiczSearch, RegularizedEvolution, RandomSearch, FixedCells)
}


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
        )
    if settings.kind == "regularized_evolution":
        return RegularizedEvolution(
            seeds,
            population_size=settings.population_size,
            sample_size=settings.sample_size,
            mutation_p=settings.mutation_p,
            seed=spec.seed,
        )
    if settings.kind == "random":
        return RandomSearch(
            seeds, num_states=settings.num_states, max_nodes=settings.max_nodes, seed=spec.seed
        )
    from search._jobspec import _resolved

    return FixedCells([_resolved(cell) for cell in settings.cells], seed=spec.seed)


__all__ = [
    "STRATEGIES",
    "Candidate",
    "FixedCells",
    "JozefowiczSearch",
    "Outcome",
    "Proposal",
    "RandomSearch",
    "Refine",
    "RegularizedEvolution",
    "Stages",
    "Strategy",
    "TaskProgress",
    "best_of",
    "make_strategy",
    "relative_value",
    "worst_task_score",
]
