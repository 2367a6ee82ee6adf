"""Score intervals: the bounds of an evaluation's best value and relative score, and of a job
architecture's score (nullable: rows written before have none, and a bound is missing
wherever there were too few trials to resample).

Revision ID: 0002_score_intervals
Revises: 0001_initial
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002_score_intervals"
down_revision: str | None = "0001_initial"
branch_labels: str | None = None
depends_on: str | None = None

EVALUATION_BOUNDS = ("best_low", "best_high", "relative_low", "relative_high")
SCORE_BOUNDS = ("score_low", "score_high")


def upgrade() -> None:
    # batch mode: SQLite alters a table by copying it; PostgreSQL adds the columns in place.
    with op.batch_alter_table("cs_evaluations") as batch:
        for name in EVALUATION_BOUNDS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))
    with op.batch_alter_table("cs_job_architectures") as batch:
        for name in SCORE_BOUNDS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cs_job_architectures") as batch:
        for name in reversed(SCORE_BOUNDS):
            batch.drop_column(name)
    with op.batch_alter_table("cs_evaluations") as batch:
        for name in reversed(EVALUATION_BOUNDS):
            batch.drop_column(name)
