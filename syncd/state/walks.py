"""What bounds a stream's walk, kept on its cursor row: answers in a row that could not be
read (the stream is parked at :data:`UNREADABLE_TO_PARK`), and why the last poll left its
walk before the end (the page bound), for ``syncd status``.

A parked stream is a row of the ``parked`` table (kind ``unreadable``) named
``source:handle:stream``; ``syncd resume`` with that name deletes it, as for an account.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Connection, and_, select, update

from syncd.model import Stream
from syncd.state import admin
from syncd.state.coordination import gone, shared
from syncd.state.ingest import insert_for
from syncd.state.tables import cursors, parked

# Unreadable answers in a row before the stream is parked. The pipeline tries a page up to
# 1 + [writer] retries times per poll (4 by default), so one poll's bad moment (a proxy
# restarting mid-answer) never parks a stream on its own; an answer that is broken every
# time stops costing requests within two polls.
UNREADABLE_TO_PARK = 5


def stream_name(source: str, account: str, stream: Stream) -> str:
    """How ``syncd status`` names a stream, and what ``syncd resume`` takes."""
    return f"{source}:{account}:{stream}"


def _where(source: str, account: str, stream: Stream) -> ColumnElement[bool]:
    return and_(
        cursors.c.source == source,
        cursors.c.account == account,
        cursors.c.stream == str(stream),
    )


def count_unreadable(
    conn: Connection, source: str, account: str, stream: Stream, now: datetime
) -> int:
    """One more unreadable answer of this stream; how many in a row now."""
    stmt = insert_for(conn, cursors).values(
        source=source, account=account, stream=str(stream), unreadable=1, updated_at=now
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["source", "account", "stream"],
            set_={"unreadable": cursors.c.unreadable + 1, "updated_at": now},
        )
    )
    row = conn.execute(select(cursors.c.unreadable).where(_where(source, account, stream)))
    return int(row.scalar_one())


def park_stream(
    conn: Connection, source: str, account: str, stream: Stream, reason: str, now: datetime
) -> str:
    """Park the stream; its count starts again, so a resumed stream gets as many tries."""
    name = stream_name(source, account, stream)
    failures = conn.execute(
        select(cursors.c.unreadable).where(_where(source, account, stream))
    ).scalar_one_or_none()
    admin.park(conn, name, reason, int(failures or 0), now, kind=admin.UNREADABLE)
    conn.execute(update(cursors).where(_where(source, account, stream)).values(unreadable=0))
    return name


def parked_reason(conn: Connection, source: str, account: str, stream: Stream) -> str | None:
    """Why the stream is parked, or None when it is not."""
    name = stream_name(source, account, stream)
    row = conn.execute(select(parked.c.reason).where(parked.c.name == name)).first()
    return None if row is None else str(row.reason)


def page_stored(
    conn: Connection, source: str, account: str, stream: Stream, stopped: str | None
) -> None:
    """After a page is stored: its stream's answers are readable again, and ``stopped``
    says why the poll leaves its walk here (None: it goes on, or the walk ended)."""
    conn.execute(
        update(cursors)
        .where(_where(source, account, stream))
        .values(unreadable=0, walk_stopped=stopped)
    )


def take_turn(
    conn: Connection,
    source: str,
    account: str,
    stream: Stream,
    now: datetime,
    *,
    owner: str,
    spacing: timedelta,
) -> bool:
    """Whether instance ``owner`` walks the stream now (marked as begun when so): it began
    the last walk, or nobody began one less than ``spacing`` ago. Asked under the stream's
    job lock, so two instances never both take it. With ``spacing`` longer than the poll
    interval and its jitter, the instance walking a stream keeps it, once an interval, and
    another takes over once it stops polling (at once when it was a process of this host
    that no longer runs); a scheduled run of its own that starts late still walks. A lone
    SQLite instance is never left out, and writes nothing for it."""
    if not shared(conn):
        return True
    last = conn.execute(
        select(cursors.c.walk_started_at, cursors.c.walk_started_by).where(
            _where(source, account, stream)
        )
    ).first()
    # A start ahead of this host's clock (another host's) counts as just now. A process of
    # this host that no longer runs (this instance before a restart) keeps nothing.
    if (
        last is not None
        and last.walk_started_at is not None
        and last.walk_started_by not in (None, owner)
        and now - last.walk_started_at < spacing
        and not gone(last.walk_started_by)
    ):
        return False
    began = {"walk_started_at": now, "walk_started_by": owner}
    stmt = insert_for(conn, cursors).values(
        source=source, account=account, stream=str(stream), updated_at=now, **began
    )
    conn.execute(
        stmt.on_conflict_do_update(index_elements=["source", "account", "stream"], set_=began)
    )
    return True
