"""Which authors' profiles state already holds, fresh enough not to be read again.

Networks bill user objects (X: $0.010 each, once per UTC day), so a source asks this before
it reads a profile, and reads only the authors it does not name. A profile older than the
allowed age is read again: handles and names change, and the resolver matches on them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from sqlalchemy import Connection, select

from syncd.contracts import KnownAuthors
from syncd.model import Author
from syncd.state.db import Database
from syncd.state.tables import identities

_CHUNK = 500  # ids per IN list


def fresh_profiles(
    conn: Connection, network: str, user_ids: Collection[str], read_since: datetime
) -> dict[str, Author]:
    """The stored profiles of ``user_ids`` read from the network at ``read_since`` or later."""
    wanted = sorted(set(user_ids))
    found: dict[str, Author] = {}
    for start in range(0, len(wanted), _CHUNK):
        rows = conn.execute(
            select(
                identities.c.user_id,
                identities.c.handle,
                identities.c.display_name,
                identities.c.description,
                identities.c.location,
                identities.c.url,
            ).where(
                identities.c.network == network,
                identities.c.user_id.in_(wanted[start : start + _CHUNK]),
                identities.c.profile_read_at >= read_since,
            )
        )
        for r in rows:
            found[r.user_id] = Author(
                network, r.user_id, r.handle, r.display_name, r.description, r.location, r.url
            )
    return found


def known_authors(
    db: Database, network: str, max_age: timedelta, clock: Callable[[], datetime]
) -> KnownAuthors:
    """The callback a source is given: one short read transaction per page."""

    def known(user_ids: Collection[str]) -> dict[str, Author]:
        with db.transaction() as conn:
            return fresh_profiles(conn, network, user_ids, clock() - max_age)

    return known
