"""The base of every section of a job file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A section of a job file: an unknown key is refused (a typo must not pass silently), and
    a validated section never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
