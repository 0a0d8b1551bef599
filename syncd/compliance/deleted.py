"""Posts deleted on the network must not stand in the CRM as if they had not been.

One run re-checks the posts written to the CRM within ``horizon`` that were not checked (or
written) in the last ``interval`` (the network asked in batches of 100: X's
``GET /2/tweets?ids=``), then
applies ``action`` to the CRM records of those found deleted: ``delete`` them, or ``mark``
them (a status field says "Deleted", the text is blanked). Each check is stored
(``post_checks``) in its own transaction, so a run cut short resumes where it stopped; a
post found deleted is never asked again, and once its CRM record is dealt with it is never
touched again. Its text and raw payload are emptied in state too.

The daemon runs :func:`run` on a schedule (``App.compliance``); ``syncd compliance run``
runs it once.

Before a write, :func:`before_write` asks the same of deliveries whose post was last seen
standing longer ago than ``[compliance] before_write`` (a held author's, a backlog's): a post
deleted meanwhile is never written (its delivery ends ``deleted``, with the reason, and its
check is recorded as acted on). Fresh ones are written as read: a post deleted in the
minutes after it was read is found by :func:`run` after its write, like any other.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, TypeVar

from sqlalchemy import Connection, and_, bindparam, insert, or_, select, update

from syncd.contracts import Crm, RecordOutcome, Source
from syncd.errors import ExternalError
from syncd.model import DeliveryState
from syncd.state.db import Database
from syncd.state.tables import deliveries, interactions, post_checks

log = logging.getLogger("syncd.compliance")

DELETED_CODE = "DELETED_ON_NETWORK"
UNWRITTEN = "unwritten"  # post_checks.action: nothing reached the CRM, nothing to act on

Action = Literal["delete", "mark"]
BATCH = 100  # ids per network lookup (X's GET /2/tweets takes at most 100)
_READ = 1000  # due posts read from state at a time


@dataclass
class ComplianceReport:
    checked: int = 0  # posts asked about
    deleted: int = 0  # of them, found deleted on the network
    undecided: int = 0  # of them, neither found nor reported deleted (asked again later)
    acted: int = 0  # CRM records deleted or marked
    failed: int = 0  # CRM records the CRM refused (tried again next run)
    errors: dict[str, str] = field(default_factory=dict)  # source → why it was not asked


@dataclass(frozen=True)
class _Due:
    interaction_id: int
    network: str
    post_id: str
    source: str


_D = TypeVar("_D", bound=_Due)


def run(
    db: Database,
    crm_name: str,
    crm: Crm,
    sources: Mapping[str, Source],
    *,
    horizon: timedelta,
    interval: timedelta,
    action: Action,
    now: datetime,
    stopping: Callable[[], bool] = lambda: False,
) -> ComplianceReport:
    """Check due posts, then act on every post found deleted and not yet acted on."""
    report = ComplianceReport()
    after = 0
    while not stopping():
        with db.connect() as conn:
            due = _due(conn, crm_name, now - horizon, now - interval, after)
        if not due:
            break
        after = due[-1].interaction_id
        for source_name, posts in _by_source(due, sources).items():
            source = sources.get(source_name)
            for start in range(0, len(posts), BATCH):
                batch = posts[start : start + BATCH]
                if source is None:
                    report.errors.setdefault(source_name, "no configured source for its network")
                    break
                try:
                    alive, deleted = source.lookup_posts([p.post_id for p in batch])
                except ExternalError as exc:  # one source failing must not stop the others
                    report.errors[source_name] = f"{type(exc).__name__}: {exc}"
                    break
                gone = [p.interaction_id for p in batch if p.post_id in deleted]
                report.checked += len(batch)
                report.deleted += len(gone)
                report.undecided += sum(p.post_id not in (alive | deleted) for p in batch)
                with db.transaction() as conn:
                    _record(conn, [p.interaction_id for p in batch], set(gone), now)
    _act(db, crm_name, crm, action, now, report)
    return report


def _due(
    conn: Connection, crm: str, since: datetime, asked_before: datetime, after: int
) -> list[_Due]:
    i, d, c = interactions, deliveries, post_checks
    stmt = (
        select(i.c.id, i.c.network, i.c.post_id, i.c.source)
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
        .order_by(i.c.id)
        .limit(_READ)
    )
    return [_Due(r.id, r.network, r.post_id, r.source) for r in conn.execute(stmt)]


def _by_source(due: Sequence[_D], sources: Mapping[str, Source]) -> dict[str, list[_D]]:
    """Each post goes to the source that read it, or to one of the same network if that
    source is gone from the config (any can look a post up)."""
    networks: dict[str, str] = {}
    for name, source in sources.items():
        networks.setdefault(source.network, name)
    out: dict[str, list[_D]] = defaultdict(list)
    for post in due:
        name = post.source if post.source in sources else networks.get(post.network, post.source)
        out[name].append(post)
    return out


def _record(conn: Connection, checked: list[int], gone: set[int], now: datetime) -> None:
    c = post_checks
    known = set(conn.scalars(select(c.c.interaction_id).where(c.c.interaction_id.in_(checked))))
    new = [
        {"interaction_id": i, "checked_at": now, "deleted_at": now if i in gone else None}
        for i in checked
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


def _act(
    db: Database, crm_name: str, crm: Crm, action: Action, now: datetime, report: ComplianceReport
) -> None:
    c, d = post_checks, deliveries
    with db.connect() as conn:
        rows = conn.execute(
            select(c.c.interaction_id, d.c.crm_record_id)
            .join(d, and_(d.c.interaction_id == c.c.interaction_id, d.c.crm == crm_name))
            .where(c.c.deleted_at.is_not(None), c.c.acted_at.is_(None))
            .order_by(c.c.interaction_id)
        ).all()
    records = {r.crm_record_id: r.interaction_id for r in rows if r.crm_record_id}
    unrecorded = [r.interaction_id for r in rows if not r.crm_record_id]
    apply = crm.delete_history if action == "delete" else crm.mark_history_deleted
    ids = list(records)
    for start in range(0, len(ids), 200):
        outcomes: Sequence[RecordOutcome] = apply(ids[start : start + 200])
        done = [records[o.record_id] for o in outcomes if o.ok]
        refused = [
            (records[o.record_id], f"{o.error_code}: {o.error}") for o in outcomes if not o.ok
        ]
        report.acted += len(done)
        report.failed += len(refused)
        with db.transaction() as conn:
            _done(conn, done, action, now)
            for iid, why in refused:
                conn.execute(update(c).where(c.c.interaction_id == iid).values(error=why[:2000]))
    if unrecorded:  # written without a record id: nothing in the CRM to reach
        with db.transaction() as conn:
            _done(conn, unrecorded, action, now)
    if report.failed:
        log.warning("compliance: the CRM refused %d record(s); retried next run", report.failed)


def _done(conn: Connection, ids: list[int], action: str, now: datetime) -> None:
    if not ids:
        return
    conn.execute(
        update(post_checks)
        .where(post_checks.c.interaction_id.in_(ids))
        .values(acted_at=now, action=action, error=None)
    )
    # The post is gone from the network: its text and payload go from state too.
    conn.execute(update(interactions).where(interactions.c.id.in_(ids)).values(text="", raw={}))


# -- before a write ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pending(_Due):
    delivery_id: int
    deleted: bool  # already found deleted on the network (by a check before)


def before_write(
    db: Database,
    sources: Mapping[str, Source],
    delivery_ids: Sequence[int],
    *,
    seen_before: datetime,
    now: datetime,
    owner: str | None = None,
    failing: set[str] | None = None,
) -> set[int]:
    """Of ``delivery_ids`` (about to be written), those not to write: their post was found
    deleted on the network. Asked only for posts last seen standing (read, or checked)
    before ``seen_before``, one look-up per 100 per source; each is recorded as a compliance
    check would be, and the deleted ones' deliveries end ``deleted`` with the reason (only
    while ``owner`` still claims them, on PostgreSQL). A source that cannot answer decides
    nothing: its posts are written, and :func:`run` deals with them after; ``failing`` (the
    caller's, kept between calls) holds such sources, so it is said once while it lasts."""
    failing = set() if failing is None else failing
    with db.connect() as conn:
        due = _pending(conn, delivery_ids, seen_before)
    if not due:
        return set()
    gone = [p for p in due if p.deleted]
    checked: list[int] = []
    found: set[int] = set()
    for source_name, posts in _by_source(due, sources).items():
        source = sources.get(source_name)
        ask = [p for p in posts if not p.deleted]
        if source is None or not ask:
            continue
        try:
            _, deleted = source.lookup_posts([p.post_id for p in ask])
        except ExternalError as exc:
            if source_name not in failing:  # said once while it lasts, not per batch
                failing.add(source_name)
                log.warning(
                    "%s: posts not checked before their write (%s): written as read, and "
                    "checked after by the compliance job",
                    source_name,
                    exc,
                )
            continue
        if source_name in failing:
            failing.discard(source_name)
            log.info("%s: posts are checked before their write again", source_name)
        checked += [p.interaction_id for p in ask]
        hit = [p for p in ask if p.post_id in deleted]
        found |= {p.interaction_id for p in hit}
        gone += hit
    with db.transaction() as conn:
        if checked:
            _record(conn, checked, found, now)
        _unwritten(conn, gone, now, owner)
    if gone:
        log.info("%d post(s) deleted on the network before their write: not written", len(gone))
    return {p.delivery_id for p in gone}


def _pending(
    conn: Connection, delivery_ids: Sequence[int], seen_before: datetime
) -> list[_Pending]:
    i, d, c = interactions, deliveries, post_checks
    rows = conn.execute(
        select(
            d.c.id,
            i.c.id.label("interaction_id"),
            i.c.network,
            i.c.post_id,
            i.c.source,
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
                _Pending(
                    r.interaction_id, r.network, r.post_id, r.source, r.id, r.deleted_at is not None
                )
            )
    return out


def _unwritten(
    conn: Connection, gone: Sequence[_Pending], now: datetime, owner: str | None
) -> None:
    """The deliveries of posts deleted before their write end ``deleted``; their checks are
    acted on (nothing in the CRM), and the text and payload go from state as for any post
    deleted on the network."""
    if not gone:
        return
    d = deliveries
    for p in sorted(gone, key=lambda p: p.delivery_id):  # in id order, as the writer goes
        stmt = update(d).where(d.c.id == p.delivery_id, d.c.state == DeliveryState.PENDING)
        if owner is not None:
            stmt = stmt.where(d.c.claimed_by == owner).values(claimed_by=None, claim_until=None)
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
    _done(conn, ids, UNWRITTEN, now)
