"""network ids as wide as a URI

X's ids are 19 digits and fit 64 characters; a Mastodon status or actor URI and a Bluesky
at-uri do not (about 70 for a did:plc post, more on a long domain), and PostgreSQL refused the
page holding one (SQLite ignores lengths). Every column that holds a network's post or user id
takes 255, the most the CRM's external id (network:id) can carry anyway.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

COLUMNS = {
    "accounts": ("user_id",),
    "identities": ("user_id",),
    "interactions": ("post_id", "author_id", "conversation_id", "in_reply_to_post_id"),
    "cursors": ("since_id", "pending_since_id", "walk_oldest_id"),
    "gaps": ("since_id", "until_id"),
    "quarantine": ("item_id",),
}


def upgrade() -> None:
    # On PostgreSQL widening a varchar rewrites neither the table nor its indexes. SQLite
    # enforces no length, so its tables keep the declared 64 (syncd.state.tables.NetworkId)
    # rather than be rebuilt, which it cannot do to a table others reference.
    if _sqlite():
        return
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.alter_column(
                    column, existing_type=sa.String(length=64), type_=sa.String(length=255)
                )


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def downgrade() -> None:
    # An older syncd reads X only, whose ids fit: a longer id can only belong to a network it
    # does not know, so narrowing fails loudly on PostgreSQL rather than cut a key in half.
    if _sqlite():
        return
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.alter_column(
                    column, existing_type=sa.String(length=255), type_=sa.String(length=64)
                )
