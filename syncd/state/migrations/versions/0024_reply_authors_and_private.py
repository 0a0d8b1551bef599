"""interactions.in_reply_to_user_id and interactions.private

Who wrote the post an interaction answers (whether it answers the brand decides whether it
may open a Case), and whether it is a private message (it reads as one in the CRM). Rows
stored before are NULL and false: what they were read as then.

Revision ID: 0024
Revises: 0023
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "in_reply_to_user_id",
                sa.String(length=255).with_variant(sa.String(length=64), "sqlite"),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column("private", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.drop_column("private")
        batch_op.drop_column("in_reply_to_user_id")
