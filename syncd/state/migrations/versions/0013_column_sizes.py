"""columns wide enough for what the CRM and config can send

A Salesforce text field holds 255 characters, and a Contact's X handle or user id longer than
100 failed every resolver run on PostgreSQL (SQLite ignores lengths): the copy of the CRM's
keys takes 255 now.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_KEYS = ("user_id", "handle")


def upgrade() -> None:
    # On PostgreSQL widening a varchar rewrites neither the table nor its indexes.
    with op.batch_alter_table("crm_keys", schema=None) as batch_op:
        for column in _KEYS:
            batch_op.alter_column(
                column, existing_type=sa.String(length=100), type_=sa.String(length=255)
            )


def downgrade() -> None:
    # The copy is a cache of the CRM: rows the narrower columns cannot hold are dropped (the
    # older syncd could not store them either) rather than make the downgrade fail.
    keys = sa.table("crm_keys", *(sa.column(c, sa.String()) for c in _KEYS))
    for column in _KEYS:
        op.execute(keys.delete().where(sa.func.length(keys.c[column]) > 100))
    with op.batch_alter_table("crm_keys", schema=None) as batch_op:
        for column in _KEYS:
            batch_op.alter_column(
                column, existing_type=sa.String(length=255), type_=sa.String(length=100)
            )
