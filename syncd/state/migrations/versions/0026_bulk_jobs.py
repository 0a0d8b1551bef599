"""bulk_jobs, and deliveries.bulk_job_id

The CRM's bulk jobs writing a backlog of deliveries, stored from the moment the CRM made
each, so a writer stopped between its steps finds the job again; and which job a delivery
is being written by.

Revision ID: 0026
Revises: 0025
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "bulk_jobs",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("crm", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("crm", "job_id", name="uq_bulk_jobs_crm_job_id"),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bulk_job_id", Id, nullable=True))
        batch_op.create_foreign_key(
            "fk_deliveries_bulk_job_id_bulk_jobs", "bulk_jobs", ["bulk_job_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint("fk_deliveries_bulk_job_id_bulk_jobs", type_="foreignkey")
        batch_op.drop_column("bulk_job_id")
    op.drop_table("bulk_jobs")
