"""Search strategies: which architectures to evaluate next, as pure, serializable logic.

Example:
    >>> from search._jobspec import JobSpec
    >>> spec = JobSpec.from_yaml_text('''
    ... name: demo
    ... strategy: {kind: regularized_evolution, population_size: 10, sample_size: 3}
    ... tasks: [{name: memorize}]
    ... budget: {max_architectures: 20}
    ... ''')
    >>> strategy = RegularizedEvolution.from_config(spec.strategy, spec.seed_graphs, spec.seed, None)
    >>> strategy.kind, strategy.config.population_size, strategy.ask().library_name
    ('regularized_evolution', 10, 'lstm')
"""

from __future__ import annotations

from search._strategies._base import (
    BaseStrategyConfig,
    Candidate,
    Outcome,
    Prefilter,
    Proposal,
    Refine,
    Strategy,
)
from search._strategies._evolution import RegularizedEvolution, RegularizedEvolutionConfig
from search._strategies._halving import HalvingSection, Ladder, Rung, ladder_tasks, rungs_of
from search._strategies._jozefowicz import JozefowiczConfig, JozefowiczSearch
from search._strategies._prefilter import PREFILTER_BATCH, PrefilterSection
from search._strategies._registry import STRATEGIES, STRATEGY_KINDS, StrategyConfig
from search._strategies._scoring import best_of, relative_value, worst_task_score
from search._strategies._simple import FixedCells, FixedConfig, RandomConfig, RandomSearch
from search._strategies._stages import Stages, StageStatus, TaskProgress

__all__ = [
    "PREFILTER_BATCH",
    "STRATEGIES",
    "STRATEGY_KINDS",
    "BaseStrategyConfig",
    "Candidate",
    "FixedCells",
    "FixedConfig",
    "HalvingSection",
    "JozefowiczConfig",
    "JozefowiczSearch",
    "Ladder",
    "Outcome",
    "Prefilter",
    "PrefilterSection",
    "Proposal",
    "RandomConfig",
    "RandomSearch",
    "Refine",
    "RegularizedEvolution",
    "RegularizedEvolutionConfig",
    "Rung",
    "StageStatus",
    "Stages",
    "Strategy",
    "StrategyConfig",
    "TaskProgress",
    "best_of",
    "ladder_tasks",
    "relative_value",
    "rungs_of",
    "worst_task_score",
]
