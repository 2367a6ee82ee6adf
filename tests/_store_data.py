"""The job spec and trial results the store's tests record, and what they inspect."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from search import make_engine
from search._jobspec import JobSpec
from workers import TrialResult

REPO = Path(__file__).resolve().parents[1]


def job_spec(name: str = "job", arith_steps: int = 50, arith_settings: dict | None = None) -> JobSpec:
    return JobSpec.from_dict(
        {
            "name": name,
            "strategy": {"kind": "jozefowicz", "top_k": 5},
            "tasks": [
                {"name": "memorize", "role": "filter", "threshold": 0.5},
                {"name": "arith", "settings": arith_settings or {}, "budget": {"max_steps": arith_steps}},
                {"name": "text", "settings": {"preset": "ptb"}},
            ],
            "budget": {"max_architectures": 10},
        }
    )


def result(
    status: str = "ok", value: float | None = 0.5, task: str = "arith", **extra: object
) -> TrialResult:
    direction = "minimize" if task == "text" else "maximize"
    return TrialResult(status=status, task=task, metric="m", direction=direction, value=value, **extra)  # type: ignore[arg-type]


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
