"""The strategies a job can name, and the job file's ``strategy`` union built from them.

A new strategy is a :class:`~search._strategies._base.Strategy` subclass with its own config
model, listed in :data:`STRATEGIES`; the job file then accepts ``strategy: {kind: ...}`` with
its settings, and :func:`search._job_strategy.make_strategy` builds it.

Example:
    >>> STRATEGY_KINDS
    ('fixed', 'jozefowicz', 'random', 'regularized_evolution')
    >>> from pydantic import TypeAdapter
    >>> TypeAdapter(StrategyConfig).validate_python({"kind": "random", "max_nodes": 8})
    RandomConfig(kind='random', num_states=None, max_nodes=8)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from search._strategies._base import BaseStrategyConfig, Strategy
from search._strategies._evolution import RegularizedEvolution
from search._strategies._jozefowicz import JozefowiczSearch
from search._strategies._simple import FixedCells, RandomSearch

STRATEGIES: dict[str, type[Strategy]] = {
    cls.kind: cls for cls in (JozefowiczSearch, RegularizedEvolution, RandomSearch, FixedCells)
}
"""Each strategy class by its ``kind``."""

STRATEGY_KINDS: tuple[str, ...] = tuple(sorted(STRATEGIES))

if TYPE_CHECKING:
    StrategyConfig = BaseStrategyConfig
else:
    StrategyConfig = Annotated[
        Union[tuple(cls.config_class for cls in STRATEGIES.values())],  # noqa: UP007 (built at run time)
        Field(discriminator="kind"),
    ]
"""A job's ``strategy`` section: the config of one of :data:`STRATEGIES`, told apart by ``kind``."""
