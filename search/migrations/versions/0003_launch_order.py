"""Trials record the launch they belong to: the driver's order of decisions, replayed on resume.

Revision ID: 0003_launch_order
Revises: 0002_score_intervals
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003_launch_order"
down_revision: str | None = "0002_score_intervals"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("cs_trials") as batch:
        batch.add_column(sa.Column("launch", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("ordinal", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cs_trials") as batch:
        batch.drop_column("ordinal")
        batch.drop_column("launch")
