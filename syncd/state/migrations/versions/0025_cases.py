"""cases, and each delivery's case: deliveries.case_decided, deliveries.case_id

Conversations worked as cases in the CRM ([crm.cases]): the cases syncd opened, and which
case each interaction's deliveries belong to, decided before they are written. Deliveries
stored before are undecided; they matter only once cases are configured, when the pending
ones are decided before their write.

Revision ID: 0025
Revises: 0024
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("crm", sa.String(length=100), nullable=False),
        sa.Column("case_key", sa.String(length=255), nullable=False),
        sa.Column("identity_id", Id, sa.ForeignKey("identities.id"), nullable=False),
        sa.Column("crm_case_id", sa.String(length=64), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_post_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("crm", "case_key", name="uq_cases_crm_case_key"),
    )
    op.create_index(
        "ix_cases_crm_identity_id_last_post_at", "cases", ["crm", "identity_id", "last_post_at"]
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("case_decided", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("case_id", Id, nullable=True))
        batch_op.create_foreign_key("fk_deliveries_case_id_cases", "cases", ["case_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint("fk_deliveries_case_id_cases", type_="foreignkey")
        batch_op.drop_column("case_id")
        batch_op.drop_column("case_decided")
    op.drop_index("ix_cases_crm_identity_id_last_post_at", table_name="cases")
    op.drop_table("cases")
