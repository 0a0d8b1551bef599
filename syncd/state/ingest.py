"""Storing what a source read: accounts, cursors, and the one transaction per page.

``ingest_page`` is the heart of "nothing lost, nothing duplicated": the page's interactions,
its authors, one delivery per new interaction (none for a post whose author the network
withheld), the advanced cursor, the stream's marks it changed and the webhook hints it read
are written together or not at all. Replaying a page after a crash is harmless: interactions
are unique on (network, post id) and inserted with ON CONFLICT DO NOTHING, and a bad item read
again is not quarantined again. The one change a post read again makes is to a post stored
without its customer (the network withheld who wrote it) that the page names: it is filled
in, and given its delivery then.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Insert, Table, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from syncd.model import (
    DEFAULT_TARGET,
    MARK_KEY_MAX,
    Account,
    Author,
    Cursor,
    DeliveryState,
    Interaction,
    Page,
    Quarantined,
    Stream,
)
from syncd.state import hints, horizon, suppression
from syncd.state.coordination import redone_on_conflict
from syncd.state.many import chunks, insert_many, one_of
from syncd.state.tables import (
    accounts,
    cursors,
    deliveries,
    identities,
    identity_handles,
    interactions,
    quarantine,
    stream_marks,
)


def insert_for(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (SQLite and PostgreSQL both do)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported database dialect {conn.dialect.name!r}")


# -- accounts ------------------------------------------------------------------------------
def stored_accounts(conn: Connection, source: str) -> dict[str, Account]:
    rows = conn.execute(select(accounts).where(accounts.c.source == source)).mappings()
    return {
        r["handle"].lower(): Account(
            network=r["network"],
            handle=r["handle"],
            user_id=r["user_id"],
            display_name=r["display_name"],
        )
        for r in rows
    }


def store_accounts(conn: Connection, source: str, found: Iterable[Account], now: datetime) -> None:
    rows = [
        {
            "source": source,
            "network": a.network,
            "handle": a.handle,
            "user_id": a.user_id,
            "display_name": a.display_name,
            "resolved_at": now,
        }
        for a in found
    ]
    if rows:
        ins = insert_for(conn, accounts)
        # Resolved again only to learn its name (poller.accounts): the id stays as stored.
        name = func.coalesce(ins.excluded.display_name, accounts.c.display_name)
        stmt: Insert = ins.on_conflict_do_update(
            index_elements=["source", "handle"], set_={"display_name": name}
        )
        conn.execute(stmt, rows)


def brand_user_ids(conn: Connection, network: str) -> set[str]:
    """Every brand account's id on a network: their posts to each other are not customer history."""
    rows = conn.execute(select(accounts.c.user_id).where(accounts.c.network == network))
    return {r[0] for r in rows}


# -- cursors -------------------------------------------------------------------------------
def load_cursor(conn: Connection, source: str, account: str, stream: Stream) -> Cursor:
    """The stream's cursor with its marks (:attr:`Cursor.marks`)."""
    row = (
        conn.execute(
            select(
                cursors.c.since_id, cursors.c.pagination_token, cursors.c.pending_since_id
            ).where(
                cursors.c.source == source,
                cursors.c.account == account,
                cursors.c.stream == str(stream),
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return Cursor()  # marks live and die with their cursor row: none without one
    return Cursor(
        since_id=row["since_id"],
        pagination_token=row["pagination_token"],
        pending_since_id=row["pending_since_id"],
        marks=load_marks(conn, source, account, stream),
    )


def load_marks(conn: Connection, source: str, account: str, stream: Stream) -> dict[str, str]:
    """The stream's per-object marks: one query, on the table's primary key."""
    rows = conn.execute(
        select(stream_marks.c.key, stream_marks.c.value).where(
            stream_marks.c.source == source,
            stream_marks.c.account == account,
            stream_marks.c.stream == str(stream),
        )
    )
    return {key: value for key, value in rows}


def save_marks(
    conn: Connection,
    source: str,
    account: str,
    stream: Stream,
    changes: Mapping[str, str | None],
    now: datetime,
) -> None:
    """Apply a page's mark changes (None: the mark goes), in the page's transaction, after
    its cursor row is saved (each mark names that row)."""
    too_long = [k for k in changes if not k or len(k) > MARK_KEY_MAX]
    if too_long:
        # A connector's bug: refused alike on both backends, before any row is written.
        raise ValueError(
            f"a mark's key must be 1 to {MARK_KEY_MAX} characters: "
            f"{len(too_long)} of this page's are not"
        )
    stream_key = (
        stream_marks.c.source == source,
        stream_marks.c.account == account,
        stream_marks.c.stream == str(stream),
    )
    gone = sorted(k for k, v in changes.items() if v is None)
    for chunk in chunks(gone):
        conn.execute(delete(stream_marks).where(*stream_key, stream_marks.c.key.in_(chunk)))
    # Sorted so concurrent transactions lock rows in one order.
    rows = [
        {
            "source": source,
            "account": account,
            "stream": str(stream),
            "key": k,
            "value": v,
            "updated_at": now,
        }
        for k, v in sorted(changes.items())
        if v is not None
    ]
    if rows:
        ins = insert_for(conn, stream_marks)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=["source", "account", "stream", "key"],
                set_={"value": ins.excluded.value, "updated_at": ins.excluded.updated_at},
            ),
            rows,
        )


def _save_cursor(
    conn: Connection,
    source: str,
    account: str,
    stream: Stream,
    cursor: Cursor,
    now: datetime,
    *,
    walk_complete: bool,
    walk: tuple[int, str | None] = (0, None),
) -> None:
    values: dict[str, Any] = {
        "since_id": cursor.since_id,
        "pagination_token": cursor.pagination_token,
        "pending_since_id": cursor.pending_since_id,
        "walk_seen": walk[0],
        "walk_oldest_id": walk[1],
        "last_attempt_at": now,
        "updated_at": now,
    }
    if walk_complete:
        values["last_success_at"] = now
        values["last_error"] = None
    stmt = insert_for(conn, cursors).values(
        source=source, account=account, stream=str(stream), **values
    )
    conn.execute(
        stmt.on_conflict_do_update(index_elements=["source", "account", "stream"], set_=values)
    )


def reset_walk(conn: Connection, source: str, account: str, stream: Stream, now: datetime) -> None:
    """Forget an in-progress walk (its pagination token was refused); keep ``since_id``."""
    conn.execute(
        update(cursors)
        .where(
            cursors.c.source == source,
            cursors.c.account == account,
            cursors.c.stream == str(stream),
        )
        .values(pagination_token=None, pending_since_id=None, updated_at=now, **horizon.NO_WALK)
    )


def record_poll_error(
    conn: Connection, source: str, account: str, stream: Stream, error: str, now: datetime
) -> None:
    values = {"last_attempt_at": now, "last_error": error[:2000], "updated_at": now}
    stmt = insert_for(conn, cursors).values(
        source=source, account=account, stream=str(stream), **values
    )
    conn.execute(
        stmt.on_conflict_do_update(index_elements=["source", "account", "stream"], set_=values)
    )


# -- the page transaction ------------------------------------------------------------------
@dataclass(frozen=True)
class IngestResult:
    new: int  # interactions stored for the first time
    seen: int  # interactions on the page
    queued: int  # deliveries enqueued
    quarantined: int  # bad items on the page, including ones quarantined before
    suppressed: int = 0  # posts by (or to) forgotten people, dropped


PROFILE = ("handle", "display_name", "description", "location", "url")
PROFILE_TOUCH = timedelta(days=1)  # how stale a profile's read time may get before it is moved


def upsert_identities(
    conn: Connection,
    network: str,
    authors: Iterable[Author],
    extra_ids: Iterable[str],
    now: datetime,
) -> dict[str, int]:
    """Insert new identities and refresh changed ones; returns user id → identity row id
    for all of them. A page's authors are mostly known and unchanged: they are read, not
    rewritten (``updated_at`` says when a profile last changed)."""
    by_id = {a.user_id: a for a in authors if a.network == network}
    wanted = set(by_id) | set(extra_ids)
    ids: dict[str, int] = {}
    stored: dict[str, tuple[Any, ...]] = {}
    read_at: dict[str, datetime | None] = {}
    for chunk in chunks(sorted(wanted)):
        for row in conn.execute(
            select(
                identities.c.user_id,
                identities.c.id,
                identities.c.profile_read_at,
                *(identities.c[c] for c in PROFILE),
            ).where(identities.c.network == network, one_of(conn, identities.c.user_id, chunk))
        ):
            ids[row[0]] = row[1]
            read_at[row[0]] = row[2]
            stored[row[0]] = tuple(row[3:])
    fresh = [a for a in by_id.values() if a.user_id not in stored or _changes(a, stored[a.user_id])]
    changed = {a.user_id for a in fresh}
    # Read again but unchanged: only the time of the read moves, and at most daily, so a
    # source that still sends every author with every page does not rewrite them all.
    touched = sorted(
        a.user_id
        for a in by_id.values()
        if a.user_id in stored
        and a.user_id not in changed
        and ((last := read_at[a.user_id]) is None or last < now - PROFILE_TOUCH)
    )
    if touched:
        conn.execute(
            update(identities)
            .where(identities.c.network == network, identities.c.user_id.in_(touched))
            .values(profile_read_at=now)
        )
    # New and changed authors, and ids a page names without a profile (only the id is
    # known), in one statement.
    given: list[tuple[str, Author | None]] = [(a.user_id, a) for a in fresh]
    given += [(uid, None) for uid in wanted - set(by_id) - set(ids)]
    rows = [
        {
            "network": network,
            "user_id": uid,
            "handle": a.handle if a else None,
            "display_name": a.display_name if a else None,
            "description": a.description if a else None,
            "location": a.location if a else None,
            "url": a.url if a else None,
            "first_seen_at": now,
            "updated_at": now,
            "profile_read_at": now if a else None,
        }
        # Sorted so concurrent transactions lock rows in one order (no deadlocks on PostgreSQL).
        for uid, a in sorted(given, key=lambda pair: pair[0])
    ]
    if rows:
        ins = insert_for(conn, identities)
        refresh = {
            col: func.coalesce(getattr(ins.excluded, col), identities.c[col]) for col in PROFILE
        }
        refresh["updated_at"] = ins.excluded.updated_at
        refresh["profile_read_at"] = ins.excluded.profile_read_at
        stmt = ins.on_conflict_do_update(
            index_elements=["network", "user_id"],
            set_=refresh,
            # An id without its profile, stored meanwhile by another page, is left as it is.
            where=ins.excluded.profile_read_at.is_not(None),
        ).returning(identities.c.user_id, identities.c.id)
        ids.update({uid: row_id for uid, row_id in insert_many(conn, stmt, rows)})
    # Only an id without its profile that another transaction stored meanwhile is not
    # returned by the upsert.
    for chunk in chunks(sorted(wanted - set(ids))):
        for uid, row_id in conn.execute(
            select(identities.c.user_id, identities.c.id).where(
                identities.c.network == network, one_of(conn, identities.c.user_id, chunk)
            )
        ):
            ids[uid] = row_id
    _remember_handles(conn, [(ids[a.user_id], a.handle) for a in fresh if a.handle], now)
    return ids


def _changes(author: Author, stored: tuple[Any, ...]) -> bool:
    """The author brings a profile value the stored row lacks (a missing value never
    erases one: the upsert keeps the stored value then)."""
    values = (author.handle, author.display_name, author.description, author.location, author.url)
    return any(v is not None and v != old for v, old in zip(values, stored, strict=True))


def _remember_handles(conn: Connection, seen: list[tuple[int, str]], now: datetime) -> None:
    """Keep every handle an identity was seen with: the resolver also asks by old ones."""
    if not seen:
        return
    ins = insert_for(conn, identity_handles)
    insert_many(
        conn,
        ins.on_conflict_do_update(
            index_elements=["identity_id", "handle"],
            set_={"last_seen_at": ins.excluded.last_seen_at},
        ),
        [
            {"identity_id": i, "handle": h, "first_seen_at": now, "last_seen_at": now}
            for i, h in sorted(set(seen))
        ],
    )


def ingest_page(
    conn: Connection,
    *,
    source: str,
    network: str,
    account: Account,
    stream: Stream,
    page: Page,
    crms: Iterable[str],
    brand_ids: set[str],
    now: datetime,
    stalled: bool = False,
    targets: Sequence[str] = (DEFAULT_TARGET,),
) -> IngestResult:
    """Store one page and advance the cursor (noting a gap at the end of a walk the
    endpoint's horizon cut), in the caller's transaction. ``stalled``: the walk this page
    ends paused on its way (see :func:`syncd.state.horizon.walk_step`)."""
    stored = store_page(
        conn,
        source=source,
        network=network,
        account=account,
        page=page,
        crms=crms,
        brand_ids=brand_ids,
        now=now,
        targets=targets,
    )
    # Read before the cursor moves: it tells whether this page ends a walk the horizon cut.
    walk = horizon.walk_step(
        conn, source, network, account.handle, stream, page, now, stalled=stalled
    )
    _save_cursor(
        conn,
        source,
        account.handle,
        stream,
        page.next_cursor,
        now,
        walk_complete=page.walk_complete,
        walk=walk,
    )
    if page.marks:
        save_marks(conn, source, account.handle, stream, page.marks, now)
    if page.taken_hints:
        hints.take(conn, source, page.taken_hints, now)
    return stored


@redone_on_conflict
def store_authors(conn: Connection, *, network: str, page: Page, now: datetime) -> None:
    """Store the page's new and changed authors (and the customers it names by id alone)
    ahead of the page, in a transaction of their own (PostgreSQL's poll). Two streams read
    the same new customer at once (their mention, the brand's reply): the second page's
    insert of them waited for the first page's whole transaction to commit, a tenth of a
    second and more under load; this short one commits first. Screened by the suppression
    list as the page is, in this transaction: a person forgotten meanwhile is dropped by
    the page's own screening, and their row stored here is one more the forget deletes
    with theirs, as one the page itself had stored then. Stored again by the page (it
    finds them stored and unchanged), so a page stored without this loses nothing."""
    page, _ = suppression.screen(conn, network, page)
    named = (i.counterpart_id for i in page.interactions if i.counterpart_id)
    upsert_identities(conn, network, page.authors, named, now)


# Instances storing pages of different accounts meet on shared authors and posts. Rows are
# locked in one order, but a deadlock across statements stays possible: the page is redone.
# It is the first work of its transaction (a poll's, a backfill's), so its savepoint undoes
# all of it and frees its locks, and redoing it is harmless (ON CONFLICT DO NOTHING/UPDATE).
@redone_on_conflict
def store_page(
    conn: Connection,
    *,
    source: str,
    network: str,
    account: Account,
    page: Page,
    crms: Iterable[str],
    brand_ids: set[str],
    now: datetime,
    backfill_id: int | None = None,
    targets: Sequence[str] = (DEFAULT_TARGET,),
) -> IngestResult:
    """Store one page's interactions, authors, deliveries and bad items (not where the walk
    stands: the caller keeps that in the same transaction, a cursor or a backfill job).
    ``targets``: the CRMs' history targets, one delivery per interaction and target."""
    crm_names = list(crms)
    # People forgotten on request stay forgotten: asked in this transaction, so a page read
    # while `syncd forget` ran is screened by the list it committed, or undone by it.
    page, dropped = suppression.screen(conn, network, page)
    # Sorted so concurrent transactions insert (and wait on) posts in one order.
    # A post a page repeats is stored as it first came (reversed: a dict keeps the last).
    first = {i.post_id: i for i in reversed(page.interactions)}
    items = sorted(first.values(), key=lambda i: i.post_id)
    identity_ids = upsert_identities(
        conn, network, page.authors, (i.counterpart_id for i in items if i.counterpart_id), now
    )
    new_rows: list[tuple[int, str]] = []
    named: list[tuple[int, str]] = []
    if items:
        stmt = (
            insert_for(conn, interactions)
            .on_conflict_do_nothing(index_elements=["network", "post_id"])
            .returning(interactions.c.id, interactions.c.post_id)
        )
        params = [
            {
                "network": network,
                "post_id": i.post_id,
                "source": source,
                "account": account.handle,
                "stream": str(i.stream),
                "direction": str(i.direction),
                "author_id": i.author_id,
                # None: the network withheld who it is. No identity stands in for them.
                "counterpart_identity_id": (
                    None if i.counterpart_id is None else identity_ids[i.counterpart_id]
                ),
                "text": i.text,
                "created_at": i.created_at,
                "url": i.url,
                "conversation_id": i.conversation_id,
                "in_reply_to_post_id": i.in_reply_to_post_id,
                "in_reply_to_user_id": i.in_reply_to_user_id,
                "private": i.private,
                "raw": i.raw,
                "ref": i.ref,
                "fetched_at": now,
                "backfill_id": backfill_id,
            }
            for i in items
        ]
        new_rows = [(r[0], r[1]) for r in insert_many(conn, stmt, params)]
        named = _named_late(conn, network, items, identity_ids, {p for _, p in new_rows})
    customer = {i.post_id: i.counterpart_id for i in items}
    outbox = [
        {
            "interaction_id": row_id,
            "identity_id": identity_ids[counterpart],
            "crm": crm,
            "target": target,
            "state": DeliveryState.PENDING,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for row_id, post_id in (*new_rows, *named)
        # Brand-to-brand posts are kept but belong in no customer's history, nor do posts
        # whose author the network withheld: nobody's history can be told.
        if (counterpart := customer[post_id]) is not None and counterpart not in brand_ids
        for crm in crm_names
        for target in targets
    ]
    if outbox:
        insert_many(conn, insert_for(conn, deliveries).on_conflict_do_nothing(), outbox)
    bad = _not_yet_quarantined(conn, page.quarantined)
    if bad:
        conn.execute(
            quarantine.insert(),
            [
                {
                    "source": source,
                    "network": q.network,
                    "item_id": q.item_id,
                    "reason": q.reason,
                    "raw": q.raw,
                    "created_at": now,
                }
                for q in bad
            ],
        )
    return IngestResult(
        new=len(new_rows),
        seen=len(items),
        queued=len(outbox),
        quarantined=len(page.quarantined),
        suppressed=dropped,
    )


def _named_late(
    conn: Connection,
    network: str,
    items: list[Interaction],
    identity_ids: Mapping[str, int],
    inserted: set[str],
) -> list[tuple[int, str]]:
    """Posts stored before without their customer (the network withheld who it was) that this
    page names: they gain their author and customer (returned, to be given deliveries as
    new rows are). Only a row still without its customer is changed, so a post is filled in
    once, by whichever transaction gets there first, and a known customer is never replaced.
    """
    named = {
        i.post_id: i for i in items if i.counterpart_id is not None and i.post_id not in inserted
    }
    faceless: list[tuple[str, str]] = []
    for chunk in chunks(sorted(named)):
        faceless += [
            (r.post_id, r.direction)
            for r in conn.execute(
                select(interactions.c.post_id, interactions.c.direction).where(
                    interactions.c.network == network,
                    one_of(conn, interactions.c.post_id, chunk),
                    interactions.c.counterpart_identity_id.is_(None),
                )
            )
        ]
    filled: list[tuple[int, str]] = []
    for post_id, direction in sorted(faceless):  # one order of row locks, as the insert's
        item = named[post_id]
        assert item.counterpart_id is not None
        if direction != str(item.direction):
            # Taken for a person's when read without its author, and the brand's now (or
            # the other way): the customer it now names is not that post's. Left as stored.
            continue
        row_id = conn.execute(
            update(interactions)
            .where(
                interactions.c.network == network,
                interactions.c.post_id == post_id,
                interactions.c.counterpart_identity_id.is_(None),
            )
            .values(
                author_id=func.coalesce(interactions.c.author_id, item.author_id),
                counterpart_identity_id=identity_ids[item.counterpart_id],
            )
            .returning(interactions.c.id)
        ).scalar_one_or_none()
        if row_id is not None:
            filled.append((row_id, post_id))
    return filled


def _not_yet_quarantined(conn: Connection, items: Iterable[Quarantined]) -> list[Quarantined]:
    """Drop items already quarantined for the same reason.

    Overlapping pages, a restarted walk or a backfill read a bad item again; an admin should
    find it once, as the unique constraint keeps each good post once. Items without an id
    cannot be told apart and are all kept.
    """
    todo = list(items)
    ids = sorted({q.item_id for q in todo if q.item_id is not None})
    known: set[tuple[str, str | None, str]] = set()
    for chunk in chunks(ids):
        known.update(
            (r.network, r.item_id, r.reason)
            for r in conn.execute(
                select(quarantine.c.network, quarantine.c.item_id, quarantine.c.reason).where(
                    quarantine.c.item_id.in_(chunk)
                )
            )
        )
    fresh: list[Quarantined] = []
    for q in todo:
        key = (q.network, q.item_id, q.reason)
        if q.item_id is not None:
            if key in known:
                continue
            known.add(key)  # and once per page, should the page repeat it
        fresh.append(q)
    return fresh
