"""The rows :class:`~search._optuna_storage.BatchedRDBStorage` writes into Optuna's tables:
the tables (the RDB storage's own definitions), the statements built once, and row builders
that store values the way the RDB storage does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna import distributions
from optuna.storages._rdb import models
from sqlalchemy import bindparam, insert, update

TRIALS = models.TrialModel.__table__
PARAMS = models.TrialParamModel.__table__
VALUES = models.TrialValueModel.__table__
INTERMEDIATE = models.TrialIntermediateValueModel.__table__
USER_ATTRS = models.TrialUserAttributeModel.__table__
SYSTEM_ATTRS = models.TrialSystemAttributeModel.__table__

INSERT_TRIAL = insert(TRIALS).returning(TRIALS.c.trial_id)
SET_STATE = (
    update(TRIALS)
    .where(TRIALS.c.trial_id == bindparam("_id"))
    .values(
        state=bindparam("_state"),
        datetime_start=bindparam("_start"),
        datetime_complete=bindparam("_complete"),
    )
)
SET_INTERMEDIATE = (
    update(INTERMEDIATE)
    .where(INTERMEDIATE.c.trial_id == bindparam("_id"), INTERMEDIATE.c.step == bindparam("_step"))
    .values(intermediate_value=bindparam("_value"), intermediate_value_type=bindparam("_type"))
)


def value_rows(trial_id: int, values: Sequence[float]) -> list[dict[str, Any]]:
    rows = []
    for objective, value in enumerate(values):
        stored, kind = models.TrialValueModel.value_to_stored_repr(value)
        rows.append({"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind})
    return rows


def param_row(
    trial_id: int, name: str, internal: float, distribution: distributions.BaseDistribution
) -> dict[str, Any]:
    return {
        "trial_id": trial_id,
        "param_name": name,
        "param_value": internal,
        "distribution_json": distributions.distribution_to_json(distribution),
    }


def intermediate_row(trial_id: int, step: int, value: float) -> dict[str, Any]:
    stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
    return {"trial_id": trial_id, "step": step, "intermediate_value": stored, "intermediate_value_type": kind}


@dataclass
class PendingRows:
    """Rows of one transaction, written together when it ends."""

    params: list[dict[str, Any]] = field(default_factory=list)
    values: list[dict[str, Any]] = field(default_factory=list)
    intermediate: list[dict[str, Any]] = field(default_factory=list)
    states: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Trial id -> its latest state row."""
