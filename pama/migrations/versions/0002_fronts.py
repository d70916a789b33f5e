"""Sweeps, evaluated points, their values and generations; runs gain sweep_id (batch mode for SQLite).

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("model", sa.String(500), nullable=False),
        sa.Column("objectives", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('queued', 'running', 'finished', 'failed', 'cancelled')",
                           name="ck_sweeps_status"),
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("sweep_id", sa.String(32), nullable=True))
        batch.create_foreign_key("fk_runs_sweep_id", "sweeps", ["sweep_id"], ["id"], ondelete="SET NULL")
        batch.create_index("ix_runs_sweep_id", ["sweep_id"])
    op.create_table(
        "points",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("sweep_id", sa.String(32), sa.ForeignKey("sweeps.id", ondelete="CASCADE"), index=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("label", sa.String(300), nullable=False),
        sa.Column("method", sa.String(16)),
        sa.Column("model", sa.String(500), nullable=False),
        sa.Column("preference", sa.JSON()),
        sa.Column("mixture", sa.JSON()),
        sa.Column("eval_config", sa.JSON(), nullable=False),
        sa.Column("kl", sa.Float()),
        sa.Column("mean_length", sa.Float()),
        sa.Column("distinct_1", sa.Float()),
        sa.Column("distinct_2", sa.Float()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('base', 'adapter', 'mixture')", name="ck_points_kind"),
    )
    op.create_table(
        "point_values",
        sa.Column("point_id", sa.String(32), sa.ForeignKey("points.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("objective", sa.String(500), primary_key=True),
        sa.Column("mean", sa.Float(), nullable=False),
        sa.Column("ci_low", sa.Float(), nullable=False),
        sa.Column("ci_high", sa.Float(), nullable=False),
    )
    op.create_table(
        "generations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("point_id", sa.String(32), sa.ForeignKey("points.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("prompt_index", sa.Integer(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("generations")
    op.drop_table("point_values")
    op.drop_table("points")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_sweep_id")
        batch.drop_constraint("fk_runs_sweep_id", type_="foreignkey")
        batch.drop_column("sweep_id")
    op.drop_table("sweeps")
