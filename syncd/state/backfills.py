"""Backfill jobs in state: created with their plan, claimed by one process at a time, advanced
page by page in the transaction that stores the page.

A job is worked by whoever holds its lease (an :func:`~syncd.state.coordination.owner_id`
and an expiry renewed with every page). A process that dies (SIGKILL, a reboot) leaves a
lease that expires, or that the same host sees belongs to no live process: another process
then takes the job over from the last stored page. Ctrl-C pauses a job (kept until resumed by
hand); cancelling ends it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, exists, func, or_, select, update

from syncd.model import BackfillState, DeliveryState, Segment
from syncd.state.coordination import Lease
from syncd.state.tables import backfills, deliveries, interactions, links

WORKABLE = (BackfillState.QUEUED, BackfillState.RUNNING)  # what the daemon picks up
ACTIVE = (*WORKABLE, BackfillState.PAUSED)
ENDED = (BackfillState.DONE, BackfillState.CANCELLED, BackfillState.FAILED)
LEASE = timedelta(seconds=60)
_lease = Lease(backfills.c.lease_owner, backfills.c.lease_until)


class LeaseLost(Exception):
    """Another process took the job over: this one must stop working it."""


@dataclass(frozen=True)
class Job:
    id: int
    source: str
    network: str
    account: str
    since: datetime
    until: datetime
    streams: list[str]
    plan: list[Segment]
    estimate: dict[str, Any] | None
    segment: int
    token: str | None
    status: str
    read: int
    new: int
    requests: int
    error: str | None
    lease_owner: str | None
    lease_until: datetime | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def current(self) -> Segment | None:
        return self.plan[self.segment] if self.segment < len(self.plan) else None


def _job(r: Any) -> Job:
    values = dict(r._mapping)
    values["plan"] = [Segment.from_json(s) for s in values["plan"]]
    return Job(**values)


def create(
    conn: Connection,
    *,
    source: str,
    network: str,
    account: str,
    since: datetime,
    until: datetime,
    streams: Sequence[str],
    plan: Sequence[Segment],
    estimate: dict[str, Any] | None,
    status: str,
    now: datetime,
    owner: str | None = None,
) -> int:
    row = conn.execute(
        backfills.insert()
        .values(
            source=source,
            network=network,
            account=account,
            since=since,
            until=until,
            streams=list(streams),
            plan=[s.as_json() for s in plan],
            estimate=estimate,
            status=status,
            **(_lease.take(owner, now + LEASE) if owner else _lease.release()),
            created_at=now,
            updated_at=now,
        )
        .returning(backfills.c.id)
    ).one()
    return int(row[0])


def get(conn: Connection, job_id: int) -> Job | None:
    row = conn.execute(select(backfills).where(backfills.c.id == job_id)).first()
    return _job(row) if row else None


def jobs(conn: Connection, *, active_only: bool = False, limit: int = 50) -> list[Job]:
    stmt = select(backfills).order_by(backfills.c.id.desc()).limit(limit)
    if active_only:
        stmt = stmt.where(backfills.c.status.in_(ACTIVE))
    return [_job(r) for r in conn.execute(stmt)]


def claim(
    conn: Connection, job_id: int, owner: str, now: datetime, *, paused_too: bool = False
) -> bool:
    """Take the job's lease if it is free, expired, ours, or its holder is dead."""
    row = conn.execute(
        select(backfills.c.lease_owner, backfills.c.lease_until, backfills.c.status).where(
            backfills.c.id == job_id
        )
    ).first()
    allowed = ACTIVE if paused_too else WORKABLE
    if row is None or row.status not in allowed:
        return False
    if row.lease_owner != owner and not Lease.lapsed(row.lease_owner, row.lease_until, now):
        return False
    done = conn.execute(
        update(backfills)
        .where(backfills.c.id == job_id)
        # Unless another process took it meanwhile: still as read.
        .where(or_(_lease.owner.is_(None), _lease.held_by(row.lease_owner)))
        .values(status=BackfillState.RUNNING, **_lease.take(owner, now + LEASE), updated_at=now)
    )
    return bool(done.rowcount)


def claimable(conn: Connection, now: datetime) -> list[int]:
    """Jobs the daemon may work: queued, or running under a lease that lapsed."""
    rows = conn.execute(
        select(backfills.c.id, backfills.c.lease_owner, backfills.c.lease_until)
        .where(backfills.c.status.in_(WORKABLE))
        .order_by(backfills.c.id)
    ).all()
    return [r.id for r in rows if Lease.lapsed(r.lease_owner, r.lease_until, now)]


def advance(
    conn: Connection,
    job: Job,
    owner: str,
    *,
    token: str | None,
    read: int,
    new: int,
    now: datetime,
) -> Job:
    """Record a stored page: the next page token (None: the segment is done) and counts.
    In the page's transaction; raises LeaseLost (rolling the page back) if the job was
    taken over meanwhile."""
    segment = job.segment + (1 if token is None else 0)
    done = conn.execute(
        update(backfills)
        .where(backfills.c.id == job.id, _lease.held_by(owner))
        .where(backfills.c.status == BackfillState.RUNNING)
        .values(
            segment=segment,
            token=token,
            read=backfills.c.read + read,
            new=backfills.c.new + new,
            requests=backfills.c.requests + 1,
            **_lease.renew(now + LEASE),
            updated_at=now,
        )
    )
    if not done.rowcount:
        raise LeaseLost(f"backfill {job.id} is no longer ours")
    fresh = get(conn, job.id)
    assert fresh is not None
    return fresh


def replan(
    conn: Connection,
    job_id: int,
    plan: Sequence[Segment],
    since: datetime,
    until: datetime,
    now: datetime,
) -> bool:
    """Replace the plan of a job nobody has started (queued, unleased, no request made)."""
    done = conn.execute(
        update(backfills)
        .where(_unstarted(job_id))
        .values(plan=[s.as_json() for s in plan], since=since, until=until, updated_at=now)
    )
    return bool(done.rowcount)


def withdraw(conn: Connection, job_id: int, reason: str, now: datetime) -> bool:
    """Cancel a job nobody has started, its plan no longer reaching anything."""
    done = conn.execute(
        update(backfills)
        .where(_unstarted(job_id))
        .values(status=BackfillState.CANCELLED, error=reason, updated_at=now, finished_at=now)
    )
    return bool(done.rowcount)


def _unstarted(job_id: int) -> Any:
    return and_(
        backfills.c.id == job_id,
        backfills.c.status == BackfillState.QUEUED,
        _lease.owner.is_(None),
        backfills.c.requests == 0,
    )


def restart_segment(conn: Connection, job: Job, owner: str, now: datetime) -> None:
    conn.execute(
        update(backfills)
        .where(backfills.c.id == job.id, _lease.held_by(owner))
        .values(token=None, **_lease.renew(now + LEASE), updated_at=now)
    )


def finish(
    conn: Connection,
    job_id: int,
    status: str,
    now: datetime,
    *,
    owner: str | None = None,
    error: str | None = None,
) -> bool:
    """End or pause a job (releasing the lease); with ``owner``, only if it still holds it."""
    stmt = update(backfills).where(backfills.c.id == job_id, backfills.c.status.in_(ACTIVE))
    if owner is not None:
        stmt = stmt.where(_lease.held_by(owner))
    ended = status in ENDED
    done = conn.execute(
        stmt.values(
            status=status,
            error=error,
            **_lease.release(),
            updated_at=now,
            finished_at=now if ended else None,
        )
    )
    return bool(done.rowcount)


@dataclass(frozen=True)
class Progress:
    written: int  # the job's new interactions now in the CRM
    held: int  # waiting for their author to be linked
    pending: int  # linked, waiting for the writer


def progress(conn: Connection, crm: str, job_id: int) -> Progress:
    """One pass over the job's deliveries, found from the job's interactions: joined the
    other way, SQLite walked every delivery to the CRM, those of earlier jobs too."""
    mine = select(interactions.c.id).where(interactions.c.backfill_id == job_id)
    linked = exists().where(links.c.identity_id == deliveries.c.identity_id, links.c.crm == crm)
    pending = deliveries.c.state == DeliveryState.PENDING

    def count(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    row = conn.execute(
        select(
            count(deliveries.c.state == DeliveryState.WRITTEN),
            count(and_(pending, ~linked)),
            count(and_(pending, linked)),
        ).where(deliveries.c.crm == crm, deliveries.c.interaction_id.in_(mine))
    ).one()
    return Progress(int(row[0]), int(row[1]), int(row[2]))
