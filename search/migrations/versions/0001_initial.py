"""Initial schema: jobs, architectures, job architectures, evaluations, trials.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "cs_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("code_version", sa.String(length=200), nullable=False),
        sa.Column("strategy_state", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "cs_architectures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("canonical_hash", sa.String(length=64), nullable=False),
        sa.Column("graph", sa.JSON(), nullable=False),
        sa.Column("equations", sa.Text(), nullable=False),
        sa.Column("num_states", sa.Integer(), nullable=False),
        sa.Column("num_nodes", sa.Integer(), nullable=False),
        sa.Column("op_counts", sa.JSON(), nullable=False),
        sa.Column("requires_input_equals_hidden", sa.Boolean(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("mutation", sa.Text(), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("library_name", sa.String(length=100), nullable=True),
        sa.Column("first_job_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["first_job_id"], ["cs_jobs.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["parent_id"], ["cs_architectures.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("canonical_hash"),
    )
    op.create_table(
        "cs_evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("architecture_id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(length=100), nullable=False),
        sa.Column("task_label", sa.String(length=100), nullable=False),
        sa.Column("task_key", sa.String(length=64), nullable=False),
        sa.Column("task_settings", sa.JSON(), nullable=False),
        sa.Column("metric", sa.String(length=100), nullable=False),
        sa.Column("direction", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("best_value", sa.Float(), nullable=True),
        sa.Column("relative_score", sa.Float(), nullable=True),
        sa.Column("best_trial_id", sa.Integer(), nullable=True),
        sa.Column("trials_completed", sa.Integer(), nullable=False),
        sa.Column("trials_pruned", sa.Integer(), nullable=False),
        sa.Column("trials_failed", sa.Integer(), nullable=False),
        sa.Column("trials_diverged", sa.Integer(), nullable=False),
        sa.Column("reused_from_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["architecture_id"], ["cs_architectures.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["job_id"], ["cs_jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["reused_from_id"], ["cs_evaluations.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "architecture_id", "task_key", name="uq_cs_evaluations_job_arch_task"),
    )
    op.create_index(
        "ix_cs_evaluations_arch_task_key", "cs_evaluations", ["architecture_id", "task_key"], unique=False
    )
    op.create_index(op.f("ix_cs_evaluations_job_id"), "cs_evaluations", ["job_id"], unique=False)

    op.create_table(
        "cs_job_architectures",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("architecture_id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("filter_passed", sa.Boolean(), nullable=True),
        sa.Column("evaluated", sa.Boolean(), nullable=False),
        sa.Column("listed", sa.Boolean(), nullable=False),
        sa.Column("duplicate", sa.Boolean(), nullable=False),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["architecture_id"], ["cs_architectures.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["job_id"], ["cs_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "architecture_id"),
    )
    op.create_index(
        op.f("ix_cs_job_architectures_architecture_id"),
        "cs_job_architectures",
        ["architecture_id"],
        unique=False,
    )
    op.create_index(
        "ix_cs_job_architectures_job_score", "cs_job_architectures", ["job_id", "score"], unique=False
    )

    op.create_table(
        "cs_trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("architecture_id", sa.Integer(), nullable=False),
        sa.Column("evaluation_id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(length=100), nullable=False),
        sa.Column("study_name", sa.String(length=300), nullable=True),
        sa.Column("optuna_trial_number", sa.Integer(), nullable=True),
        sa.Column("hparams", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("curve", sa.JSON(), nullable=True),
        sa.Column("num_params", sa.Integer(), nullable=True),
        sa.Column("steps", sa.Integer(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("device", sa.String(length=50), nullable=True),
        sa.Column("worker_node", sa.String(length=100), nullable=True),
        sa.Column("worker_host", sa.String(length=255), nullable=True),
        sa.Column("worker_pid", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["architecture_id"], ["cs_architectures.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["evaluation_id"], ["cs_evaluations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["job_id"], ["cs_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_cs_trials_evaluation_id"), "cs_trials", ["evaluation_id"], unique=False)
    op.create_index("ix_cs_trials_job_status", "cs_trials", ["job_id", "status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_cs_trials_job_status", table_name="cs_trials")
    op.drop_index(op.f("ix_cs_trials_evaluation_id"), table_name="cs_trials")

    op.drop_table("cs_trials")
    op.drop_index("ix_cs_job_architectures_job_score", table_name="cs_job_architectures")
    op.drop_index(op.f("ix_cs_job_architectures_architecture_id"), table_name="cs_job_architectures")

    op.drop_table("cs_job_architectures")
    op.drop_index(op.f("ix_cs_evaluations_job_id"), table_name="cs_evaluations")
    op.drop_index("ix_cs_evaluations_arch_task_key", table_name="cs_evaluations")

    op.drop_table("cs_evaluations")
    op.drop_table("cs_architectures")
    op.drop_table("cs_jobs")
