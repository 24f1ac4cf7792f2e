"""Rollout samples: a few traces of every step and evaluation, readable (`anytime.db.samples`).

Revision ID: 9c4d2e7f1a38
Revises: 5b1e7c2d9a04
Create Date: 2026-12-07 21:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "9c4d2e7f1a38"
down_revision = "5b1e7c2d9a04"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollout_samples",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("problem_id", sa.String(length=200), nullable=False),
        sa.Column("trace_index", sa.Integer(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_rollout_samples_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint(
            "run_id", "kind", "step", "problem_id", "trace_index", name=op.f("pk_rollout_samples")
        ),
    )


def downgrade() -> None:
    op.drop_table("rollout_samples")
