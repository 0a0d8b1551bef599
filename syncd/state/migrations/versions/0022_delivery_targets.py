"""history targets: ``deliveries.target``, one delivery per interaction, CRM and target

A CRM may write each interaction to several history targets (Salesforce: a Task and a
SocialPost); each is its own delivery, claimed, retried and dead-lettered on its own. Every
delivery stored before was the one record a CRM wrote then: target ``task``.

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("target", sa.String(length=32), nullable=False, server_default="task")
        )
        batch_op.drop_constraint("uq_deliveries_interaction_id_crm", type_="unique")
        batch_op.create_unique_constraint(
            "uq_deliveries_interaction_id_crm_target", ["interaction_id", "crm", "target"]
        )


def downgrade() -> None:
    # Only the first target's deliveries fit the old key: the others are dropped with it.
    op.execute("DELETE FROM deliveries WHERE target <> 'task'")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint("uq_deliveries_interaction_id_crm_target", type_="unique")
        batch_op.create_unique_constraint(
            "uq_deliveries_interaction_id_crm", ["interaction_id", "crm"]
        )
        batch_op.drop_column("target")
