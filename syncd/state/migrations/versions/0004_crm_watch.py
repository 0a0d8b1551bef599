"""where the watch for CRM people changes stands

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crm_watch",
        sa.Column("crm", sa.String(length=100), nullable=False),
        sa.Column("mark", sa.Text(), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("crm", name=op.f("pk_crm_watch")),
    )


def downgrade() -> None:
    op.drop_table("crm_watch")
