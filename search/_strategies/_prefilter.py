"""A job's ``prefilter`` section: screen mutants at zero cost before they train.

The section holds :class:`workers.PrefilterConfig` fields (which proxy, how much to drop,
the scoring model) plus ``enabled`` (default true once the section is there) and ``batch``
(mutants scored together, 2 to 1024; the worst ``floor(fraction * batch)`` of each batch are
dropped). The screen's sizes have upper bounds (:data:`PREFILTER_LIMITS`), and its numbers are
strict and finite like every number of a job.
Cells are scored on the job's first task (the filter task in the paper's pipeline), on the CPU.

Example:
    >>> section = PrefilterSection.model_validate({"proxy": "snip", "fraction": 0.25, "batch": 4})
    >>> section.enabled, section.batch, section.config.proxy, section.config.fraction
    (True, 4, 'snip', 0.25)
    >>> section.model_dump()
    {'enabled': True, 'batch': 4, 'proxy': 'snip', 'fraction': 0.25}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from search._job_errors import ErrorList, job_field_error, nested_error
from search._job_model import MAX_SEED, StrictModel

if TYPE_CHECKING:
    from workers import PrefilterConfig

PREFILTER_BATCH = 8
"""Mutants screened at once by a job's pre-filter unless its ``prefilter.batch`` says otherwise."""

MAX_PREFILTER_BATCH = 1024

PREFILTER_LIMITS: dict[str, int] = {"hidden_size": 4096, "batches": 100, "batch_size": 4096, "seed": MAX_SEED}
"""The largest value of each of the screen's settings (their lower bounds are the config's):
a screen costs no training, and must stay cheap."""


class PrefilterSection(StrictModel):
    """The ``prefilter`` section of a job; the screen's own settings are :attr:`config`.

    Those settings are checked against :class:`workers.PrefilterConfig` when the section is
    validated (loading it with torch, which only a job that screens needs), and kept as
    given, so the stored job reads back the same.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    enabled: bool = True
    """``false`` keeps the section but screens nothing."""
    batch: int = Field(default=PREFILTER_BATCH, ge=2, le=MAX_PREFILTER_BATCH)
    """Mutants scored together, 2 to 1024."""
    _config: PrefilterConfig = PrivateAttr()

    @model_validator(mode="after")
    def _valid_config(self) -> PrefilterSection:
        from workers import PrefilterConfig

        try:  # strict: ``hidden_size: true`` is no size, like everywhere in a job
            config = PrefilterConfig.model_validate(self.model_extra or {}, strict=True)
        except ValidationError as exc:
            raise nested_error(exc, PrefilterConfig) from None
        errors: ErrorList = [
            ((name,), f"expected at most {limit}, got {getattr(config, name)!r}")
            for name, limit in PREFILTER_LIMITS.items()
            if getattr(config, name) > limit
        ]
        if errors:
            raise job_field_error(errors)
        self._config = config
        return self

    @property
    def config(self) -> PrefilterConfig:
        """The screen's validated settings (defaults filled in)."""
        return self._config
