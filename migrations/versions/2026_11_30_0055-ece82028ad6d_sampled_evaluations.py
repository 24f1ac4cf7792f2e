"""Sampled evaluations: n problems, k samples, temperature, seed, 95 % intervals, per-problem accuracy.

Rows written before this revision were greedy with one trace per problem: they get num_samples 1 and
temperature 0; their n, seed and intervals stay NULL (unknown).

Revision ID: ece82028ad6d
Revises: 082cc0dd25c8
Create Date: 2026-11-30 00:55:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ece82028ad6d"
down_revision = "082cc0dd25c8"
branch_labels = None
depends_on = None

NEW_COLUMNS = (
    ("num_problems", sa.Integer),
    ("num_samples", sa.Integer),
    ("temperature", sa.Float),
    ("seed", sa.BigInteger),
    ("accuracy_ci_low", sa.JSON),
    ("accuracy_ci_high", sa.JSON),
    ("anytime_score_ci_low", sa.Float),
    ("anytime_score_ci_high", sa.Float),
    ("per_problem", sa.JSON),
)


def upgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        for name, kind in NEW_COLUMNS:
            batch.add_column(sa.Column(name, kind(), nullable=True))
    op.execute("UPDATE evaluations SET num_samples = 1, temperature = 0.0")


def downgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        for name, _ in reversed(NEW_COLUMNS):
            batch.drop_column(name)
