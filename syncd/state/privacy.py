"""Privacy in state: forgetting one person on request, and pruning old raw payloads.

Forgetting runs in steps, each its own transaction (the CRM calls between them are the
caller's, :mod:`syncd.compliance.forget`):

1. :func:`begin`: the person goes on the suppression list (ingest stores nothing of theirs
   again), their deliveries not yet written are marked ``forgotten`` (no writer takes them
   any more, and a writer storing the answer for one it was already writing keeps the mark),
   and others' posts naming them are redacted in state.
2. the caller waits for writes under way (:func:`claimed`), deletes the CRM records syncd
   wrote for them (:func:`crm_records`, :func:`created_leads`) and rewrites others' records
   that named them (:func:`rewrites`);
3. :func:`forget`: everything state holds about them is deleted: the identity, its former
   handles, links and their history, review candidates, the interactions they wrote or that
   were addressed to them (with those interactions' deliveries and compliance checks),
   quarantined items naming them, and the local copy of the CRM's ids and handles for them.

A writer that outlived its claim and stores an answer after step 3 finds the delivery gone
and deletes the record itself (:func:`after_write`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Text,
    cast,
    delete,
    func,
    or_,
    select,
    union,
)
from sqlalchemy import update as sql_update

from syncd.model import DeliveryState
from syncd.state import outbox, suppression
from syncd.state.outbox import ReadyDelivery
from syncd.state.tables import (
    accounts,
    candidates,
    cases,
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
LEAD_CREATED = "lead_created"  # the matcher of a link to a Lead the resolver created
_CHUNK = 500


@dataclass(frozen=True)
class Person:
    """One network user as state knows them."""

    identity_id: int
    network: str
    user_id: str
    handle: str | None
    handles: tuple[str, ...]  # every handle seen, current one included
    display_name: str | None = None

    @property
    def shown(self) -> str:
        return f"@{self.handle} ({self.user_id})" if self.handle else self.user_id

    def redactor(self) -> suppression.Redactor:
        return suppression.for_person(self.user_id, self.handles, self.display_name)


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
    return Person(row.id, network, row.user_id, row.handle, every, row.display_name)


def _refuse_brand(conn: Connection, network: str, where: ColumnElement[bool]) -> None:
    brand = conn.execute(
        select(accounts.c.source, accounts.c.handle).where(accounts.c.network == network, where)
    ).first()
    if brand is not None:
        raise BrandAccount(f"@{brand.handle} is a brand account of source {brand.source!r}")


def _identity(conn: Connection, where: ColumnElement[bool], network: str) -> Any:
    stmt = select(
        identities.c.id, identities.c.user_id, identities.c.handle, identities.c.display_name
    ).where(identities.c.network == network, where)
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
    """The ids of the CRM records syncd wrote for the person's interactions (whatever the
    delivery's state: a forgotten one a writer was writing keeps the record id it stored),
    then their account's record (links.persona_id: a SocialPersona), once nothing names it,
    then the cases opened for them."""
    stmt = select(deliveries.c.crm_record_id).where(
        deliveries.c.crm == crm,
        deliveries.c.crm_record_id.is_not(None),
        deliveries.c.interaction_id.in_(_theirs(person)),
    )
    persona = select(links.c.persona_id).where(
        links.c.identity_id == person.identity_id,
        links.c.crm == crm,
        links.c.persona_id.is_not(None),
    )
    records = [r for r in conn.scalars(stmt.order_by(deliveries.c.id)) if r]
    records += [p for p in conn.scalars(persona) if p and p not in records]
    # The Cases their conversations opened ([crm.cases]): each holds their words.
    theirs = select(cases.c.crm_case_id).where(
        cases.c.identity_id == person.identity_id, cases.c.crm == crm
    )
    return records + [c for c in conn.scalars(theirs.order_by(cases.c.id)) if c not in records]


def created_leads(conn: Connection, person: Person, crm: str) -> list[str]:
    """The Leads the resolver created for the person (``unmatched = "lead"``): every link
    made with the ``lead_created`` matcher, current or in the link history (a Lead since
    converted or relinked away from is still one syncd made)."""
    made = union(
        select(links.c.crm_id.label("crm_id")).where(
            links.c.identity_id == person.identity_id,
            links.c.crm == crm,
            links.c.matcher == LEAD_CREATED,
        ),
        select(link_events.c.crm_id.label("crm_id")).where(
            link_events.c.identity_id == person.identity_id,
            link_events.c.crm == crm,
            link_events.c.matcher == LEAD_CREATED,
            link_events.c.crm_id.is_not(None),
        ),
    )
    return sorted(r for r in conn.scalars(select(made.subquery().c.crm_id)) if r)


def vanished(conn: Connection, identity_ids: Sequence[int]) -> set[int]:
    """Of these identities, those no longer in state: forgotten since a caller read them
    (the resolver, between asking the CRM about a batch and storing what it found)."""
    ids = sorted(set(identity_ids))
    found: set[int] = set()
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        found.update(conn.scalars(select(identities.c.id).where(identities.c.id.in_(chunk))))
    return set(ids) - found


def begin(conn: Connection, person: Person, now: datetime) -> list[int]:
    """Step 1: suppress the person, mark their unwritten deliveries forgotten, redact
    others' posts naming them. Returns the ids of the others' interactions redacted."""
    suppression.suppress(conn, person.network, person.user_id, person.handles, now)
    conn.execute(
        sql_update(deliveries)
        .where(
            deliveries.c.interaction_id.in_(_theirs(person)),
            deliveries.c.state != DeliveryState.WRITTEN,
            deliveries.c.state != DeliveryState.FORGOTTEN,
        )
        .values(state=DeliveryState.FORGOTTEN, next_attempt_at=None, updated_at=now)
    )
    return redact_others(conn, person)


def redact_others(conn: Connection, person: Person) -> list[int]:
    """Redact the person from others' posts (text and raw payload) that name them: an
    @mention, their id in a mention or reply entity, their name. The posts stay: they are
    the other author's history."""
    redactor = person.redactor()
    raw_text = func.lower(cast(interactions.c.raw, Text))
    # A coarse filter in the database (LIKE's '_' matches any character: only looser),
    # then the exact test in Python on what it lets through.
    needles = [person.user_id.lower(), *(suppression.fold(h) for h in person.handles)]
    if redactor.names:
        needles += [n.lower() for n in redactor.names]
    maybe = or_(
        *(func.lower(interactions.c.text).contains(n, autoescape=True) for n in needles),
        *(raw_text.contains(n, autoescape=True) for n in needles),
    )
    stmt = select(interactions.c.id, interactions.c.text, interactions.c.raw).where(
        interactions.c.network == person.network,
        interactions.c.id.not_in(_theirs(person)),
        maybe,
    )
    _redact_profiles(conn, person, needles)
    changed: list[int] = []
    for row_id, text, raw in conn.execute(stmt.order_by(interactions.c.id)).all():
        new_text, new_raw = redactor.text(text), redactor.value(raw)
        if new_text != text or new_raw != raw:
            conn.execute(
                sql_update(interactions)
                .where(interactions.c.id == row_id)
                .values(text=new_text, raw=new_raw)
            )
            changed.append(row_id)
    return changed


def _redact_profiles(conn: Connection, person: Person, needles: Sequence[str]) -> None:
    """Others' profiles naming the person (a bio saying "@them's sister")."""
    redactor = person.redactor()
    fields = ("display_name", "description", "location", "url")
    maybe = or_(
        *(func.lower(identities.c[f]).contains(n, autoescape=True) for f in fields for n in needles)
    )
    stmt = select(identities.c.id, *(identities.c[f] for f in fields)).where(
        identities.c.network == person.network, identities.c.id != person.identity_id, maybe
    )
    for row in conn.execute(stmt.order_by(identities.c.id)).all():
        values = {f: redactor.text(v) for f, v in zip(fields, row[1:], strict=True) if v}
        if any(values[f] != v for f, v in zip(fields, row[1:], strict=True) if v):
            conn.execute(sql_update(identities).where(identities.c.id == row.id).values(**values))


def claimed(
    conn: Connection, person: Person, others: Sequence[int], now: datetime
) -> datetime | None:
    """Until when a writer may still be writing one of the person's deliveries, or one of
    the redacted others' (PostgreSQL claims; None: nothing under way)."""
    touched = or_(
        deliveries.c.interaction_id.in_(_theirs(person)),
        *(
            deliveries.c.interaction_id.in_(others[s : s + _CHUNK])
            for s in range(0, len(others), _CHUNK)
        ),
    )
    stmt = select(func.max(outbox.CLAIM.until)).where(touched, outbox.CLAIM.held(now))
    until: datetime | None = conn.scalar(stmt)
    return until


def rewrites(conn: Connection, crm: str, others: Sequence[int]) -> list[ReadyDelivery]:
    """The written records of the redacted others' posts, as the writer would write them
    now (with the redacted text), for an upsert over what the CRM holds."""
    out: list[ReadyDelivery] = []
    for start in range(0, len(others), _CHUNK):
        stmt = (
            outbox.as_written()
            .where(
                deliveries.c.crm == crm,
                deliveries.c.crm_record_id.is_not(None),
                deliveries.c.interaction_id.in_(others[start : start + _CHUNK]),
            )
            .order_by(deliveries.c.id)
        )
        out += outbox.rows(conn.execute(stmt))
    return out


def after_write(
    conn: Connection, written: Sequence[tuple[int, str | None, str]], now: datetime
) -> list[str]:
    """For a writer that wrote ``(delivery id, CRM record id, text)`` while someone was
    forgotten, in the transaction storing its answers (after ``mark_written``): the records
    it must delete (their delivery is gone, or forgotten), and, for a post redacted
    meanwhile, the delivery is made pending again so the redacted text is written over."""
    orphans: list[str] = []
    again: list[int] = []
    for start in range(0, len(written), _CHUNK):
        chunk = written[start : start + _CHUNK]
        found = {
            r.id: (r.state, r.text)
            for r in conn.execute(
                select(deliveries.c.id, deliveries.c.state, interactions.c.text)
                .join(interactions, interactions.c.id == deliveries.c.interaction_id)
                .where(deliveries.c.id.in_([d for d, _, _ in chunk]))
            )
        }
        for delivery_id, record_id, text in chunk:
            state = found.get(delivery_id)
            if state is None or state[0] == DeliveryState.FORGOTTEN:
                if record_id:
                    orphans.append(record_id)
            elif state[1] != text:
                again.append(delivery_id)
    for start in range(0, len(again), _CHUNK):
        conn.execute(
            sql_update(deliveries)
            .where(
                deliveries.c.id.in_(again[start : start + _CHUNK]),
                deliveries.c.state == DeliveryState.WRITTEN,
            )
            .values(state=DeliveryState.PENDING, next_attempt_at=None, updated_at=now)
        )
    return orphans


def forget(conn: Connection, person: Person) -> dict[str, int]:
    """Step 3: delete every row naming the person; rows removed per table (tables with
    none left out). Children before parents, so the foreign keys hold at every statement."""
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
    # Their cases: others' posts in them (none, unless relinked) no longer name one.
    mine = select(cases.c.id).where(cases.c.identity_id == person.identity_id)
    conn.execute(sql_update(deliveries).where(deliveries.c.case_id.in_(mine)).values(case_id=None))
    run("cases", delete(cases).where(cases.c.identity_id == person.identity_id))
    if changed := len(redact_others(conn, person)):  # posts stored since step 1
        counts["interactions redacted"] = changed
    named = [
        qid
        for qid, item_id, reason, raw in conn.execute(
            select(
                quarantine.c.id, quarantine.c.item_id, quarantine.c.reason, quarantine.c.raw
            ).where(quarantine.c.network == person.network)
        )
        if item_id in post_ids
        or _raw_id(raw) in post_ids
        or _names(raw, person)
        or _names(reason, person)
    ]
    for start in range(0, len(named), _CHUNK):
        chunk = named[start : start + _CHUNK]
        run("quarantine", delete(quarantine).where(quarantine.c.id.in_(chunk)))
    me = person.identity_id
    folded = [h.casefold() for h in person.handles]
    keyed = or_(crm_keys.c.user_id == person.user_id, crm_keys.c.handle.in_(folded))
    # The CRM people that are this person (linked to them, or carrying their id or handle):
    # others' review candidates and link history name them too.
    records = set(conn.scalars(select(links.c.crm_id).where(links.c.identity_id == me))) | set(
        conn.scalars(
            select(crm_keys.c.record_id).where(crm_keys.c.network == person.network, keyed)
        )
    )
    for table in (candidates, link_events, links, identity_handles):
        run(table.name, delete(table).where(table.c.identity_id == me))
    _redact_named_records(conn, person, sorted(records), counts)
    run("crm_keys", delete(crm_keys).where(crm_keys.c.network == person.network, keyed))
    run("identities", delete(identities).where(identities.c.id == me))
    return counts


def _redact_named_records(
    conn: Connection, person: Person, records: Sequence[str], counts: dict[str, int]
) -> None:
    """Others' candidates, links and link history pointing at the person's CRM records keep
    the record id (theirs to explain) but not its name, nor the person in the reasons."""
    redactor = person.redactor()
    for table in (candidates, link_events, links):
        for start in range(0, len(records), _CHUNK):
            chunk = records[start : start + _CHUNK]
            for row in conn.execute(
                select(table.c.id, table.c.reasons).where(table.c.crm_id.in_(chunk))
            ).all():
                conn.execute(
                    sql_update(table)
                    .where(table.c.id == row.id)
                    .values(crm_name=None, reasons=redactor.value(row.reasons))
                )
                key = f"{table.name} redacted"
                counts[key] = counts.get(key, 0) + 1
    notes = link_events.c.note
    for start in range(0, len(records), _CHUNK):
        chunk = records[start : start + _CHUNK]
        for row in conn.execute(
            select(link_events.c.id, notes).where(
                link_events.c.crm_id.in_(chunk), notes.is_not(None)
            )
        ).all():
            conn.execute(
                sql_update(link_events)
                .where(link_events.c.id == row.id)
                .values(note=redactor.text(row.note))
            )


def _raw_id(raw: Any) -> str | None:
    """The item's own id as the payload gave it, a JSON number too (then the item was
    quarantined without an ``item_id``: it is not a valid id)."""
    value = raw.get("id") if isinstance(raw, dict) else None
    return None if value is None or isinstance(value, bool) else str(value)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, int | float):
        # An id that arrived as a JSON number (an API or proxy sending ids unquoted) is
        # still the person's id.
        yield str(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _names(raw: Any, person: Person) -> bool:
    """Whether a payload carries the person's id, a handle of theirs, an @mention of one,
    or their name."""
    handles = {h.casefold() for h in person.handles}
    redactor = person.redactor()
    for text in _strings(raw):
        if text == person.user_id or text.casefold().removeprefix("@") in handles:
            return True
        if redactor.text(text) != text:
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
