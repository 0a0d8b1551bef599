"""brand account names: ``accounts.display_name``, shown in CRM history for a brand whose
handle is no name (a Facebook Page configured by its id)

Accounts stored before are named the next time the poller resolves them
(:meth:`syncd.pipeline.poll.Poller.accounts`).

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("display_name", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("display_name")
