"""How much a job may spend (:class:`SearchBudget`) and what each of its trials asks of Ray
(:class:`Resources`).

Every number has a finite range with an upper bound, so that a slip (``max_trials: 10**12``,
``max_seconds: .inf``, ``cpus: 1e9``) is refused when the job is read, not discovered after a
night of training.

Example:
    >>> SearchBudget().unlimited, SearchBudget(max_trials=10).unlimited
    (True, False)
    >>> Resources(gpus=0.25).gpus
    0.25
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator

from search._job_model import StrictModel

MAX_ARCHITECTURES = 1_000_000
MAX_JOB_TRIALS = 100_000_000
MAX_SECONDS = 366 * 24 * 3600.0
"""A year: the longest clock a job may set."""
MAX_CPUS = 1024.0
MAX_GPUS = 64.0
MAX_CUSTOM_RESOURCE = 1_000_000.0
MAX_IN_FLIGHT = 100_000

_RESOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}")


class SearchBudget(StrictModel):
    """When the search stops: whichever limit is hit first."""

    max_architectures: int | None = Field(default=None, ge=1, le=MAX_ARCHITECTURES)
    """Architectures the strategy may propose (baselines excluded): 1 to 1,000,000."""
    max_trials: int | None = Field(default=None, ge=1, le=MAX_JOB_TRIALS)
    """Trials the job may start: 1 to 100,000,000."""
    max_seconds: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    """Seconds the job may run, earlier runs of a resumed job included: above 0, at most a
    year (31,622,400)."""

    @property
    def unlimited(self) -> bool:
        return self.max_architectures is None and self.max_trials is None and self.max_seconds is None


class Resources(StrictModel):
    """What one trial asks of Ray, and how many trials run at once."""

    cpus: float = Field(default=1.0, gt=0, le=MAX_CPUS)
    """CPUs per trial: above 0, at most 1024."""
    gpus: float = Field(default=0.0, ge=0, le=MAX_GPUS)
    """GPUs per trial, 0 to 64: a fraction up to 1 shares a GPU between trials (0.25: four per
    GPU); above 1 only whole GPUs."""
    custom: dict[str, Annotated[float, Field(gt=0, le=MAX_CUSTOM_RESOURCE)]] = Field(default_factory=dict)
    """Extra Ray resources per trial, e.g. ``{"gpu_slot": 1}``: each above 0, at most 1,000,000;
    names of letters, digits, ``_``, ``.``, ``:``, ``/`` and ``-`` (at most 100 characters)."""
    max_in_flight: int | None = Field(default=None, ge=1, le=MAX_IN_FLIGHT)
    """Trials submitted at once, 1 to 100,000; ``None``: as many as the cluster's CPUs allow."""

    @field_validator("gpus", mode="after")
    @classmethod
    def _whole_above_one(cls, gpus: float) -> float:
        if gpus > 1 and not float(gpus).is_integer():
            raise ValueError(f"a GPU fraction must be at most 1 (got {gpus:g}); above 1 use whole GPUs")
        return gpus

    @field_validator("custom", mode="after")
    @classmethod
    def _resource_names(cls, custom: dict[str, float]) -> dict[str, float]:
        bad = [k for k in custom if not _RESOURCE_NAME.fullmatch(k)]
        if bad:
            raise ValueError(
                f"expected resource names of letters, digits, '_', '.', ':', '/' and '-' "
                f"(starting with a letter or digit, at most 100 characters), got {bad[0]!r}"
            )
        return custom
