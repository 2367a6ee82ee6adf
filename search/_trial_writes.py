"""The per-trial hot path of the writer: starting and finishing trials in SQLAlchemy Core.

The driver starts and finishes every trial through these (about two statements each), so
they use statements built once with their values as execution parameters, not the ORM.
Each function runs inside the caller's transaction: a trial's row and its evaluation's
counts and best value change together or not at all.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, select

from search._honest_results import honest_result
from search._records import EvaluationRecord, finite, record
from search._schema import TRIAL_RUNNING, Base
from search._states import EvaluationStatus
from search._store_errors import StoreError
from workers import Direction, TrialResult, TrialStatus

_COUNTERS: dict[str, str] = {
    TrialStatus.OK: "trials_completed",
    TrialStatus.PRUNED: "trials_pruned",
    TrialStatus.FAILED: "trials_failed",
    TrialStatus.DIVERGED: "trials_diverged",
}
"""The evaluation column counting each final trial status (interrupted trials are not counted)."""

# Statements of the per-trial hot path, built once: values come as execution parameters.
_TRIALS, _EVALUATIONS = Base.metadata.tables["cs_trials"], Base.metadata.tables["cs_evaluations"]
_UPDATE_TRIAL = _TRIALS.update().where(_TRIALS.c.id == bindparam("_id"))
_INSERT_TRIALS_RETURNING = _TRIALS.insert().returning(_TRIALS.c.id, sort_by_parameter_order=True)
_SELECT_TRIALS = select(
    _TRIALS.c.id, _TRIALS.c.status, _TRIALS.c.evaluation_id, _TRIALS.c.hparams, _TRIALS.c.optuna_trial_number
).where(_TRIALS.c.id.in_(bindparam("ids", expanding=True)))
_START_EVALUATION = (
    _EVALUATIONS.update()
    .where(_EVALUATIONS.c.id == bindparam("_id"), _EVALUATIONS.c.status == EvaluationStatus.PENDING)
    .values(status=EvaluationStatus.RUNNING)
)
_SELECT_BEST = (
    select(_EVALUATIONS.c.best_value, _EVALUATIONS.c.direction, _TRIALS.c.optuna_trial_number, _TRIALS.c.id)
    .select_from(_EVALUATIONS.outerjoin(_TRIALS, _TRIALS.c.id == _EVALUATIONS.c.best_trial_id))
    .where(_EVALUATIONS.c.id == bindparam("_id"))
)
_SELECT_EVALUATION = select(_EVALUATIONS).where(_EVALUATIONS.c.id == bindparam("_id"))
_SELECT_OWNER = select(_EVALUATIONS.c.job_id, _EVALUATIONS.c.architecture_id, _EVALUATIONS.c.task).where(
    _EVALUATIONS.c.id == bindparam("_id")
)


class Finished(NamedTuple):
    """A trial being finished, as its evaluation's counters need it."""

    evaluation_id: int
    trial_id: int
    status: str
    value: float | None = None
    number: int | None = None
    """The trial's Optuna number: of two equal values, the lower number is the best (the same
    trial whatever order results arrive in)."""


def evaluation_owner(conn: Connection, evaluation_id: int) -> tuple[int, int, str]:
    """The job, architecture and task of an evaluation (they never change)."""
    row = conn.execute(_SELECT_OWNER, {"_id": evaluation_id}).first()
    if row is None:
        raise StoreError(f"unknown evaluation {evaluation_id}")
    return row[0], row[1], row[2]


def insert_running(
    conn: Connection,
    owner: tuple[int, int, str],
    evaluation_id: int,
    hparams: Sequence[dict[str, Any]],
    numbers: Sequence[int | None],
    *,
    study_name: str | None,
    attempt: int,
    now: datetime,
    launch: int | None = None,
    ordinals: Sequence[int | None] | None = None,
) -> list[int]:
    """Insert one ``running`` trial per set of hyperparameters; returns their ids in order."""
    ordinals = [None] * len(hparams) if ordinals is None else ordinals
    job_id, arch_id, task = owner
    rows = [
        {
            "job_id": job_id,
            "architecture_id": arch_id,
            "evaluation_id": evaluation_id,
            "task": task,
            "study_name": study_name,
            "optuna_trial_number": number,
            "hparams": json_safe(hp),
            "status": TRIAL_RUNNING,
            "attempt": attempt,
            "launch": launch,
            "ordinal": ordinal,
            "started_at": now,
        }
        for hp, number, ordinal in zip(hparams, numbers, ordinals, strict=True)
    ]
    return [int(row[0]) for row in conn.execute(_INSERT_TRIALS_RETURNING, rows)]


def start_evaluation(conn: Connection, evaluation_id: int, now: datetime) -> None:
    """Move a ``pending`` evaluation to ``running`` (no change to one past pending)."""
    conn.execute(_START_EVALUATION, {"_id": evaluation_id, "updated_at": now})


def finish(
    conn: Connection, outcomes: Sequence[tuple[int, TrialResult]], now: datetime
) -> list[EvaluationRecord]:
    """Record each ``(trial id, result)`` and count it into its evaluation; returns each
    trial's evaluation as it stands after all of them."""
    ids = [trial_id for trial_id, _ in outcomes]
    rows = {row.id: row for row in conn.execute(_SELECT_TRIALS, {"ids": ids})}
    updates, finished = [], []
    for trial_id, result in outcomes:
        row = _unfinished(rows.get(trial_id), trial_id)
        # Defence in depth: the scheduler checked already, but no caller may store an absurd
        # value as ``ok`` (it would become the evaluation's best and reach the leaderboard).
        result = honest_result(result)
        values = _finished_values(result, now)
        values["hparams"] = json_safe({**row.hparams, **result.hparams}) if result.hparams else row.hparams
        updates.append({"_id": trial_id, **values})
        finished.append(
            Finished(row.evaluation_id, trial_id, result.status, values["value"], row.optuna_trial_number)
        )
    if updates:
        conn.execute(_UPDATE_TRIAL, updates)
    evaluations = {e: count_trials(conn, e, finished, now) for e in {f.evaluation_id for f in finished}}
    return [evaluations[f.evaluation_id] for f in finished]


def fail(conn: Connection, trial_id: int, error: str, status: TrialStatus, now: datetime) -> EvaluationRecord:
    """Record a trial that produced no result with ``status`` and ``error``; count it."""
    row = _unfinished(conn.execute(_SELECT_TRIALS, {"ids": [trial_id]}).first(), trial_id)
    conn.execute(_UPDATE_TRIAL, {"_id": trial_id, "status": status, "error": error, "finished_at": now})
    return count_trials(conn, row.evaluation_id, [Finished(row.evaluation_id, trial_id, status)], now)


def count_trials(
    conn: Connection, evaluation_id: int, finished: Sequence[Finished], now: datetime
) -> EvaluationRecord:
    """Count the finished trials of ``evaluation_id`` into its counters, and the best ``ok``
    value into its best; return the updated row."""
    mine = [trial for trial in finished if trial.evaluation_id == evaluation_id]
    counts = Counter(_COUNTERS[t.status] for t in mine if t.status in _COUNTERS)
    values: dict[str, Any] = {"updated_at": now}
    values.update({counter: _EVALUATIONS.c[counter] + n for counter, n in counts.items()})
    best: tuple[float, int, int] | None = None  # value, Optuna number, trial id
    direction: Direction | None = None
    for trial in mine:
        if trial.status == TrialStatus.OK and trial.value is not None and math.isfinite(trial.value):
            if direction is None:
                row = conn.execute(_SELECT_BEST, {"_id": evaluation_id}).one()
                value, stored_direction, number, trial_id = row
                direction = Direction(stored_direction)
                best = None if value is None else (value, _rank(number), trial_id or 0)
            mine_key = (trial.value, _rank(trial.number), trial.trial_id)
            if best is None or _beats(mine_key, best, direction):
                best = mine_key
                values["best_value"], values["best_trial_id"] = trial.value, trial.trial_id
    conn.execute(_EVALUATIONS.update().where(_EVALUATIONS.c.id == evaluation_id).values(values))
    return record(EvaluationRecord, conn.execute(_SELECT_EVALUATION, {"_id": evaluation_id}).one())


def _rank(number: int | None) -> int:
    return -1 if number is None else number


def _beats(a: tuple[float, int, int], b: tuple[float, int, int], direction: Direction) -> bool:
    """Whether trial ``a`` is a better best than ``b``: a better value, or an equal one from the
    trial asked first (the lower Optuna number, then the lower id)."""
    if a[0] != b[0]:
        return direction.is_better(a[0], b[0])
    return a[1:] < b[1:]


def json_safe(value: Any) -> Any:
    """JSON columns refuse NaN/inf on PostgreSQL; store them as strings ("nan", "inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _unfinished(row: Any, trial_id: int) -> Any:
    """``row`` (a trial's id, status, evaluation id and hparams) if the trial may be finished."""
    if row is None:
        raise StoreError(f"unknown trial {trial_id}")
    if row.status not in (TRIAL_RUNNING, TrialStatus.INTERRUPTED):
        raise StoreError(f"trial {trial_id} is already finished ({row.status})")
    return row


def _finished_values(result: TrialResult, now: datetime) -> dict[str, Any]:
    """The columns of a trial's row that its result sets."""
    worker = result.worker
    pid = worker.get("pid")
    return {
        "status": result.status,
        "value": finite(result.value),
        "metrics": json_safe(result.metrics),
        "curve": json_safe([list(point) for point in result.curve]),
        "num_params": result.num_params,
        "steps": result.steps,
        "seconds": result.seconds,
        "device": result.device,
        "error": result.error,
        "worker_node": _str_or_none(worker.get("node_id", worker.get("node"))),
        "worker_host": _str_or_none(worker.get("hostname", worker.get("host"))),
        "worker_pid": int(pid) if isinstance(pid, int | str) and str(pid).isdigit() else None,
        "finished_at": now,
    }


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
