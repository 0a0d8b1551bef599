"""What an admin sees of social authors: links, the review queue, one author in full.

The read side of :mod:`syncd.state.linking`: nothing here changes state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, or_, select

from syncd.model import Candidate, DeliveryState, IdentityKey, Profile, ReviewState
from syncd.state.linking import as_candidate, profiles
from syncd.state.tables import (
    candidates,
    deliveries,
    identities,
    identity_handles,
    interactions,
    link_events,
    links,
)


def find_identity(conn: Connection, who: str) -> int | None:
    """An identity by '@handle' (current or former), by user id, or by row id ('#12')."""
    who = who.strip()
    if who.startswith("#") and who[1:].isdigit():
        found = conn.execute(select(identities.c.id).where(identities.c.id == int(who[1:])))
        return int(who[1:]) if found.first() else None
    bare = who.removeprefix("@")
    row = conn.execute(
        select(identities.c.id)
        .where(or_(identities.c.user_id == bare, func.lower(identities.c.handle) == bare.lower()))
        .order_by(identities.c.updated_at.desc())
    ).first()
    if row is None:
        row = conn.execute(
            select(identity_handles.c.identity_id)
            .where(func.lower(identity_handles.c.handle) == bare.lower())
            .order_by(identity_handles.c.last_seen_at.desc())
        ).first()
    return int(row[0]) if row else None


# -- links ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LinkInfo:
    identity_id: int
    key: IdentityKey
    display_name: str | None
    link: Candidate
    created_by: str
    created_at: datetime


def links_list(
    conn: Connection, crm: str, identity_ids: Sequence[int] | None = None, limit: int = 100
) -> list[LinkInfo]:
    """Links, newest first."""
    stmt = (
        select(
            links,
            identities.c.network,
            identities.c.user_id,
            identities.c.handle,
            identities.c.display_name,
        )
        .join(identities, identities.c.id == links.c.identity_id)
        .where(links.c.crm == crm)
        .order_by(links.c.created_at.desc(), links.c.id.desc())
        .limit(limit)
    )
    if identity_ids is not None:
        stmt = stmt.where(links.c.identity_id.in_(list(identity_ids)))
    return [
        LinkInfo(
            r.identity_id,
            IdentityKey(r.network, r.user_id, r.handle),
            r.display_name,
            as_candidate(r),
            r.created_by,
            r.created_at,
        )
        for r in conn.execute(stmt)
    ]


def history(conn: Connection, crm: str, identity_id: int) -> list[dict[str, Any]]:
    """Every link event of an author, oldest first: link, unlink, merge, reject."""
    stmt = (
        select(link_events)
        .where(link_events.c.crm == crm, link_events.c.identity_id == identity_id)
        .order_by(link_events.c.id)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


# -- the review queue ----------------------------------------------------------------------
@dataclass(frozen=True)
class Review:
    identity_id: int
    key: IdentityKey
    display_name: str | None
    candidates: tuple[tuple[int, Candidate], ...]  # (candidate row id, candidate), best first


def reviews(
    conn: Connection,
    crm: str,
    *,
    identity_id: int | None = None,
    limit: int = 100,
    after: int = 0,
) -> list[Review]:
    """Authors with open candidates and no link, by identity id (after ``after``); each with
    its candidates, best first."""
    waiting = (
        select(candidates.c.identity_id)
        .where(candidates.c.crm == crm, candidates.c.state == ReviewState.OPEN)
        .where(candidates.c.identity_id > after)
        .where(
            ~select(links.c.id)
            .where(links.c.identity_id == candidates.c.identity_id, links.c.crm == crm)
            .exists()
        )
        .group_by(candidates.c.identity_id)
        .order_by(candidates.c.identity_id)
        .limit(limit)
    )
    if identity_id is not None:
        waiting = waiting.where(candidates.c.identity_id == identity_id)
    stmt = (
        select(
            candidates,
            identities.c.network,
            identities.c.user_id,
            identities.c.handle,
            identities.c.display_name,
        )
        .join(identities, identities.c.id == candidates.c.identity_id)
        .where(candidates.c.crm == crm, candidates.c.state == ReviewState.OPEN)
        .where(candidates.c.identity_id.in_(waiting.scalar_subquery()))
        .order_by(candidates.c.identity_id, candidates.c.score.desc(), candidates.c.id)
    )
    grouped: dict[int, Review] = {}
    for r in conn.execute(stmt):
        old = grouped.get(r.identity_id) or Review(
            r.identity_id, IdentityKey(r.network, r.user_id, r.handle), r.display_name, ()
        )
        grouped[r.identity_id] = Review(
            old.identity_id, old.key, old.display_name, (*old.candidates, (r.id, as_candidate(r)))
        )
    return list(grouped.values())


def review_count(conn: Connection, crm: str) -> int:
    stmt = (
        select(func.count(func.distinct(candidates.c.identity_id)))
        .where(candidates.c.crm == crm, candidates.c.state == ReviewState.OPEN)
        .where(
            ~select(links.c.id)
            .where(links.c.identity_id == candidates.c.identity_id, links.c.crm == crm)
            .exists()
        )
    )
    return int(conn.execute(stmt).scalar_one())


# -- one author ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Post:
    post_id: str
    created_at: datetime
    direction: str
    text: str
    url: str


@dataclass(frozen=True)
class Author:
    identity_id: int
    profile: Profile
    posts: tuple[Post, ...]  # newest first
    held: int  # interactions waiting for a link to reach the CRM
    resolve_after: datetime | None
    resolve_attempts: int


def author(conn: Connection, crm: str, identity_id: int, posts: int = 3) -> Author | None:
    profile = profiles(conn, [identity_id]).get(identity_id)
    if profile is None:
        return None
    row = conn.execute(
        select(identities.c.resolve_after, identities.c.resolve_attempts).where(
            identities.c.id == identity_id
        )
    ).one()
    recent = conn.execute(
        select(
            interactions.c.post_id,
            interactions.c.created_at,
            interactions.c.direction,
            interactions.c.text,
            interactions.c.url,
        )
        .where(interactions.c.counterpart_identity_id == identity_id)
        .order_by(interactions.c.created_at.desc(), interactions.c.id.desc())
        .limit(posts)
    )
    held = conn.execute(
        select(func.count())
        .select_from(deliveries.join(interactions))
        .where(
            interactions.c.counterpart_identity_id == identity_id,
            deliveries.c.crm == crm,
            deliveries.c.state == DeliveryState.PENDING,
        )
    ).scalar_one()
    return Author(
        identity_id,
        profile,
        tuple(Post(**r._mapping) for r in recent),
        int(held),
        row.resolve_after,
        int(row.resolve_attempts),
    )
