"""link personas and replies: links.persona_id, persona_parent_id; deliveries.awaits_reply_to

The CRM's record for a linked identity's account (a Salesforce SocialPersona), remembered
with the person it was written under, so it is written once per author, not per interaction;
and which written records answer a post whose record was not written yet (a SocialPost's
ReplyToId), to be written again once it is.

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("persona_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("persona_parent_id", sa.String(length=64), nullable=True))
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("awaits_reply_to", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index(
        "ix_deliveries_awaits_reply_to",
        "deliveries",
        ["id"],
        sqlite_where=sa.text("awaits_reply_to"),
        postgresql_where=sa.text("awaits_reply_to"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_awaits_reply_to", table_name="deliveries")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("awaits_reply_to")
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_column("persona_parent_id")
        batch_op.drop_column("persona_id")
