"""Checks of posts against the network for deletions (``post_checks``), and what a deletion
does to state: the delivery of a post deleted before its write ends ``deleted``, and a deleted
post's text and payload are emptied. The compliance job (:mod:`syncd.compliance.deleted`)
decides what to ask and acts on the CRM; every statement it needs is here.

Each function runs in the caller's transaction, so a check, or a batch of CRM records acted
on, is stored in one: a run cut short resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, bindparam, insert, or_, select, update

from syncd.model import DeliveryState
from syncd.state.outbox import CLAIM
from syncd.state.tables import deliveries, interactions, post_checks

DELETED_CODE = "DELETED_ON_NETWORK"  # last_error_code of a delivery whose post went first
UNWRITTEN = "unwritten"  # post_checks.action: nothing reached the CRM, nothing to act on
READ = 1000  # due posts read at a time


@dataclass(frozen=True)
class DuePost:
    interaction_id: int
    network: str
    post_id: str
    source: str
    ref: str | None  # Interaction.ref: how the network reads it where post_id cannot serve


@dataclass(frozen=True)
class PendingPost(DuePost):
    delivery_id: int
    deleted: bool  # already found deleted on the network (by a check before)


@dataclass(frozen=True)
class Unacted:
    """A post found deleted whose CRM record was not dealt with yet."""

    interaction_id: int
    crm_record_id: str | None  # None: written without a record id, nothing in the CRM


def due(
    conn: Connection, crm: str, since: datetime, asked_before: datetime, after: int
) -> list[DuePost]:
    """Posts written to ``crm`` since ``since`` to ask about, from interaction id ``after``
    on, :data:`READ` at most: never asked and written before ``asked_before``, or asked
    before it and not found deleted. Posts whose author the network withheld are asked
    the same way, counted from when they were read: written nowhere, but their words are
    kept in state, and go once deleted on the network."""
    found = _due_written(conn, crm, since, asked_before, after) + _due_withheld(
        conn, since, asked_before, after
    )
    return sorted(found, key=lambda p: p.interaction_id)[:READ]


def _due_withheld(
    conn: Connection, since: datetime, asked_before: datetime, after: int
) -> list[DuePost]:
    i, c = interactions, post_checks
    stmt = (
        select(i.c.id, i.c.network, i.c.post_id, i.c.source, i.c.ref)
        .outerjoin(c, c.c.interaction_id == i.c.id)
        .where(
            i.c.counterpart_identity_id.is_(None),
            i.c.id > after,
            i.c.fetched_at >= since,
            or_(
                and_(c.c.interaction_id.is_(None), i.c.fetched_at <= asked_before),
                and_(c.c.deleted_at.is_(None), c.c.checked_at <= asked_before),
            ),
        )
        .order_by(i.c.id)
        .limit(READ)
    )
    return [DuePost(r.id, r.network, r.post_id, r.source, r.ref) for r in conn.execute(stmt)]


def _due_written(
    conn: Connection, crm: str, since: datetime, asked_before: datetime, after: int
) -> list[DuePost]:
    i, d, c = interactions, deliveries, post_checks
    stmt = (
        select(i.c.id, i.c.network, i.c.post_id, i.c.source, i.c.ref)
        .join(
            d,
            and_(d.c.interaction_id == i.c.id, d.c.crm == crm, d.c.state == DeliveryState.WRITTEN),
        )
        .outerjoin(c, c.c.interaction_id == i.c.id)
        .where(
            i.c.id > after,
            d.c.written_at >= since,
            # A post was seen standing when it was read: first asked ``interval`` after its
            # write, not at once (X bills every post a look-up returns).
            or_(
                and_(c.c.interaction_id.is_(None), d.c.written_at <= asked_before),
                and_(c.c.deleted_at.is_(None), c.c.checked_at <= asked_before),
            ),
        )
        # Once per post, however many of the CRM's targets it was written to.
        .distinct()
        .order_by(i.c.id)
        .limit(READ)
    )
    return [DuePost(r.id, r.network, r.post_id, r.source, r.ref) for r in conn.execute(stmt)]


def record(conn: Connection, checked: Sequence[int], gone: set[int], now: datetime) -> None:
    """Store that the posts of ``checked`` were asked about at ``now``, those of ``gone``
    found deleted. A deleted post whose author was withheld is dealt with at once: nothing of
    it is in a CRM, and its text and payload go from state."""
    c = post_checks
    known = set(conn.scalars(select(c.c.interaction_id).where(c.c.interaction_id.in_(checked))))
    new = [
        {"interaction_id": i, "checked_at": now, "deleted_at": now if i in gone else None}
        for i in dict.fromkeys(checked)  # a post of several deliveries (targets) once
        if i not in known
    ]
    if new:
        conn.execute(insert(c), new)
    old = [{"iid": i, "deleted": now if i in gone else None} for i in checked if i in known]
    if old:
        stmt = (
            update(c)
            .where(c.c.interaction_id == bindparam("iid"))
            .values(checked_at=now, deleted_at=bindparam("deleted"))
        )
        conn.execute(stmt, old)
    withheld = conn.scalars(
        select(interactions.c.id).where(
            interactions.c.id.in_(sorted(gone)), interactions.c.counterpart_identity_id.is_(None)
        )
    ).all()
    acted(conn, withheld, UNWRITTEN, now)


def unacted(conn: Connection, crm: str) -> list[Unacted]:
    """Posts found deleted whose record in ``crm`` was not acted on yet, in id order."""
    c, d = post_checks, deliveries
    rows = conn.execute(
        select(c.c.interaction_id, d.c.crm_record_id)
        .join(d, and_(d.c.interaction_id == c.c.interaction_id, d.c.crm == crm))
        .where(c.c.deleted_at.is_not(None), c.c.acted_at.is_(None))
        .order_by(c.c.interaction_id)
    )
    return [Unacted(r.interaction_id, r.crm_record_id) for r in rows]


def refused(conn: Connection, interaction_id: int, why: str) -> None:
    """Keep why the CRM refused to act on a post's record (tried again next run)."""
    conn.execute(
        update(post_checks)
        .where(post_checks.c.interaction_id == interaction_id)
        .values(error=why[:2000])
    )


def acted(conn: Connection, ids: Sequence[int], action: str, now: datetime) -> None:
    """The posts of ``ids`` are dealt with (``action``): never touched again."""
    if not ids:
        return
    conn.execute(
        update(post_checks)
        .where(post_checks.c.interaction_id.in_(ids))
        .values(acted_at=now, action=action, error=None)
    )
    # The post is gone from the network: its text and payload go from state too.
    conn.execute(update(interactions).where(interactions.c.id.in_(ids)).values(text="", raw={}))


def pending(
    conn: Connection, delivery_ids: Sequence[int], seen_before: datetime
) -> list[PendingPost]:
    """Of ``delivery_ids``, those whose post was last seen standing (read, or checked)
    before ``seen_before``, or already found deleted."""
    i, d, c = interactions, deliveries, post_checks
    rows = conn.execute(
        select(
            d.c.id,
            i.c.id.label("interaction_id"),
            i.c.network,
            i.c.post_id,
            i.c.source,
            i.c.ref,
            i.c.fetched_at,
            c.c.checked_at,
            c.c.deleted_at,
        )
        .join(i, i.c.id == d.c.interaction_id)
        .outerjoin(c, c.c.interaction_id == i.c.id)
        .where(d.c.id.in_(list(delivery_ids)))
        .order_by(d.c.id)
    )
    out = []
    for r in rows:
        seen = max(r.fetched_at, r.checked_at) if r.checked_at is not None else r.fetched_at
        if r.deleted_at is not None or seen < seen_before:
            out.append(
                PendingPost(
                    r.interaction_id,
                    r.network,
                    r.post_id,
                    r.source,
                    r.ref,
                    r.id,
                    r.deleted_at is not None,
                )
            )
    return out


def unwritten(
    conn: Connection, gone: Sequence[PendingPost], now: datetime, owner: str | None
) -> None:
    """The deliveries of posts deleted before their write end ``deleted``; their checks are
    acted on (nothing in the CRM), and the text and payload go from state as for any post
    deleted on the network. ``owner``: only while it still claims them (PostgreSQL)."""
    if not gone:
        return
    d = deliveries
    for p in sorted(gone, key=lambda p: p.delivery_id):  # in id order, as the writer goes
        stmt = update(d).where(d.c.id == p.delivery_id, d.c.state == DeliveryState.PENDING)
        if owner is not None:
            stmt = stmt.where(CLAIM.held_by(owner)).values(**CLAIM.release())
        conn.execute(
            stmt.values(
                state=DeliveryState.DELETED,
                last_error_code=DELETED_CODE,
                last_error=f"deleted on {p.network} before it was written: not written",
                next_attempt_at=None,
                updated_at=now,
            )
        )
    ids = [p.interaction_id for p in gone]
    known = set(
        conn.scalars(
            select(post_checks.c.interaction_id).where(post_checks.c.interaction_id.in_(ids))
        )
    )
    new = [
        {"interaction_id": i, "checked_at": now, "deleted_at": now} for i in ids if i not in known
    ]
    if new:
        conn.execute(insert(post_checks), new)
    acted(conn, ids, UNWRITTEN, now)
