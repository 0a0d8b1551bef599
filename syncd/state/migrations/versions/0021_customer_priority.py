"""customer priority: ``links.crm_priority``, ``candidates.crm_priority`` and
``crm_keys.priority``, the priority value the CRM holds for a person (an Account's tier, an
SLA level), read by the look-ups that find the person and kept current by the change watch.

Links made before hold none: their records get the configured default priority until the
change watch or a new look-up reports the person's value.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

COLUMNS = (("links", "crm_priority"), ("candidates", "crm_priority"), ("crm_keys", "priority"))


def upgrade() -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column(column, sa.String(length=255), nullable=True))


def downgrade() -> None:
    for table, column in reversed(COLUMNS):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column(column)
