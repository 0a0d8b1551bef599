"""deliveries carry their interaction's counterpart identity, indexed with crm and state

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("identity_id", Id, nullable=True))
    op.execute(
        "UPDATE deliveries SET identity_id = (SELECT interactions.counterpart_identity_id "
        "FROM interactions WHERE interactions.id = deliveries.interaction_id)"
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.alter_column("identity_id", existing_type=Id, nullable=False)
        batch_op.create_foreign_key(
            op.f("fk_deliveries_identity_id_identities"), "identities", ["identity_id"], ["id"]
        )
        batch_op.drop_index("ix_deliveries_crm_state")
        batch_op.create_index(
            "ix_deliveries_crm_state_identity_id", ["crm", "state", "identity_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_crm_state_identity_id")
        batch_op.create_index("ix_deliveries_crm_state", ["crm", "state"], unique=False)
        batch_op.drop_constraint(op.f("fk_deliveries_identity_id_identities"), type_="foreignkey")
        batch_op.drop_column("identity_id")
