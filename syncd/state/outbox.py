"""The outbox side of state: who needs resolving, which deliveries are ready, what came back.

A pending delivery is written once its counterpart identity has a link for that CRM. Nothing
flips a delivery to "ready": readiness is the join, so a link that appears later releases every
delivery held for that person at once.

On PostgreSQL several instances write: each claims the deliveries it is about to write
(:func:`claim`, a lease per process) and stores answers only for what it still claims. SQLite
is single-instance and never claims, so its writer pays nothing for this.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Exists,
    Select,
    Table,
    Update,
    and_,
    any_,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from syncd.model import DEFAULT_TARGET, CrmRef, DeliveryState, Direction, IdentityKey
from syncd.state.coordination import Lease, gone, shared
from syncd.state.ingest import insert_for
from syncd.state.many import given_rows
from syncd.state.tables import (
    accounts,
    cases,
    crm_watch,
    deliveries,
    identities,
    interactions,
    links,
    post_checks,
)

# A writer's hold on the deliveries it is writing (PostgreSQL; SQLite never claims).
CLAIM = Lease(deliveries.c.claimed_by, deliveries.c.claim_until)


# -- resolution ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Unresolved:
    identity_id: int
    key: IdentityKey
    attempts: int
    first_seen_at: datetime | None = None


def _waiting_authors(crm: str) -> Select[tuple[int]]:
    """The authors of pending deliveries for ``crm``, read from the index alone."""
    return (
        select(deliveries.c.identity_id)
        .where(deliveries.c.crm == crm, deliveries.c.state == DeliveryState.PENDING)
        .distinct()
    )


def _member(
    conn: Connection, column: ColumnElement[int], authors: Select[tuple[int]]
) -> ColumnElement[bool]:
    """``column`` is one of ``authors``, a set computed once per query. SQLite is given the
    subquery. PostgreSQL is given the set itself: on a state database that grew faster than
    autovacuum analyses it (a first backfill, a burst), the planner believes the tables
    nearly empty and re-runs the subquery for every delivery, which took minutes per call."""
    if not shared(conn):
        return column.in_(authors)
    found = [r[0] for r in conn.execute(authors)]
    return column == any_(bindparam("authors", found, type_=ARRAY(BigInteger)))


def _has_pending(conn: Connection, crm: str) -> ColumnElement[bool]:
    """The identity has a pending delivery for ``crm``. Asked as membership in the set of
    pending deliveries' authors, computed once per query: as a correlated EXISTS, SQLite
    scanned every pending delivery for every identity."""
    return _member(conn, identities.c.id, _waiting_authors(crm))


def _linked(crm: str) -> Exists:
    return exists().where(links.c.identity_id == identities.c.id, links.c.crm == crm)


def identities_to_resolve(
    conn: Connection, crm: str, now: datetime, limit: int, *, after: int = 0
) -> list[Unresolved]:
    """Identities (by id, above ``after``) with something waiting for ``crm``, no link,
    and due for a (re)try."""
    stmt = (
        select(
            identities.c.id,
            identities.c.network,
            identities.c.user_id,
            identities.c.handle,
            identities.c.resolve_attempts,
            identities.c.first_seen_at,
        )
        # Cheapest first: most identities are linked, or not due, and need no look at
        # their deliveries (SQLite checks the terms in this order).
        .where(
            or_(identities.c.resolve_after.is_(None), identities.c.resolve_after <= now),
            ~_linked(crm),
            _has_pending(conn, crm),
            identities.c.id > after,
        )
        .order_by(identities.c.id)
        .limit(limit)
    )
    return [
        Unresolved(
            r.id, IdentityKey(r.network, r.user_id, r.handle), r.resolve_attempts, r.first_seen_at
        )
        for r in conn.execute(stmt)
    ]


def defer_resolution(
    conn: Connection,
    identity_ids: Sequence[int],
    now: datetime,
    backoff: timedelta,
    max_backoff: timedelta,
) -> None:
    """Schedule the next look-up: backoff doubles per failed attempt, up to ``max_backoff``."""
    if not identity_ids:
        return
    attempts = identities.c.resolve_attempts
    # Computed in Python per distinct attempt count: portable, and the groups are few.
    rows = conn.execute(
        select(identities.c.id, attempts).where(identities.c.id.in_(identity_ids))
    ).all()
    by_attempts: dict[int, list[int]] = {}
    for row_id, n in rows:
        by_attempts.setdefault(n, []).append(row_id)
    for n, ids in by_attempts.items():
        wait = min(backoff * (2 ** min(n, 20)), max_backoff)
        conn.execute(
            update(identities)
            .where(identities.c.id.in_(ids))
            .values(resolve_after=now + wait, resolve_attempts=n + 1)
        )


def held_waiting(conn: Connection, crm: str, now: datetime, after: int, limit: int) -> list[int]:
    """Held identities (unlinked, something pending) not due before a later retry, by id."""
    stmt = (
        select(identities.c.id)
        .where(_has_pending(conn, crm), ~_linked(crm), identities.c.resolve_after > now)
        .where(identities.c.id > after)
        .order_by(identities.c.id)
        .limit(limit)
    )
    return list(conn.scalars(stmt))


def wake(conn: Connection, identity_ids: Iterable[int]) -> int:
    """Make identities due for resolution now; their back-off count is kept."""
    return _update_ids(conn, identities, identity_ids, resolve_after=None)


def _update_ids(conn: Connection, table: Table, row_ids: Iterable[int], **values: Any) -> int:
    """Set ``values`` on the rows of ``table`` with these ids, 500 a statement."""
    ids = sorted(set(row_ids))
    for start in range(0, len(ids), 500):
        conn.execute(update(table).where(table.c.id.in_(ids[start : start + 500])).values(values))
    return len(ids)


def crm_mark(conn: Connection, crm: str) -> tuple[str | None, datetime | None]:
    row = conn.execute(
        select(crm_watch.c.mark, crm_watch.c.checked_at).where(crm_watch.c.crm == crm)
    ).first()
    return (row.mark, row.checked_at) if row else (None, None)


def store_crm_mark(conn: Connection, crm: str, mark: str | None, now: datetime) -> None:
    ins = insert_for(conn, crm_watch)
    conn.execute(
        ins.on_conflict_do_update(index_elements=["crm"], set_={"mark": mark, "checked_at": now}),
        {"crm": crm, "mark": mark, "checked_at": now},
    )


def skip(conn: Connection, crm: str, identity_id: int, now: datetime) -> int:
    """Unmatched policy "skip": this author's pending deliveries are kept, never written."""
    stmt = (
        update(deliveries)
        .where(
            deliveries.c.crm == crm,
            deliveries.c.state == DeliveryState.PENDING,
            deliveries.c.identity_id == identity_id,
        )
        .values(state=DeliveryState.SKIPPED, updated_at=now)
    )
    return int(conn.execute(stmt).rowcount)


def held_count(conn: Connection, crm: str) -> int:
    stmt = (
        select(func.count()).select_from(identities).where(_has_pending(conn, crm), ~_linked(crm))
    )
    return int(conn.execute(stmt).scalar_one())


# -- delivery ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReadyDelivery:
    delivery_id: int
    identity_id: int
    attempts: int
    network: str
    post_id: str
    account: str
    direction: Direction
    text: str
    created_at: datetime
    url: str
    conversation_id: str | None
    handle: str | None
    who: CrmRef
    name: str | None = None  # the person's display name, where the network gives one
    brand_name: str | None = None  # Account.display_name of the brand account that read it
    target: str = DEFAULT_TARGET  # which of the CRM's history targets it is written to
    in_reply_to: str | None = None  # the network's id of the post it answers
    user_id: str | None = None  # the network's id of the person's account
    # The CRM's record for that account, while it is under the person linked (links.persona_id)
    persona_id: str | None = None
    # The CRM's record of the same target for the post it answers, where written.
    reply_to_id: str | None = None
    # The CRM's case of the post's conversation (None: none, or the CRM works none).
    case_id: str | None = None
    private: bool = False  # a private message (Interaction.private)
    profile_url: str | None = None  # the url the person's profile gave (identities.url)
    interaction_id: int = 0
    # Who wrote the post it answers (Interaction.in_reply_to_user_id), and the brand
    # account's own id: whether it answers the brand (a case's opening rule).
    in_reply_to_user_id: str | None = None
    brand_user_id: str | None = None
    # When the delivery was queued (its post stored, or a backfill's page): how long its
    # record has waited here, on this host's clock.
    queued_at: datetime | None = None

    @property
    def external_id(self) -> str:
        return f"{self.network}:{self.post_id}"


def _ready(
    conn: Connection,
    crm: str,
    now: datetime,
    limit: int,
    *,
    cases: bool = False,
    target: str | None = None,
    skip_targets: Sequence[str] = (),
) -> Select[Any]:
    """Pending deliveries whose counterpart is linked and which are due, oldest post first;
    with ``cases`` (the CRM works conversations as cases), only those whose case is decided."""
    # Which waiting authors are linked is asked once per author, from the indexes: held
    # authors' deliveries (many, for authors the CRM lacks) are then never read, where
    # joining every pending delivery to its link read them all on every call.
    stmt = as_written().where(
        deliveries.c.crm == crm,
        deliveries.c.state == DeliveryState.PENDING,
        # A bulk job writes it (syncd.pipeline.bulk).
        deliveries.c.bulk_job_id.is_(None),
        _linked_waiting(conn, crm),
        or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now),
    )
    if cases:
        stmt = stmt.where(deliveries.c.case_decided)
    if target is not None:
        stmt = stmt.where(deliveries.c.target == target)
    if skip_targets:
        stmt = stmt.where(deliveries.c.target.not_in(skip_targets))
    return stmt.order_by(interactions.c.created_at, deliveries.c.id).limit(limit)


def _linked_waiting(conn: Connection, crm: str) -> ColumnElement[bool]:
    """The delivery's author is a waiting author (:func:`_waiting_authors`) with a link."""
    if not shared(conn):
        authors = _waiting_authors(crm).subquery()
        linked_authors = select(authors.c.identity_id).where(
            exists().where(links.c.identity_id == authors.c.identity_id, links.c.crm == crm)
        )
        return _member(conn, deliveries.c.identity_id, linked_authors)
    # PostgreSQL is given each set as an array, asked for in turn. Joined in one statement,
    # the waiting authors' links were planned, while the links table grew faster than its
    # statistics (the first minutes of a new database), as a scan of every link per waiting
    # author: 16 seconds of one call, the writer idle meanwhile.
    waiting = [r[0] for r in conn.execute(_waiting_authors(crm))]
    linked = conn.execute(
        select(links.c.identity_id).where(
            links.c.crm == crm,
            links.c.identity_id == any_(bindparam("waiting", waiting, type_=ARRAY(BigInteger))),
        )
    )
    found = [r[0] for r in linked]
    return deliveries.c.identity_id == any_(bindparam("authors", found, type_=ARRAY(BigInteger)))


def _reply_to_record() -> Any:
    """The CRM record written for the post a delivery's post answers, on the same target,
    unless that post was deleted on its network (compliance deletes or marks its records)."""
    parent, answered = deliveries.alias("parent"), interactions.alias("answered")
    return (
        select(parent.c.crm_record_id)
        .join(answered, answered.c.id == parent.c.interaction_id)
        .where(
            answered.c.network == interactions.c.network,
            answered.c.post_id == interactions.c.in_reply_to_post_id,
            parent.c.crm == deliveries.c.crm,
            parent.c.target == deliveries.c.target,
            parent.c.crm_record_id.is_not(None),
            ~exists().where(
                post_checks.c.interaction_id == answered.c.id, post_checks.c.deleted_at.is_not(None)
            ),
        )
        .limit(1)
        .correlate(deliveries, interactions)
        .scalar_subquery()
    )


def as_written() -> Select[Any]:
    """Deliveries with what the writer sends for each (the post, its author, the linked CRM
    person), to be narrowed by the caller; read with :func:`rows`."""
    return (
        select(
            deliveries.c.id,
            deliveries.c.attempts,
            deliveries.c.target,
            deliveries.c.created_at.label("queued_at"),
            interactions.c.network,
            interactions.c.post_id,
            interactions.c.account,
            interactions.c.direction,
            interactions.c.text,
            interactions.c.created_at,
            interactions.c.url,
            interactions.c.conversation_id,
            interactions.c.in_reply_to_post_id,
            interactions.c.in_reply_to_user_id,
            interactions.c.private,
            deliveries.c.interaction_id,
            identities.c.id.label("identity_id"),
            identities.c.handle,
            identities.c.display_name,
            identities.c.user_id,
            identities.c.url.label("profile_url"),
            accounts.c.display_name.label("brand_name"),
            accounts.c.user_id.label("brand_user_id"),
            links.c.crm_object,
            links.c.crm_id,
            links.c.crm_name,
            links.c.crm_priority,
            links.c.persona_id,
            links.c.persona_parent_id,
            _reply_to_record().label("reply_to_id"),
            cases.c.crm_case_id,
        )
        .join(interactions, interactions.c.id == deliveries.c.interaction_id)
        .join(identities, identities.c.id == deliveries.c.identity_id)
        .join(links, and_(links.c.identity_id == identities.c.id, links.c.crm == deliveries.c.crm))
        # Outer: the brand's name is for reading; a record is written without it.
        .outerjoin(
            accounts,
            and_(
                accounts.c.source == interactions.c.source,
                accounts.c.handle == interactions.c.account,
            ),
        )
        .outerjoin(cases, cases.c.id == deliveries.c.case_id)
    )


def _unclaimed(now: datetime, owner: str | None) -> ColumnElement[bool]:
    """Not under another process's claim (a lapsed one is nobody's)."""
    return CLAIM.free(now) if owner is None else CLAIM.open_to(owner, now)


def rows(result: Iterable[Any]) -> list[ReadyDelivery]:
    return [
        ReadyDelivery(
            delivery_id=r.id,
            identity_id=r.identity_id,
            attempts=r.attempts,
            network=r.network,
            post_id=r.post_id,
            account=r.account,
            direction=Direction(r.direction),
            text=r.text,
            created_at=r.created_at,
            url=r.url,
            conversation_id=r.conversation_id,
            handle=r.handle,
            who=CrmRef(r.crm_object, r.crm_id, r.crm_name, r.crm_priority),
            name=r.display_name,
            brand_name=r.brand_name,
            target=r.target,
            in_reply_to=r.in_reply_to_post_id,
            user_id=r.user_id,
            persona_id=r.persona_id if r.persona_parent_id == r.crm_id else None,
            reply_to_id=r.reply_to_id,
            case_id=r.crm_case_id,
            private=bool(r.private),
            profile_url=r.profile_url,
            interaction_id=r.interaction_id,
            in_reply_to_user_id=r.in_reply_to_user_id,
            brand_user_id=r.brand_user_id,
            queued_at=r.queued_at,
        )
        for r in result
    ]


def ready_deliveries(
    conn: Connection,
    crm: str,
    now: datetime,
    limit: int,
    owner: str | None = None,
    *,
    cases: bool = False,
    target: str | None = None,
    skip_targets: Sequence[str] = (),
) -> list[ReadyDelivery]:
    """Pending deliveries whose counterpart is linked and which are due, oldest post first;
    on PostgreSQL, not those another process (than ``owner``) has claimed; with ``cases``,
    only those whose case is decided."""
    stmt = _ready(conn, crm, now, limit, cases=cases, target=target, skip_targets=skip_targets)
    if shared(conn):  # SQLite never claims: no predicate to evaluate there
        stmt = stmt.where(_unclaimed(now, owner))
    return rows(conn.execute(stmt))


def ready_ids(
    conn: Connection, crm: str, now: datetime, limit: int, *, target: str, cases: bool = False
) -> list[int]:
    """Up to ``limit`` ready deliveries of ``target`` (ids, oldest post first) that no
    writer claims: what a bulk job takes (syncd.pipeline.bulk), without reading the rows."""
    stmt = _ready(conn, crm, now, limit, cases=cases, target=target).where(CLAIM.free(now))
    return [r.id for r in conn.execute(stmt)]


def claim(
    conn: Connection,
    crm: str,
    now: datetime,
    limit: int,
    owner: str,
    until: datetime,
    *,
    cases: bool = False,
    skip_targets: Sequence[str] = (),
) -> list[ReadyDelivery]:
    """Claim up to ``limit`` ready deliveries for ``owner`` until ``until`` (PostgreSQL), in
    the caller's short transaction. Rows another writer is claiming this moment are skipped,
    not waited for, so writers never queue behind each other nor deadlock."""
    stmt = _ready(conn, crm, now, limit, cases=cases, skip_targets=skip_targets).where(
        _unclaimed(now, owner)
    )
    ready = rows(conn.execute(stmt.with_for_update(of=deliveries, skip_locked=True)))
    if ready:
        # An array (claims are PostgreSQL's alone): one statement text whatever the count.
        ids = bindparam("ids", [d.delivery_id for d in ready], type_=ARRAY(BigInteger))
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == any_(ids))
            .values(**CLAIM.take(owner, until))
        )
    return ready


def release_dead_claims(conn: Connection, now: datetime) -> int:
    """Hand back the claims of processes of this host that no longer run (a SIGKILL, an OOM
    kill), so a restarted writer takes their deliveries now rather than after their lease.
    Returns how many deliveries were freed. Claims of other hosts are left to lapse: whether
    their holder runs cannot be told from here."""
    holders = conn.execute(
        select(deliveries.c.claimed_by).where(CLAIM.held(now)).distinct()
    ).scalars()
    dead = sorted(h for h in holders if h is not None and gone(h))
    if not dead:
        return 0
    freed = conn.execute(
        update(deliveries)
        .where(deliveries.c.claimed_by.in_(dead), CLAIM.held(now))
        .values(**CLAIM.release())
    )
    return freed.rowcount or 0


def release(conn: Connection, delivery_ids: Sequence[int], owner: str) -> None:
    """Hand claimed deliveries back unwritten (shutdown, a failed batch): others may take
    them at once instead of after the lease."""
    if delivery_ids:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id.in_(sorted(delivery_ids)), CLAIM.held_by(owner))
            .values(**CLAIM.release())
        )


def _by_claimer(stmt: Update, owner: str | None) -> Update:
    """Store an answer only while the claim is still ``owner``'s, and end the claim. Once
    another process took the delivery over (this one outlived its lease), the answer is
    that process's to store: this one's could undo what it stored."""
    if owner is None:
        return stmt
    return stmt.where(CLAIM.held_by(owner)).values(**CLAIM.release())


def mark_written(
    conn: Connection,
    done: Iterable[tuple[int, str | None]],
    now: datetime,
    owner: str | None = None,
) -> None:
    """Record written deliveries; ``owner``: only those it still claims (PostgreSQL)."""
    params = [{"delivery_id": d, "crm_id": c} for d, c in sorted(done, key=lambda pair: pair[0])]
    if not params:
        return
    given = given_rows(
        conn,
        params,
        {"delivery_id": deliveries.c.id.type, "crm_id": deliveries.c.crm_record_id.type},
    )
    stmt = (
        update(deliveries)
        .where(deliveries.c.id == given["delivery_id"])
        .values(
            state=case(
                (deliveries.c.state == DeliveryState.FORGOTTEN, DeliveryState.FORGOTTEN),
                else_=DeliveryState.WRITTEN,
            ),
            crm_record_id=given["crm_id"],
            awaits_reply_to=False,
            attempts=deliveries.c.attempts + 1,
            last_error=None,
            last_error_code=None,
            next_attempt_at=None,
            written_at=now,
            updated_at=now,
        )
    )
    if not shared(conn):
        conn.execute(_by_claimer(stmt, owner), params)
        return
    # The ids again, as an array: joined to the document's rows alone, the deliveries were
    # planned on statistics from when the table was small as a scan of all of them per
    # written row (0.3 s a call); by the array they are looked up, or the scan runs once.
    ids = [p["delivery_id"] for p in params]
    stmt = stmt.where(deliveries.c.id == any_(bindparam("ids", ids, type_=ARRAY(BigInteger))))
    conn.execute(_by_claimer(stmt, owner))


def await_replies(conn: Connection, delivery_ids: Iterable[int]) -> None:
    """Note written deliveries whose record lacks the one of the post it answers."""
    _update_ids(conn, deliveries, delivery_ids, awaits_reply_to=True)


def rewrite_replies(conn: Connection, written: Iterable[int], now: datetime) -> int:
    """Make pending again the written deliveries that wait for a just written one (the post
    they answer, on the same CRM and target): their records are written again with it. Read
    from the waiting side (a partial index holds only them), so a batch with none waiting
    costs one index look-up, however many deliveries there are."""
    ids = sorted(set(written))
    if not ids:
        return 0
    waiting = conn.execute(
        select(
            deliveries.c.id,
            deliveries.c.crm,
            deliveries.c.target,
            interactions.c.network,
            interactions.c.in_reply_to_post_id,
        )
        .join(interactions, interactions.c.id == deliveries.c.interaction_id)
        .where(
            deliveries.c.awaits_reply_to.is_(True),
            deliveries.c.state == DeliveryState.WRITTEN,
        )
    ).all()
    if not waiting:
        return 0
    parent, answered = deliveries.alias("p"), interactions.alias("answered")
    just_written: set[tuple[str, str, str, str]] = set()
    for start in range(0, len(ids), 500):
        just_written.update(
            (r.network, r.post_id, r.crm, r.target)
            for r in conn.execute(
                select(answered.c.network, answered.c.post_id, parent.c.crm, parent.c.target)
                .join(answered, answered.c.id == parent.c.interaction_id)
                .where(parent.c.id.in_(ids[start : start + 500]))
            )
        )
    again = [
        w.id for w in waiting if (w.network, w.in_reply_to_post_id, w.crm, w.target) in just_written
    ]
    return _update_ids(
        conn, deliveries, again, state=DeliveryState.PENDING, next_attempt_at=None, updated_at=now
    )


def rewrite_answered(
    conn: Connection,
    now: datetime,
    *,
    ids: Iterable[int] = (),
    written_since: datetime | None = None,
) -> int:
    """Make pending again the waiting deliveries (``ids``, and those written since
    ``written_since``) whose answered post's record is known by now: read before another
    store wrote it (an earlier call of the same read, another writer's transaction), they
    missed :func:`rewrite_replies`. Asked as the reader asks (:func:`_reply_to_record`), so
    a reply to a post deleted since is never written again for it."""
    wanted = sorted(set(ids))
    if not wanted and written_since is None:
        return 0
    which: list[ColumnElement[bool]] = [
        deliveries.c.id.in_(wanted[i : i + 500]) for i in range(0, len(wanted), 500)
    ]
    if written_since is not None:
        which.append(deliveries.c.written_at >= written_since)
    again = conn.execute(
        select(deliveries.c.id)
        .join(interactions, interactions.c.id == deliveries.c.interaction_id)
        .where(
            deliveries.c.awaits_reply_to.is_(True),
            deliveries.c.state == DeliveryState.WRITTEN,
            or_(*which),
            _reply_to_record().is_not(None),
        )
    ).scalars()
    return _update_ids(
        conn, deliveries, again, state=DeliveryState.PENDING, next_attempt_at=None, updated_at=now
    )


def remember_personas(conn: Connection, crm: str, written: Iterable[tuple[int, str, str]]) -> None:
    """Keep each ``(identity_id, persona_id, parent_id)``: the CRM's record for the identity's
    account, written under that person. A link moved meanwhile keeps none (written again)."""
    params = [
        {"b_identity": i, "b_persona": p, "b_parent": parent}
        for i, p, parent in sorted(set(written))
    ]
    if not params:
        return
    conn.execute(
        update(links)
        .where(
            links.c.identity_id == bindparam("b_identity"),
            links.c.crm == crm,
            links.c.crm_id == bindparam("b_parent"),
        )
        .values(persona_id=bindparam("b_persona"), persona_parent_id=bindparam("b_parent")),
        params,
    )


def mark_failed(
    conn: Connection,
    delivery_id: int,
    *,
    code: str | None,
    message: str,
    now: datetime,
    retry_at: datetime | None,
    counted: bool = True,
    owner: str | None = None,
) -> None:
    """Record a failed write: due again at ``retry_at``, or dead-lettered when it is None.

    ``counted=False`` leaves the attempt count alone: a record bounced because its person was
    merged away is not the record's fault and must not bring its dead letter closer.
    ``owner``: only while it still claims the delivery (PostgreSQL).
    """
    stmt = (
        update(deliveries)
        .where(deliveries.c.id == delivery_id)
        .values(
            state=case(
                (deliveries.c.state == DeliveryState.FORGOTTEN, DeliveryState.FORGOTTEN),
                else_=DeliveryState.PENDING if retry_at is not None else DeliveryState.DEAD,
            ),
            attempts=deliveries.c.attempts + (1 if counted else 0),
            last_error_code=code,
            last_error=message[:2000],
            next_attempt_at=retry_at,
            updated_at=now,
        )
    )
    conn.execute(_by_claimer(stmt, owner))
