"""The base of every section of a job file, and the limits its numbers share.

Every section is strict: an unknown key is refused (a typo must not pass silently), a number
must be a number (``true`` is not 1, ``"3"`` is not 3) and finite (``.inf`` and ``.nan`` are
refused), and a validated section never changes.

Example:
    >>> from pydantic import Field
    >>> class Steps(StrictModel):
    ...     steps: int = Field(ge=1, le=10)
    ...     rate: float = 0.5
    >>> Steps(steps=3, rate=1).rate
    1.0
    >>> for bad in ({"steps": True}, {"steps": "3"}, {"steps": 2, "rate": float("nan")}):
    ...     try:
    ...         Steps.model_validate(bad)
    ...     except ValueError as exc:
    ...         print(exc.errors()[0]["msg"])
    Input should be a valid integer
    Input should be a valid integer
    Input should be a finite number
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

MAX_SEED = 2**32 - 1
"""The largest seed (NumPy's and torch's generators take 32-bit seeds everywhere)."""

MAX_TRIALS = 1000
"""The most hyperparameter trials per (cell, task), and per refinement."""


class StrictModel(BaseModel):
    """A section of a job file: unknown keys, bools or strings for numbers, and non-finite
    numbers are refused; a validated section never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
