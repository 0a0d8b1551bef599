"""Noticing gaps: walks that ended at the endpoint's horizon instead of at the stored since_id.

A timeline endpoint may reach only its newest N posts (the source says so on each page), and
the network never says when a walk was cut there. A walk after a since_id that returned
about N posts may have ended at the horizon: what lies between the since_id and the oldest
post it saw may be missing, a gap (:func:`suspect` says how many posts make one; a walk that
paused on its way is one whatever it saw). A source that can tell a walk ended short of its
since_id says so outright (``Page.cut``): a gap whatever the walk saw. What the
walk has seen so far (posts, oldest id) is kept on its cursor row
and advanced in every page's transaction, so a walk spread over runs and restarts is judged
whole. Nothing else here: :mod:`syncd.state.gaps` takes gaps on from there.

A stream's first walk has a since_id too (:func:`first_start`): the configured ``start`` as an
id, stored before the walk's first request, so a first walk cut at the horizon is a gap back
to ``start`` like any other, and a restart during it does not move ``start`` on.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite

from syncd.model import Cursor, GapState, Page, Stream
from syncd.state.tables import cursors, gaps

NO_WALK = {"walk_seen": 0, "walk_oldest_id": None}  # a cursor's progress between walks


def walk_step(
    conn: Connection,
    source: str,
    network: str,
    account: str,
    stream: Stream,
    page: Page,
    now: datetime,
    *,
    stalled: bool = False,
) -> tuple[int, str | None]:
    """Count ``page`` into its walk; at the walk's end, record a gap if the walk was cut.
    Returns what to store on the cursor with the page: posts seen and the oldest id so far
    (none once the walk ended).

    ``stalled``: the walk paused on its way (it went on from a token stored by an earlier
    poll, after a restart or a stop, or a page after its first needed a retry). Posts
    arriving during the pause push its oldest ones out of reach, as many as arrived, which no
    count of what the walk saw can show: such a walk is a suspected gap whatever it saw.
    Pauses are rare, and a gap that was not one costs a search that finds nothing."""
    row = conn.execute(
        select(
            cursors.c.since_id,
            cursors.c.pagination_token,
            cursors.c.walk_seen,
            cursors.c.walk_oldest_id,
        ).where(
            cursors.c.source == source,
            cursors.c.account == account,
            cursors.c.stream == str(stream),
        )
    ).first()
    # A page read without a stored token starts a walk: nothing before it counts.
    walk = row if row is not None and row.pagination_token is not None else None
    seen = (walk.walk_seen if walk is not None else 0) + page.returned
    # Pages run newest to oldest: the last page that returned anything holds the oldest.
    oldest = page.oldest_id or (walk.walk_oldest_id if walk is not None else None)
    if not page.walk_complete:
        return seen, oldest
    since = row.since_id if row is not None else None
    # Without a since_id (a source with no start) a walk reads what the timeline holds: no gap.
    cut = page.cut or (page.horizon is not None and (stalled or suspect(seen, page.horizon)))
    if since is not None and oldest is not None and cut:
        values = {
            "source": source,
            "network": network,
            "account": account,
            "stream": str(stream),
            "since_id": since,
            "until_id": oldest,
            "walk_seen": seen,
            "state": GapState.OPEN,
            "detected_at": now,
            "updated_at": now,
        }
        # Should two instances end the same walk, the gap is recorded once.
        conn.execute(_insert(conn, gaps).values(**values).on_conflict_do_nothing())
    return 0, None


def first_start(
    conn: Connection, source: str, account: str, stream: Stream, since_id: str, now: datetime
) -> Cursor:
    """The cursor a stream's walk starts from: ``since_id`` (the configured start) stored
    first if the stream never walked. A stream walked before keeps its cursor, and one whose
    since_id is still None after a walk (its timeline was empty, before starts existed) reads
    what its timeline holds, as it did."""
    key = (
        cursors.c.source == source,
        cursors.c.account == account,
        cursors.c.stream == str(stream),
    )
    values = {"since_id": since_id, "updated_at": now}
    # A failed first poll leaves a row (its error) that never walked: it starts here too.
    conn.execute(
        update(cursors)
        .where(
            *key,
            cursors.c.since_id.is_(None),
            cursors.c.pagination_token.is_(None),
            cursors.c.last_success_at.is_(None),
        )
        .values(**values)
    )
    # Should two instances start the same stream, the first one's start stands.
    row = {"source": source, "account": account, "stream": str(stream), **values}
    conn.execute(_insert(conn, cursors).values(**row).on_conflict_do_nothing())
    found = conn.execute(
        select(cursors.c.since_id, cursors.c.pagination_token, cursors.c.pending_since_id).where(
            *key
        )
    ).one()
    return Cursor(found.since_id, found.pagination_token, found.pending_since_id)


def suspect(seen: int, horizon: int) -> bool:
    """Whether a walk that saw ``seen`` posts may have been cut. Not only at ``horizon``:
    the endpoint reaches its newest posts as of each request, so posts arriving during a
    walk push its oldest ones out of reach, and a walk cut during a burst sees far fewer.
    A walk of half the horizon or more is rare between two polls, and a gap that was not
    one costs a search that finds nothing."""
    return seen * 2 >= horizon


def _insert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
