"""Links and review items found by their CRM record; which process polled a stream last

A changed person's priority value, a merge, or a forgotten record finds every link and review
item naming that CRM record: without an index each of those scanned the whole table. And
``cursors.polled_by``: several instances poll a stream at its interval between them, not
each at its own.

Revision ID: 0027
Revises: 0026
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_links_crm_id", "links", ["crm", "crm_id"])
    op.create_index("ix_candidates_crm_id", "candidates", ["crm", "crm_id"])
    with op.batch_alter_table("cursors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("polled_by", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cursors", schema=None) as batch_op:
        batch_op.drop_column("polled_by")
    op.drop_index("ix_candidates_crm_id", table_name="candidates")
    op.drop_index("ix_links_crm_id", table_name="links")
