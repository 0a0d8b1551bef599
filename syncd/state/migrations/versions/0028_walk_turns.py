"""When each stream's last walk began, and in which instance

Several instances polling one stream each on their own schedule walked it once per interval
each: twice the requests with two, three times with three, against rate limits counted per
app. The walk's start and its instance, kept on the cursor, let one instance keep a stream
while it polls it and the others leave it.

Revision ID: 0028
Revises: 0027
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cursors") as batch:
        batch.add_column(sa.Column("walk_started_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("walk_started_by", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cursors") as batch:
        batch.drop_column("walk_started_by")
        batch.drop_column("walk_started_at")
