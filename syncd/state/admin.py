"""What an admin looks at and acts on: quarantined items, dead letters, parked accounts and
streams.

Nothing here deletes data an admin has not seen: a dropped dead letter keeps its row (state
``dropped``) so the history of what never reached the CRM stays explainable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select, update

from syncd.model import DEFAULT_TARGET, DeliveryState
from syncd.state.ingest import insert_for
from syncd.state.tables import deliveries, interactions, parked, quarantine


# -- quarantine ----------------------------------------------------------------------------
@dataclass(frozen=True)
class QuarantinedItem:
    id: int
    source: str
    network: str
    item_id: str | None
    reason: str
    created_at: datetime
    raw: Any = None


def quarantined(
    conn: Connection, *, limit: int = 100, source: str | None = None
) -> list[QuarantinedItem]:
    stmt = select(
        quarantine.c.id,
        quarantine.c.source,
        quarantine.c.network,
        quarantine.c.item_id,
        quarantine.c.reason,
        quarantine.c.created_at,
    ).order_by(quarantine.c.id.desc())
    if source is not None:
        stmt = stmt.where(quarantine.c.source == source)
    return [QuarantinedItem(**r._mapping) for r in conn.execute(stmt.limit(limit))]


def quarantined_item(conn: Connection, item: int) -> QuarantinedItem | None:
    row = conn.execute(select(quarantine).where(quarantine.c.id == item)).first()
    return QuarantinedItem(**row._mapping) if row is not None else None


# -- dead letters --------------------------------------------------------------------------
@dataclass(frozen=True)
class DeadLetter:
    delivery_id: int
    crm: str
    network: str
    post_id: str
    account: str
    attempts: int
    error_code: str | None
    error: str | None
    updated_at: datetime
    target: str = DEFAULT_TARGET  # which of the CRM's history targets it was for


def _dead_select(crm: str) -> Any:
    return (
        select(
            deliveries.c.id.label("delivery_id"),
            deliveries.c.crm,
            interactions.c.network,
            interactions.c.post_id,
            interactions.c.account,
            deliveries.c.attempts,
            deliveries.c.last_error_code.label("error_code"),
            deliveries.c.last_error.label("error"),
            deliveries.c.updated_at,
            deliveries.c.target,
        )
        .join(interactions, interactions.c.id == deliveries.c.interaction_id)
        .where(deliveries.c.crm == crm, deliveries.c.state == DeliveryState.DEAD)
    )


def dead_letters(conn: Connection, crm: str, *, limit: int = 100) -> list[DeadLetter]:
    stmt = _dead_select(crm).order_by(deliveries.c.id).limit(limit)
    return [DeadLetter(**r._mapping) for r in conn.execute(stmt)]


def dead_count(conn: Connection, crm: str) -> int:
    stmt = select(func.count()).where(
        deliveries.c.crm == crm, deliveries.c.state == DeliveryState.DEAD
    )
    return int(conn.execute(stmt).scalar_one())


def retry_dead(conn: Connection, crm: str, ids: Sequence[int] | None, now: datetime) -> int:
    """Queue dead letters again (all of them when ``ids`` is None), with a fresh attempt count.

    They go back to ``pending``, so the usual readiness rule applies: written at once when the
    author is linked, held otherwise.
    """
    stmt = update(deliveries).where(
        deliveries.c.crm == crm, deliveries.c.state == DeliveryState.DEAD
    )
    if ids is not None:
        stmt = stmt.where(deliveries.c.id.in_(list(ids)))
    result = conn.execute(
        stmt.values(state=DeliveryState.PENDING, attempts=0, next_attempt_at=None, updated_at=now)
    )
    return int(result.rowcount)


def drop_dead(conn: Connection, crm: str, ids: Sequence[int] | None, now: datetime) -> int:
    """Give up on dead letters for good; the rows stay, marked ``dropped``."""
    stmt = update(deliveries).where(
        deliveries.c.crm == crm, deliveries.c.state == DeliveryState.DEAD
    )
    if ids is not None:
        stmt = stmt.where(deliveries.c.id.in_(list(ids)))
    return int(conn.execute(stmt.values(state=DeliveryState.DROPPED, updated_at=now)).rowcount)


# -- parked accounts -----------------------------------------------------------------------
AUTH = "auth"  # an account or the CRM: its credentials were refused
UNREADABLE = "unreadable"  # one stream ("source:handle:stream"): its answers could not be read


@dataclass(frozen=True)
class Parked:
    name: str
    reason: str
    failures: int
    parked_at: datetime
    kind: str = AUTH


def park(
    conn: Connection, name: str, reason: str, failures: int, now: datetime, kind: str = AUTH
) -> None:
    stmt = insert_for(conn, parked).values(
        name=name, reason=reason[:2000], failures=failures, parked_at=now, kind=kind
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[parked.c.name],
            set_={
                "reason": stmt.excluded.reason,
                "failures": stmt.excluded.failures,
                "kind": stmt.excluded.kind,
            },
        )
    )


def parked_names(conn: Connection) -> set[str]:
    return {r.name for r in conn.execute(select(parked.c.name))}


def parked_list(conn: Connection) -> list[Parked]:
    return [Parked(**r._mapping) for r in conn.execute(select(parked).order_by(parked.c.name))]


def unpark(conn: Connection, names: Sequence[str] | None = None) -> list[str]:
    """Resume the named entries (every entry when ``names`` is None); the names resumed."""
    stmt = select(parked.c.name)
    if names is not None:
        stmt = stmt.where(parked.c.name.in_(list(names)))
    found = [r.name for r in conn.execute(stmt)]
    if found:
        conn.execute(delete(parked).where(parked.c.name.in_(found)))
    return found
