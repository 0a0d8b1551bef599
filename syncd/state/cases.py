"""The cases side of state: which interactions wait for their conversation's case, what the
conversations around them already have, and the cases the CRM opened or joined.

A CRM that works conversations as cases (:class:`syncd.model.CasePolicy`) has each
interaction's case decided once, for all its deliveries (one per history target), before any
is written: the writer takes only decided deliveries then. Decided with no case is
``case_decided`` with ``case_id`` None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update

from syncd.model import DeliveryState, Direction
from syncd.state.outbox import ReadyDelivery, as_written, rows
from syncd.state.tables import cases, deliveries, interactions


@dataclass(frozen=True)
class Case:
    """A case syncd opened, as state holds it."""

    id: int
    key: str
    identity_id: int
    crm_case_id: str
    opened_at: datetime
    last_post_at: datetime


@dataclass(frozen=True)
class Parent:
    """A stored post that a waiting one answers: whose conversation it is, and its case."""

    identity_id: int | None
    direction: Direction
    case: Case | None


def waiting(conn: Connection, crm: str, now: datetime, limit: int) -> list[ReadyDelivery]:
    """Up to ``limit`` interactions (oldest first) with a pending, due delivery to ``crm``
    whose case is undecided and whose customer is linked: one of its deliveries each, as
    the writer reads them (the decision is stored for all of them)."""
    stmt = (
        as_written()  # joins the customer's link: only linked customers' come
        .where(
            deliveries.c.crm == crm,
            deliveries.c.state == DeliveryState.PENDING,
            ~deliveries.c.case_decided,
            or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now),
        )
        .order_by(interactions.c.created_at, interactions.c.id, deliveries.c.id)
        # An interaction has a delivery per history target: room for a few each.
        .limit(limit * 4)
    )
    first: dict[int, ReadyDelivery] = {}
    for d in rows(conn.execute(stmt)):
        first.setdefault(d.interaction_id, d)
    return list(first.values())[:limit]


def _case(r: Any) -> Case:  # a row with the cases table's columns
    return Case(r.id, r.case_key, r.identity_id, r.crm_case_id, r.opened_at, r.last_post_at)


def parents(
    conn: Connection, crm: str, posts: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Parent]:
    """The stored posts among ``posts`` ((network, post id)), with their case with ``crm``."""
    wanted = set(posts)
    out: dict[tuple[str, str], Parent] = {}
    by_network: dict[str, set[str]] = {}
    for network, post_id in wanted:
        by_network.setdefault(network, set()).add(post_id)
    for network, post_ids in by_network.items():
        stmt = (
            select(
                interactions.c.post_id,
                interactions.c.direction,
                interactions.c.counterpart_identity_id,
                cases.c.id,
                cases.c.case_key,
                cases.c.identity_id,
                cases.c.crm_case_id,
                cases.c.opened_at,
                cases.c.last_post_at,
            )
            .outerjoin(
                deliveries,
                and_(
                    deliveries.c.interaction_id == interactions.c.id,
                    deliveries.c.crm == crm,
                    deliveries.c.case_id.is_not(None),
                ),
            )
            .outerjoin(cases, cases.c.id == deliveries.c.case_id)
            .where(interactions.c.network == network, interactions.c.post_id.in_(post_ids))
        )
        for r in conn.execute(stmt):
            key = (network, r.post_id)
            case = _case(r) if r.id is not None else None
            if key not in out or (case is not None and out[key].case is None):
                out[key] = Parent(r.counterpart_identity_id, Direction(r.direction), case)
    return out


def latest(conn: Connection, crm: str, identity_ids: Iterable[int]) -> dict[int, list[Case]]:
    """Each identity's cases, latest post first."""
    ids = sorted(set(identity_ids))
    out: dict[int, list[Case]] = {}
    if not ids:
        return out
    stmt = (
        select(cases)
        .where(cases.c.crm == crm, cases.c.identity_id.in_(ids))
        .order_by(cases.c.last_post_at.desc(), cases.c.id.desc())
    )
    for r in conn.execute(stmt):
        out.setdefault(r.identity_id, []).append(_case(r))
    return out


def store_case(
    conn: Connection,
    crm: str,
    *,
    key: str,
    identity_id: int,
    crm_case_id: str,
    opened_at: datetime,
    last_post_at: datetime,
    now: datetime,
) -> int:
    """A case the CRM opened (or, sent again, found under its key): its row's id."""
    row = conn.execute(
        select(cases.c.id, cases.c.last_post_at).where(cases.c.crm == crm, cases.c.case_key == key)
    ).first()
    if row is not None:
        conn.execute(
            update(cases)
            .where(cases.c.id == row.id)
            .values(
                crm_case_id=crm_case_id,
                last_post_at=max(row.last_post_at, last_post_at),
                updated_at=now,
            )
        )
        return int(row.id)
    inserted = conn.execute(
        cases.insert()
        .values(
            crm=crm,
            case_key=key,
            identity_id=identity_id,
            crm_case_id=crm_case_id,
            opened_at=opened_at,
            last_post_at=last_post_at,
            created_at=now,
            updated_at=now,
        )
        .returning(cases.c.id)
    ).scalar_one()
    return int(inserted)


def joined(conn: Connection, case_id: int, last_post_at: datetime, now: datetime) -> None:
    """Posts joined a case: its latest post is the later of the two."""
    conn.execute(
        update(cases)
        .where(cases.c.id == case_id, cases.c.last_post_at < last_post_at)
        .values(last_post_at=last_post_at, updated_at=now)
    )


def decide(conn: Connection, crm: str, decisions: Mapping[int, int | None]) -> None:
    """Each interaction's deliveries to ``crm`` (every target): decided, with their case row
    (None: no case)."""
    by_case: dict[int | None, list[int]] = {}
    for interaction_id, case_id in decisions.items():
        by_case.setdefault(case_id, []).append(interaction_id)
    for case_id, interaction_ids in by_case.items():
        conn.execute(
            update(deliveries)
            .where(
                deliveries.c.crm == crm,
                deliveries.c.interaction_id.in_(sorted(interaction_ids)),
            )
            .values(case_decided=True, case_id=case_id)
        )


def pending_deliveries(conn: Connection, crm: str, interaction_ids: Sequence[int]) -> list[int]:
    """The pending deliveries of these interactions to ``crm``, in id order."""
    if not interaction_ids:
        return []
    return list(
        conn.execute(
            select(deliveries.c.id)
            .where(
                deliveries.c.crm == crm,
                deliveries.c.interaction_id.in_(sorted(interaction_ids)),
                deliveries.c.state == DeliveryState.PENDING,
            )
            .order_by(deliveries.c.id)
        ).scalars()
    )
