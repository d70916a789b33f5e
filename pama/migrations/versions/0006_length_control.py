"""Point values gain a length-controlled score: lc_mean, lc_low, lc_high (pama.lengthcontrol, docs/fronts.md).

Each objective of an evaluated point also gets the score with the part that answer length explains removed (pooled
regression on log(1 + words) over its sweep's points, at the base model's length), with its 95% bootstrap interval.
NULL where it is not computed yet (``python -m pama front SWEEP --length-control`` computes it for an older sweep)
and where the objective is length itself (conciseness, length): removing length from length leaves nothing. The
front-level figures (share of each objective's spread that length explains, ρ with length, the warning) live in the
sweep's ``summary`` JSON under ``length_control``, so they need no column.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = ("lc_mean", "lc_low", "lc_high")


def upgrade() -> None:
    with op.batch_alter_table("point_values") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("point_values") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
