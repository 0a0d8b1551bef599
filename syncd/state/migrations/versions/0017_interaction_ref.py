"""interactions keep the network's own address for reading a post again (``ref``)

A post's key cannot always be looked up where it was read: a Mastodon status of another
instance is known by its uri, and the brand's instance, the one syncd asks, knows it by a
local id the uri does not tell. The compliance check hands the source the ``ref`` its
connector stored beside the key (``syncd.model.Interaction.ref``).

Posts stored before have none. Where the raw payload they were read from still holds it, it is
taken from there: the payload's own ``id``, when that is text and is not the post's key,
qualified by the host of the brand account that read it (``accounts.user_id``, when that is
a URL), as the connector writes refs (``<instance>/<id>``, so an id is never asked of another
instance). At this revision that is exactly a Mastodon status's local id on the brand's
instance (the status entity it answered with); an X post's ``id`` is its key and an X account
is a number, and Bluesky's views carry no ``id``. A payload already emptied (``[privacy]
payload_retention``, a post found deleted) gives none: such a post of another instance stays
unchecked, as before this revision; one of the brand's own instance is still checked by its
uri.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

ID_MAX = 255

_ID = {
    "sqlite": "json_extract(interactions.raw, '$.id')",
    "postgresql": "(interactions.raw ->> 'id')",
}
# The payload's id is text (raw is JSON: json on PostgreSQL, text on SQLite).
_TEXT_ID = {
    "sqlite": (
        "CASE WHEN json_valid(interactions.raw) THEN json_type(interactions.raw, '$.id') END "
        "= 'text'"
    ),
    "postgresql": (
        "json_typeof(interactions.raw) = 'object' "
        "AND json_typeof(interactions.raw -> 'id') = 'string'"
    ),
}
# The host of the reading account's id, when that is a URL (https://host/users/name).
_REST = "substr(a.user_id, instr(a.user_id, '://') + 3)"
_HOST = {
    "sqlite": (
        f"lower(substr({_REST}, 1, CASE WHEN instr({_REST}, '/') > 0 "
        f"THEN instr({_REST}, '/') - 1 ELSE length({_REST}) END))"
    ),
    "postgresql": "lower(substring(a.user_id from '://([^/]+)'))",
}


def _fill(dialect: str) -> str:
    ref = f"{_HOST[dialect]} || '/' || {_ID[dialect]}"
    return (
        f"UPDATE interactions SET ref = (SELECT {ref} FROM accounts a "
        "WHERE a.source = interactions.source AND lower(a.handle) = lower(interactions.account) "
        f"AND a.user_id LIKE '%://%' AND length({ref}) <= {ID_MAX}) "
        f"WHERE interactions.ref IS NULL AND {_TEXT_ID[dialect]} "
        f"AND {_ID[dialect]} <> interactions.post_id AND length({_ID[dialect]}) > 0"
    )


def upgrade() -> None:
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ref", sa.String(length=ID_MAX), nullable=True))
    dialect = op.get_bind().dialect.name
    if dialect in _ID:
        op.execute(_fill(dialect))


def downgrade() -> None:
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.drop_column("ref")
