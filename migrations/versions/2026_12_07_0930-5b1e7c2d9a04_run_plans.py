"""Runs store their plan (resolved once at creation, read by the driver and `GET /v1/runs/{id}`) and the
contamination of their evaluation set measured at the door.

Revision ID: 5b1e7c2d9a04
Revises: 3346c291bda4
Create Date: 2026-12-07 09:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "5b1e7c2d9a04"
down_revision = "3346c291bda4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: runs created before plans were stored resolve theirs from their config when read.
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("plan", sa.JSON(), nullable=True))
        # Evaluation problems that are also training problems, measured when the run was created.
        batch.add_column(sa.Column("contamination", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("contamination")
        batch.drop_column("plan")
