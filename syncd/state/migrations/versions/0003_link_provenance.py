"""link provenance, link history, review queue, handle history

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("reasons", sa.JSON(), nullable=True))
    op.create_table(
        "link_events",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("identity_id", Id, nullable=False),
        sa.Column("crm", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("crm_object", sa.String(length=64), nullable=True),
        sa.Column("crm_id", sa.String(length=64), nullable=True),
        sa.Column("crm_name", sa.String(length=300), nullable=True),
        sa.Column("matcher", sa.String(length=64), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["identities.id"],
            name=op.f("fk_link_events_identity_id_identities"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_events")),
    )
    with op.batch_alter_table("link_events", schema=None) as batch_op:
        batch_op.create_index("ix_link_events_identity_id", ["identity_id"])
    op.create_table(
        "candidates",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("identity_id", Id, nullable=False),
        sa.Column("crm", sa.String(length=100), nullable=False),
        sa.Column("crm_object", sa.String(length=64), nullable=False),
        sa.Column("crm_id", sa.String(length=64), nullable=False),
        sa.Column("crm_name", sa.String(length=300), nullable=True),
        sa.Column("matcher", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["identities.id"],
            name=op.f("fk_candidates_identity_id_identities"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candidates")),
        sa.UniqueConstraint("identity_id", "crm", "crm_id", name="uq_candidates_identity_id_crm"),
    )
    with op.batch_alter_table("candidates", schema=None) as batch_op:
        batch_op.create_index("ix_candidates_crm_state", ["crm", "state"])
    op.create_table(
        "identity_handles",
        sa.Column("identity_id", Id, nullable=False),
        sa.Column("handle", sa.String(length=100), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["identities.id"],
            name=op.f("fk_identity_handles_identity_id_identities"),
        ),
        sa.PrimaryKeyConstraint("identity_id", "handle", name=op.f("pk_identity_handles")),
    )
    # Handles seen so far become the first entries of their history.
    op.execute(
        "INSERT INTO identity_handles (identity_id, handle, first_seen_at, last_seen_at) "
        "SELECT id, handle, first_seen_at, updated_at FROM identities WHERE handle IS NOT NULL"
    )
    # Links made before provenance existed get their creation as the first event.
    op.execute(
        "INSERT INTO link_events (identity_id, crm, action, crm_object, crm_id, crm_name, "
        "matcher, actor, at) SELECT identity_id, crm, 'link', crm_object, crm_id, crm_name, "
        "matcher, created_by, created_at FROM links"
    )


def downgrade() -> None:
    op.drop_table("identity_handles")
    with op.batch_alter_table("candidates", schema=None) as batch_op:
        batch_op.drop_index("ix_candidates_crm_state")
    op.drop_table("candidates")
    with op.batch_alter_table("link_events", schema=None) as batch_op:
        batch_op.drop_index("ix_link_events_identity_id")
    op.drop_table("link_events")
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_column("reasons")
        batch_op.drop_column("score")
