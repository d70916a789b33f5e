"""Points of kind 'conditioned': one preference-conditioned run evaluated at one preference (docs/conditioned.md).

Only the CHECK constraint on points.kind changes. SQLite cannot alter a constraint, so batch mode copies the table
into a new one and drops the old; ``Store.upgrade`` runs migrations with SQLite's foreign keys off, or dropping the old
table would cascade-delete the point values and generations that refer to it (checked after the upgrade).

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OLD = "kind IN ('base', 'adapter', 'mixture')"
NEW = "kind IN ('base', 'adapter', 'mixture', 'conditioned')"


def _kinds(check: str) -> None:
    with op.batch_alter_table("points") as batch:
        batch.drop_constraint("ck_points_kind", type_="check")
        batch.create_check_constraint("ck_points_kind", sa.text(check))


def upgrade() -> None:
    _kinds(NEW)


def downgrade() -> None:
    op.execute("DELETE FROM points WHERE kind = 'conditioned'")
    _kinds(OLD)
