"""Webhook hints (table ``webhook_hints``): objects a source's webhook said changed.

A hint is stored by the HTTP listener the moment a signed delivery arrives (:func:`add`, the
delivery's hints in one transaction, each (source, object id, kind) once: a delivery sent
again adds nothing) and read by the poller at the start of a walk (:func:`untaken`). It is
marked taken (:func:`take`) only in the transaction that stores the page the source read the
object into, so a hint outlives a restart until what it led to is stored, and a hint whose
object the API does not confirm adds nothing but its own row.

Rows do not stay for ever (:func:`prune`, run with the daemon's daily pruning): a taken hint
is kept :data:`TAKEN_KEEP`, long enough that a delivery Meta sends again finds it and adds
nothing; one never taken for :data:`UNTAKEN_KEEP` is of an account no poller reads (its
source or account left the configuration, or is parked that long) and goes too. The bound is
by age, not by this instance's configuration: instances sharing the state database may poll
different sources, and one must not delete another's hints.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, delete, or_, select, update

from syncd.model import HINT_ID_MAX, HINT_KIND_MAX, WebhookHint
from syncd.state.tables import webhook_hints

# Meta retries a delivery it got no answer to for hours; a replay weeks later is read again
# through the API (once more), which stores nothing twice.
TAKEN_KEEP = timedelta(days=7)
# A hint whose account no poll took in this long will not be: no walk reads it.
UNTAKEN_KEEP = timedelta(days=14)

# The most hints one walk is offered: a flood of deliveries is read a batch a walk, oldest
# first, instead of making one walk's first page unbounded.
BATCH = 200


def _valid(hint: WebhookHint) -> bool:
    return (
        0 < len(hint.object_id) <= HINT_ID_MAX
        and 0 < len(hint.kind) <= HINT_KIND_MAX
        and 0 < len(hint.account_id) <= HINT_ID_MAX
    )


def add(conn: Connection, source: str, hints: Iterable[WebhookHint], now: datetime) -> int:
    """Store a delivery's hints in the caller's transaction; how many were new. A hint
    already stored (taken or not) is left as it is: the poller read it, or will."""
    from syncd.state.ingest import insert_for  # here: ingest imports this module

    rows = [
        {
            "source": source,
            "account": h.account_id,
            "object_id": h.object_id,
            "kind": h.kind,
            "received_at": now,
        }
        # Sorted so concurrent deliveries lock rows in one order; one row per key.
        for h in sorted({h for h in hints if _valid(h)}, key=lambda h: (h.object_id, h.kind))
    ]
    if not rows:
        return 0
    stmt = insert_for(conn, webhook_hints).on_conflict_do_nothing(
        index_elements=["source", "object_id", "kind"]
    )
    # The rows inserted come back; a rowcount is not told alike by every driver.
    return len(conn.execute(stmt.returning(webhook_hints.c.id), rows).all())


def untaken(
    conn: Connection, source: str, account_id: str, limit: int = BATCH
) -> tuple[WebhookHint, ...]:
    """The account's hints not yet taken, oldest first, at most ``limit``."""
    rows = conn.execute(
        select(webhook_hints.c.account, webhook_hints.c.object_id, webhook_hints.c.kind)
        .where(
            webhook_hints.c.source == source,
            webhook_hints.c.account == account_id,
            webhook_hints.c.taken_at.is_(None),
        )
        .order_by(webhook_hints.c.received_at, webhook_hints.c.id)
        .limit(limit)
    )
    return tuple(WebhookHint(account, object_id, kind) for account, object_id, kind in rows)


def take(conn: Connection, source: str, hints: Sequence[WebhookHint], now: datetime) -> int:
    """Mark ``hints`` taken, in the transaction storing the page they were read into; how
    many were untaken. A hint not stored (a source's own invention) marks nothing."""
    keys = sorted({(h.object_id, h.kind) for h in hints})
    taken = 0
    for start in range(0, len(keys), 200):
        chunk = keys[start : start + 200]
        result = conn.execute(
            update(webhook_hints)
            .where(
                webhook_hints.c.source == source,
                webhook_hints.c.taken_at.is_(None),
                or_(
                    *(
                        and_(webhook_hints.c.object_id == o, webhook_hints.c.kind == k)
                        for o, k in chunk
                    )
                ),
            )
            .values(taken_at=now)
        )
        taken += result.rowcount
    return taken


def prune(conn: Connection, now: datetime) -> int:
    """Delete hints taken more than :data:`TAKEN_KEEP` ago and hints never taken in
    :data:`UNTAKEN_KEEP`; how many were deleted."""
    taken_before, received_before = now - TAKEN_KEEP, now - UNTAKEN_KEEP
    result = conn.execute(
        delete(webhook_hints).where(
            or_(
                webhook_hints.c.taken_at < taken_before,
                and_(
                    webhook_hints.c.taken_at.is_(None),
                    webhook_hints.c.received_at < received_before,
                ),
            )
        )
    )
    return result.rowcount
