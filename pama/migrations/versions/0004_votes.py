"""Blind pairwise votes between points (the Compare page's blind mode; see docs/votes.md).

point_a / point_b are plain ids without foreign keys, so that deleting a point keeps the votes cast on it (the record
of what people said) instead of cascading; new votes on a deleted point are refused when they are submitted. The
ballot token is unique: a double submit of one ballot is stored once.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "votes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("voter", sa.String(200), nullable=True),
        sa.Column("sweep_id", sa.String(32), nullable=True),
        sa.Column("prompt_index", sa.Integer(), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("point_a", sa.String(32), nullable=False),
        sa.Column("point_b", sa.String(32), nullable=False),
        sa.Column("text_a", sa.Text(), nullable=False),
        sa.Column("text_b", sa.Text(), nullable=False),
        sa.Column("vote", sa.String(8), nullable=False),
        sa.Column("source", sa.String(16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("token", name="uq_votes_token"),
        sa.CheckConstraint("vote IN ('a', 'b', 'tie', 'both_bad')", name="ck_votes_vote"),
        sa.CheckConstraint("point_a <> point_b", name="ck_votes_two_points"),
    )
    op.create_index("ix_votes_sweep_id", "votes", ["sweep_id"])
    op.create_index("ix_votes_point_a", "votes", ["point_a"])
    op.create_index("ix_votes_point_b", "votes", ["point_b"])


def downgrade() -> None:
    op.drop_index("ix_votes_point_b", table_name="votes")
    op.drop_index("ix_votes_point_a", table_name="votes")
    op.drop_index("ix_votes_sweep_id", table_name="votes")
    op.drop_table("votes")
