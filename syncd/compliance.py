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
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Connection, and_, bindparam, insert, or_, select, update

from syncd.connector import Crm, RecordOutcome, Source
from syncd.errors import ExternalError
from syncd.state.db import Database
from syncd.state.outbox import WRITTEN
from syncd.state.tables import deliveries, interactions, post_checks

log = logging.getLogger("syncd.compliance")

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
        .join(d, and_(d.c.interaction_id == i.c.id, d.c.crm == crm, d.c.state == WRITTEN))
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


def _by_source(due: Sequence[_Due], sources: Mapping[str, Source]) -> dict[str, list[_Due]]:
    """Each post goes to the source that read it, or to one of the same network if that
    source is gone from the config (any can look a post up)."""
    networks: dict[str, str] = {}
    for name, source in sources.items():
        networks.setdefault(source.network, name)
    out: dict[str, list[_Due]] = defaultdict(list)
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


def _done(conn: Connection, ids: list[int], action: Action, now: datetime) -> None:
    if not ids:
        return
    conn.execute(
        update(post_checks)
        .where(post_checks.c.interaction_id.in_(ids))
        .values(acted_at=now, action=action, error=None)
    )
    # The post is gone from the network: its text and payload go from state too.
    conn.execute(update(interactions).where(interactions.c.id.in_(ids)).values(text="", raw={}))
