"""gaps in the timelines: walks that crossed the API's horizon, and their recovery

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("cursors", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("walk_seen", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("walk_oldest_id", sa.String(length=64), nullable=True))
    op.create_table(
        "gaps",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("network", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=100), nullable=False),
        sa.Column("stream", sa.String(length=32), nullable=False),
        sa.Column("since_id", sa.String(length=64), nullable=False),
        sa.Column("until_id", sa.String(length=64), nullable=False),
        sa.Column("walk_seen", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("backfill_id", Id, nullable=True),
        sa.Column("recovered", sa.Integer(), server_default="0", nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gaps")),
        sa.UniqueConstraint(
            "source", "account", "stream", "until_id", name="uq_gaps_source_account_stream_until"
        ),
    )
    op.create_index("ix_gaps_state", "gaps", ["state"])
    op.create_index("ix_gaps_backfill_id", "gaps", ["backfill_id"])


def downgrade() -> None:
    op.drop_index("ix_gaps_backfill_id", table_name="gaps")
    op.drop_index("ix_gaps_state", table_name="gaps")
    op.drop_table("gaps")
    with op.batch_alter_table("cursors", schema=None) as batch_op:
        batch_op.drop_column("walk_oldest_id")
        batch_op.drop_column("walk_seen")
