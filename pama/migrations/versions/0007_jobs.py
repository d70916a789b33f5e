"""The job queue's jobs: what each worker runs, its heartbeat and attempts (pama.jobs, docs/deployment.md).

Huey's queue holds only a job's id; this table is what the Queue page shows, what a worker claims (one UPDATE, so a
job never runs twice at once), and what a dead worker's job is released from (no heartbeat: started once more, then
failed with the reason).

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target_id", sa.String(32), nullable=False),
        sa.Column("point", sa.Integer(), nullable=True),
        sa.Column("argv", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(300), nullable=True),
        sa.Column("device", sa.String(32), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("log", sa.String(1000), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('waiting', 'queued', 'running', 'finished', 'failed', 'cancelled')",
                           name="ck_jobs_status"),
        sa.CheckConstraint("kind IN ('train', 'sweep', 'point', 'evaluate')", name="ck_jobs_kind"),
    )
    op.create_index("ix_jobs_target_id", "jobs", ["target_id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_target_id", table_name="jobs")
    op.drop_table("jobs")
