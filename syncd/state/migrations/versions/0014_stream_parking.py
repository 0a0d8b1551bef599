"""streams parked after repeated malformed pages; walks stopped by the page bound

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A parked row is an account or the CRM (credentials refused) or, now, one stream (its
    # answers unreadable): what to tell the admin differs. Rows so far were all the first.
    with op.batch_alter_table("parked", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="auth")
        )
    with op.batch_alter_table("cursors", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("unreadable", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("walk_stopped", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cursors", schema=None) as batch_op:
        batch_op.drop_column("walk_stopped")
        batch_op.drop_column("unreadable")
    with op.batch_alter_table("parked", schema=None) as batch_op:
        batch_op.drop_column("kind")
