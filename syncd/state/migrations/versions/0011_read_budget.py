"""the read budget: resources read per source and UTC day, the network's usage figures, the cap

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_reads",
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("network", sa.String(length=32), nullable=False),
        sa.Column("posts", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("owned_posts", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("users", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("source", "day", name=op.f("pk_api_reads")),
    )
    op.create_table(
        "source_budgets",
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("project_posts", sa.BigInteger(), nullable=True),
        sa.Column("project_cap", sa.BigInteger(), nullable=True),
        sa.Column("cap_reset_day", sa.Integer(), nullable=True),
        sa.Column("project_day", sa.Date(), nullable=True),
        sa.Column("project_day_posts", sa.BigInteger(), nullable=True),
        sa.Column("capped_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("capped_reason", sa.Text(), nullable=True),
        sa.Column("alert_level", sa.Integer(), server_default="0", nullable=False),
        sa.Column("alerted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_source_budgets")),
    )


def downgrade() -> None:
    op.drop_table("source_budgets")
    op.drop_table("api_reads")
