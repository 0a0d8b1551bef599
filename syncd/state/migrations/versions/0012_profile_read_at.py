"""identities remember when their profile was last read from the network

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("profile_read_at", sa.DateTime(timezone=True), nullable=True))
    # Profiles stored so far came with the posts that named them: read as of their last
    # change. Without this every known author would be looked up again once after upgrade.
    op.execute("UPDATE identities SET profile_read_at = updated_at WHERE handle IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.drop_column("profile_read_at")
