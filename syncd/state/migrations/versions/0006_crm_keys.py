"""a local copy of the CRM people carrying a network user id or handle

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "crm_keys",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("crm", sa.String(length=100), nullable=False),
        sa.Column("record_id", sa.String(length=40), nullable=False),
        sa.Column("object", sa.String(length=100), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("stamp", sa.String(length=40), nullable=False),
        sa.Column("network", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=100), nullable=True),
        sa.Column("handle", sa.String(length=100), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_keys")),
    )
    op.create_index("ix_crm_keys_user_id", "crm_keys", ["crm", "network", "user_id"])
    op.create_index("ix_crm_keys_handle", "crm_keys", ["crm", "network", "handle"])
    op.create_index("ix_crm_keys_record", "crm_keys", ["crm", "record_id"])
    op.create_table(
        "crm_key_loads",
        sa.Column("crm", sa.String(length=100), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("crm", name=op.f("pk_crm_key_loads")),
    )


def downgrade() -> None:
    op.drop_table("crm_key_loads")
    op.drop_index("ix_crm_keys_record", table_name="crm_keys")
    op.drop_index("ix_crm_keys_handle", table_name="crm_keys")
    op.drop_index("ix_crm_keys_user_id", table_name="crm_keys")
    op.drop_table("crm_keys")
