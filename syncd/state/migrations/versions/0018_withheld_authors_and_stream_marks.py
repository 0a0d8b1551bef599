"""interactions whose author the network withheld; per-object marks kept with a stream's cursor

An interaction may now have no author (``author_id`` NULL) and no counterpart identity
(``counterpart_identity_id`` NULL): the network withheld who wrote it (Meta, for an app
without Advanced Access). ``stream_marks`` holds a stream's per-object marks (the last comment
read under each post of a watch window, a thread's newest message), changed in the page's
transaction with the cursor.

On SQLite making a column nullable rebuilds ``interactions``, which ``deliveries`` and
``post_checks`` reference: :meth:`syncd.state.db.Database.migration` runs migrations with
SQLite's foreign key enforcement off and checks every reference before it commits.

Revision ID: 0018
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# The width 0016 left them at: 255 on PostgreSQL, the 64 they were created with on SQLite.
NetworkId = sa.String(255).with_variant(sa.String(64), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.alter_column("author_id", existing_type=NetworkId, nullable=True)
        batch_op.alter_column("counterpart_identity_id", existing_type=Id, nullable=True)
    op.create_table(
        "stream_marks",
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("account", sa.String(length=100), nullable=False),
        sa.Column("stream", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["source", "account", "stream"],
            ["cursors.source", "cursors.account", "cursors.stream"],
            name="fk_stream_marks_cursors",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("source", "account", "stream", "key", name=op.f("pk_stream_marks")),
    )


def downgrade() -> None:
    op.drop_table("stream_marks")
    # An older syncd cannot store an interaction without its author: those go (nothing of
    # them reached a CRM, they have no deliveries), and a source read with the older syncd
    # leaves such items out again, as it did.
    interactions = sa.table(
        "interactions",
        sa.column("id", Id),
        sa.column("author_id", sa.String()),
        sa.column("counterpart_identity_id", Id),
    )
    withheld = sa.select(interactions.c.id).where(
        sa.or_(interactions.c.counterpart_identity_id.is_(None), interactions.c.author_id.is_(None))
    )
    _delete_where_interaction(withheld)
    op.execute(interactions.delete().where(interactions.c.id.in_(withheld)))
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.alter_column("counterpart_identity_id", existing_type=Id, nullable=False)
        batch_op.alter_column("author_id", existing_type=NetworkId, nullable=False)


def _delete_where_interaction(ids: sa.Select[tuple[int]]) -> None:
    for name in ("post_checks", "deliveries"):
        child = sa.table(name, sa.column("interaction_id", Id))
        op.execute(child.delete().where(child.c.interaction_id.in_(ids)))
