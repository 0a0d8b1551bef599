"""Privacy in state: forgetting one person on request, and pruning old raw payloads.

``forget`` removes everything state holds about one network user in the caller's
transaction: the identity, its former handles, links and their history, review candidates,
the interactions they wrote or that were addressed to them (with those interactions'
deliveries and compliance checks), quarantined items naming them, and the local copy of the
CRM's ids and handles for them. The CRM's own records are the caller's to delete first
(:func:`crm_records`), since afterwards nothing says which they were.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, Text, cast, delete, func, or_, select
from sqlalchemy import update as sql_update

from syncd.state.tables import (
    accounts,
    candidates,
    crm_keys,
    deliveries,
    identities,
    identity_handles,
    interactions,
    link_events,
    links,
    post_checks,
    quarantine,
)

_EMPTY = "{}"  # what a pruned payload holds: the columns are NOT NULL


@dataclass(frozen=True)
class Person:
    """One network user as state knows them."""

    identity_id: int
    network: str
    user_id: str
    handle: str | None
    handles: tuple[str, ...]  # every handle seen, current one included

    @property
    def shown(self) -> str:
        return f"@{self.handle} ({self.user_id})" if self.handle else self.user_id


class BrandAccount(Exception):
    """The user asked for is one of the brand's own accounts: never forgotten by accident."""


def find(conn: Connection, network: str, user: str) -> Person | None:
    """The person by user id, current handle or a former handle (case-insensitive, with or
    without '@'). A user id wins over a handle that happens to read the same.

    Raises :class:`BrandAccount` for one of the brand's own accounts."""
    given = user.strip().removeprefix("@")
    if not given:
        return None
    # Asked first: a brand's own profile is never read into identities (its posts are not
    # history of anyone), so only the accounts table may know it.
    _refuse_brand(
        conn,
        network,
        or_(accounts.c.user_id == given, func.lower(accounts.c.handle) == given.lower()),
    )
    row = _identity(conn, identities.c.user_id == given, network)
    if row is None:
        row = _identity(conn, func.lower(identities.c.handle) == given.lower(), network)
    if row is None:
        former = select(identity_handles.c.identity_id).where(
            func.lower(identity_handles.c.handle) == given.lower()
        )
        row = _identity(conn, identities.c.id.in_(former), network)
    if row is None:
        return None
    _refuse_brand(conn, network, accounts.c.user_id == row.user_id)
    handles = conn.scalars(
        select(identity_handles.c.handle).where(identity_handles.c.identity_id == row.id)
    ).all()
    every = tuple(dict.fromkeys([*([row.handle] if row.handle else []), *handles]))
    return Person(row.id, network, row.user_id, row.handle, every)


def _refuse_brand(conn: Connection, network: str, where: ColumnElement[bool]) -> None:
    brand = conn.execute(
        select(accounts.c.source, accounts.c.handle).where(accounts.c.network == network, where)
    ).first()
    if brand is not None:
        raise BrandAccount(f"@{brand.handle} is a brand account of source {brand.source!r}")


def _identity(conn: Connection, where: ColumnElement[bool], network: str) -> Any:
    stmt = select(identities.c.id, identities.c.user_id, identities.c.handle).where(
        identities.c.network == network, where
    )
    return conn.execute(stmt.order_by(identities.c.id).limit(1)).first()


def _theirs(person: Person) -> Select[tuple[int]]:
    """The ids of the interactions the person wrote or that were addressed to them."""
    return select(interactions.c.id).where(
        interactions.c.network == person.network,
        or_(
            interactions.c.author_id == person.user_id,
            interactions.c.counterpart_identity_id == person.identity_id,
        ),
    )


def crm_records(conn: Connection, person: Person, crm: str) -> list[str]:
    """The ids of the CRM records syncd wrote for the person's interactions."""
    stmt = select(deliveries.c.crm_record_id).where(
        deliveries.c.crm == crm,
        deliveries.c.crm_record_id.is_not(None),
        deliveries.c.interaction_id.in_(_theirs(person)),
    )
    return [r for r in conn.scalars(stmt.order_by(deliveries.c.id)) if r]


def forget(conn: Connection, person: Person) -> dict[str, int]:
    """Delete every row naming the person; rows removed per table (tables with none left out).

    Children before parents, so the foreign keys hold at every statement."""
    counts: dict[str, int] = {}

    def run(table: str, stmt: Any) -> None:
        if n := conn.execute(stmt).rowcount:
            counts[table] = counts.get(table, 0) + n

    theirs = _theirs(person)
    post_ids = set(
        conn.scalars(select(interactions.c.post_id).where(interactions.c.id.in_(theirs)))
    )
    run("post_checks", delete(post_checks).where(post_checks.c.interaction_id.in_(theirs)))
    run("deliveries", delete(deliveries).where(deliveries.c.interaction_id.in_(theirs)))
    run("interactions", delete(interactions).where(interactions.c.id.in_(theirs)))
    named = [
        qid
        for qid, item_id, raw in conn.execute(
            select(quarantine.c.id, quarantine.c.item_id, quarantine.c.raw).where(
                quarantine.c.network == person.network
            )
        )
        if item_id in post_ids or _names(raw, person)
    ]
    for start in range(0, len(named), 500):
        chunk = named[start : start + 500]
        run("quarantine", delete(quarantine).where(quarantine.c.id.in_(chunk)))
    me = person.identity_id
    for table in (candidates, link_events, links, identity_handles):
        run(table.name, delete(table).where(table.c.identity_id == me))
    folded = [h.casefold() for h in person.handles]
    run(
        "crm_keys",
        delete(crm_keys).where(
            crm_keys.c.network == person.network,
            or_(crm_keys.c.user_id == person.user_id, crm_keys.c.handle.in_(folded)),
        ),
    )
    run("identities", delete(identities).where(identities.c.id == me))
    return counts


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _names(raw: Any, person: Person) -> bool:
    """Whether a payload carries the person's id, a handle of theirs, or an @mention of one."""
    handles = {h.casefold() for h in person.handles}
    mention = (
        re.compile(r"@(" + "|".join(map(re.escape, handles)) + r")\b", re.IGNORECASE)
        if handles
        else None
    )
    for text in _strings(raw):
        if text == person.user_id or text.casefold().removeprefix("@") in handles:
            return True
        if mention is not None and mention.search(text):
            return True
    return False


def prune_payloads(conn: Connection, before: datetime) -> dict[str, int]:
    """Empty the raw payloads stored before ``before`` (interactions by when they were read,
    quarantined items by when they were set aside); payloads already empty are left alone,
    so a daily run touches only a day's rows."""
    counts: dict[str, int] = {}
    dated = ((interactions, interactions.c.fetched_at), (quarantine, quarantine.c.created_at))
    for table, when in dated:
        stmt = (
            sql_update(table).where(when < before, cast(table.c.raw, Text) != _EMPTY).values(raw={})
        )
        counts[table.name] = conn.execute(stmt).rowcount
    return counts
