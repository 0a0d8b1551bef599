"""the compliance job's checks of written posts: last asked, found deleted, acted on

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "post_checks",
        sa.Column("interaction_id", Id, nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["interaction_id"],
            ["interactions.id"],
            name=op.f("fk_post_checks_interaction_id_interactions"),
        ),
        sa.PrimaryKeyConstraint("interaction_id", name=op.f("pk_post_checks")),
    )
    op.create_index("ix_post_checks_deleted", "post_checks", ["deleted_at", "acted_at"])


def downgrade() -> None:
    op.drop_index("ix_post_checks_deleted", table_name="post_checks")
    op.drop_table("post_checks")
