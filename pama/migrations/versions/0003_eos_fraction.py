"""Evaluated points gain eos_fraction: the share of responses that ended on EOS rather than at the token limit.

A front whose responses are cut off mid-sentence reads badly whatever its rewards say, so the fraction is stored
beside kl and mean_length and shown with every point. Old points keep NULL (unknown).

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("points") as batch:
        batch.add_column(sa.Column("eos_fraction", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("points") as batch:
        batch.drop_column("eos_fraction")
