"""Links and review items found by their CRM record

A changed person's priority value, a merge, or a forgotten record finds every link and review
item naming that CRM record: without an index each of those scanned the whole table.

Revision ID: 0027
Revises: 0026
"""

from __future__ import annotations

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_links_crm_id", "links", ["crm", "crm_id"])
    op.create_index("ix_candidates_crm_id", "candidates", ["crm", "crm_id"])


def downgrade() -> None:
    op.drop_index("ix_candidates_crm_id", table_name="candidates")
    op.drop_index("ix_links_crm_id", table_name="links")
