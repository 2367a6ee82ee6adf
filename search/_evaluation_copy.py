"""Reusing an earlier job's evaluation: its row copied into a new job, the trials left with the original."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from search._records import EVALUATION_BOUNDS, EvaluationRecord, record
from search._schema import Evaluation, utcnow
from search._store_errors import StoreError


def copy_evaluation(s: Session, evaluation_id: int, job_id: int, task_label: str | None) -> EvaluationRecord:
    """Copy evaluation ``evaluation_id`` into ``job_id`` in the session's transaction (see
    :meth:`search.ResultStore.copy_evaluation_into_job`)."""
    source = s.get(Evaluation, evaluation_id)
    if source is None:
        raise StoreError(f"unknown evaluation {evaluation_id}")
    row = s.scalar(
        select(Evaluation).where(
            Evaluation.job_id == job_id,
            Evaluation.architecture_id == source.architecture_id,
            Evaluation.task_key == source.task_key,
        )
    )
    if row is not None and (row.id == source.id or record(EvaluationRecord, row).trials_finished):
        return record(EvaluationRecord, row)
    if row is None:
        row = Evaluation(job_id=job_id, architecture_id=source.architecture_id, task_key=source.task_key)
        s.add(row)
    for name in (
        "task",
        "task_label",
        "task_settings",
        "metric",
        "direction",
        "status",
        "best_value",
        "relative_score",
        "best_trial_id",
        "trials_completed",
        "trials_pruned",
        "trials_failed",
        "trials_diverged",
        *EVALUATION_BOUNDS,
    ):
        setattr(row, name, getattr(source, name))
    row.reused_from_id = source.reused_from_id or source.id
    row.task_label = task_label or source.task_label
    row.updated_at = utcnow()
    s.flush()
    return record(EvaluationRecord, row)
