"""Control plane tables: runs, budgets, steps, rewards, checkpoints, evaluations.

Revision ID: 082cc0dd25c8
Revises:
Create Date: 2026-11-27 09:48:41.494623
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "082cc0dd25c8"
down_revision = None
branch_labels = None
depends_on = None

RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def _run_id() -> sa.Column[str]:
    return sa.Column("run_id", sa.String(length=32), nullable=False)


def _run_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["run_id"], ["runs.id"], name=op.f(f"fk_{table}_run_id_runs"), ondelete="CASCADE"
    )


def _created_at() -> sa.Column[object]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(*RUN_STATUSES, name="run_status", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        _created_at(),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        sa.Column("policy_version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("step", sa.Integer(), server_default="-1", nullable=False),
        sa.Column("promoted_checkpoint_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_created_at"), "runs", ["created_at"])
    op.create_index(op.f("ix_runs_status"), "runs", ["status"])

    op.create_table(
        "budgets",
        _run_id(),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        _run_fk("budgets"),
        sa.PrimaryKeyConstraint("run_id", "index", name=op.f("pk_budgets")),
    )
    op.create_table(
        "steps",
        _run_id(),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        _created_at(),
        _run_fk("steps"),
        sa.PrimaryKeyConstraint("run_id", "step", name=op.f("pk_steps")),
    )
    op.create_table(
        "rewards",
        _run_id(),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("problem_id", sa.String(length=200), nullable=False),
        sa.Column("trace_index", sa.Integer(), nullable=False),
        sa.Column("budget_index", sa.Integer(), nullable=False),
        sa.Column("summary_index", sa.Integer(), nullable=False),
        sa.Column("cut_length", sa.Integer(), nullable=False),
        sa.Column("inserted_start", sa.Integer(), nullable=False),
        sa.Column("inserted_end", sa.Integer(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reward", sa.Float(), nullable=False),
        _run_fk("rewards"),
        sa.PrimaryKeyConstraint(
            "run_id",
            "step",
            "problem_id",
            "trace_index",
            "budget_index",
            "summary_index",
            name=op.f("pk_rewards"),
        ),
    )
    # The primary key serves run and run+step filters; this one serves the budget filter.
    op.create_index("ix_rewards_run_id_budget_index_step", "rewards", ["run_id", "budget_index", "step"])
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _run_id(),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        _created_at(),
        _run_fk("checkpoints"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
        sa.UniqueConstraint("run_id", "policy_version", name="uq_checkpoints_run_id_policy_version"),
    )
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _run_id(),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("budgets", sa.JSON(), nullable=False),
        sa.Column("accuracy", sa.JSON(), nullable=False),
        sa.Column("anytime_score", sa.Float(), nullable=True),
        _created_at(),
        _run_fk("evaluations"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
        sa.UniqueConstraint("run_id", "policy_version", name="uq_evaluations_run_id_policy_version"),
    )


def downgrade() -> None:
    op.drop_table("evaluations")
    op.drop_table("checkpoints")
    op.drop_index("ix_rewards_run_id_budget_index_step", table_name="rewards")
    op.drop_table("rewards")
    op.drop_table("steps")
    op.drop_table("budgets")
    op.drop_index(op.f("ix_runs_status"), table_name="runs")
    op.drop_index(op.f("ix_runs_created_at"), table_name="runs")
    op.drop_table("runs")
