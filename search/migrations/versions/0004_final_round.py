"""The final round: seed means, verdicts against the baseline, final scores.

Revision ID: 0004_final_round
Revises: 0003_launch_order
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004_final_round"
down_revision: str | None = "0003_launch_order"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("cs_evaluations") as batch:
        batch.add_column(sa.Column("mean_value", sa.Float(), nullable=True))
        batch.add_column(sa.Column("verdict", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("p_value", sa.Float(), nullable=True))
    with op.batch_alter_table("cs_job_architectures") as batch:
        batch.add_column(sa.Column("final_score", sa.Float(), nullable=True))
        batch.add_column(sa.Column("final_low", sa.Float(), nullable=True))
        batch.add_column(sa.Column("final_high", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cs_job_architectures") as batch:
        for name in ("final_high", "final_low", "final_score"):
            batch.drop_column(name)
    with op.batch_alter_table("cs_evaluations") as batch:
        for name in ("p_value", "verdict", "mean_value"):
            batch.drop_column(name)
