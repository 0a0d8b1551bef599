"""webhook hints: objects a source's webhook said changed, waiting for its poller

``webhook_hints`` holds one row per (source, object id, kind) a signed delivery named, so a
delivery sent again adds nothing; ``taken_at`` is set in the transaction that stores the
page the poller read the object into (``syncd.state.hints``).

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "webhook_hints",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("object_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_hints")),
        sa.UniqueConstraint(
            "source", "object_id", "kind", name="uq_webhook_hints_source_object_id_kind"
        ),
    )
    op.create_index("ix_webhook_hints_untaken", "webhook_hints", ["source", "account", "taken_at"])


def downgrade() -> None:
    # Hints not yet taken go with the table: an older syncd reads only what it polls.
    op.drop_index("ix_webhook_hints_untaken", table_name="webhook_hints")
    op.drop_table("webhook_hints")
