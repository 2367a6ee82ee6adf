"""A job's strategy and pre-filter built from its spec: where the job file meets the strategies.

The strategies own their configs and know nothing of job files; the job spec assembles its
``strategy`` and ``prefilter`` sections from them; this module, which depends on both, builds
the objects a run uses.

Example:
    >>> from search._jobspec import JobSpec
    >>> spec = JobSpec.model_validate({"name": "demo", "strategy": {"kind": "random"},
    ...     "tasks": [{"name": "memorize", "role": "search"}], "budget": {"max_architectures": 1}})
    >>> type(make_strategy(spec)).__name__, make_prefilter(spec) is None
    ('RandomSearch', True)
"""

from __future__ import annotations

from typing import Any

from cells import CellGraph
from search._jobspec import JobSpec
from search._strategies import STRATEGIES, Prefilter, Strategy


def make_strategy(spec: JobSpec) -> Strategy:
    """The strategy a job asks for, seeded with the job's seed cells and seed."""
    strategy_class = STRATEGIES[spec.strategy.kind]
    return strategy_class.from_config(spec.strategy, spec.seed_graphs, spec.seed, make_prefilter(spec))


def make_prefilter(spec: JobSpec) -> Prefilter | None:
    """The zero-cost screen of a job's ``prefilter`` section (``None``: off, the default)."""
    section = spec.prefilter
    if section is None or not section.enabled:
        return None
    from workers import TaskSpec

    config, first = section.config, spec.tasks[0]
    task_spec = TaskSpec(name=first.name, settings=first.settings)
    resolved: list[Any] = []  # the task is built once, on first use (it may load data)

    def keep(graphs: list[CellGraph]) -> list[bool]:
        from workers import drop_worst, resolve_task

        if not resolved:
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

    worst = f"the worst {config.fraction:g} of a batch of {section.batch}"
    reason = f"pre-filter: {config.proxy} score in {worst}"
    return Prefilter(keep=keep, batch=section.batch, reason=reason)
