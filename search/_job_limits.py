"""How much a job may spend (:class:`SearchBudget`) and what each of its trials asks of Ray
(:class:`Resources`).

Example:
    >>> SearchBudget().unlimited, SearchBudget(max_trials=10).unlimited
    (True, False)
    >>> Resources(gpus=0.25).gpus
    0.25
"""

from __future__ import annotations

from pydantic import Field, field_validator

from search._job_model import StrictModel


class SearchBudget(StrictModel):
    """When the search stops: whichever limit is hit first."""

    max_architectures: int | None = Field(default=None, ge=1)
    max_trials: int | None = Field(default=None, ge=1)
    max_seconds: float | None = Field(default=None, gt=0)

    @property
    def unlimited(self) -> bool:
        return self.max_architectures is None and self.max_trials is None and self.max_seconds is None


class Resources(StrictModel):
    """What one trial asks of Ray, and how many trials run at once."""

    cpus: float = Field(default=1.0, gt=0)
    gpus: float = Field(default=0.0, ge=0)
    """A fraction up to 1 shares a GPU between trials (0.25: four per GPU); above 1 only whole GPUs."""
    custom: dict[str, float] = Field(default_factory=dict)
    """Extra Ray resources per trial, e.g. ``{"gpu_slot": 1}``."""
    max_in_flight: int | None = Field(default=None, ge=1)
    """Trials submitted at once; ``None``: as many as the cluster's CPUs allow."""

    @field_validator("gpus", mode="after")
    @classmethod
    def _whole_above_one(cls, gpus: float) -> float:
        if gpus > 1 and not float(gpus).is_integer():
            raise ValueError(f"a GPU fraction must be at most 1 (got {gpus:g}); above 1 use whole GPUs")
        return gpus

    @field_validator("custom", mode="after")
    @classmethod
    def _positive_custom(cls, custom: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in custom.items() if v <= 0]
        if bad:
            raise ValueError(f"resource {bad[0]!r} must be positive")
        return custom
